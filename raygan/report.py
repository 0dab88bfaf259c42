"""``raygan report DIR``: one self-contained HTML page of a search, that opens offline.

The pipeline, one way:

    the trial table (results.load) and the settings the search started with (its state)
      -> plain page data: the IS/FID panels (per EAGAN stage, else one), each point with its
         genotypes, scores and cost, the front's sample grids as data URIs; the method's
         curves (FRONTS and CURVES: registries by strategy); the cost; the settings
      -> report_assets/page.html with report.css, report.js and the data (JSON) inlined

The browser draws the charts (SVG, no library, no network): hover a point for its details,
click it to pin them with its samples; ``#trial=<id>`` in the address opens one. Importing
this module imports neither Ray nor torch.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Callable
from importlib import resources
from typing import Any

import pandas as pd

from raygan import analysis, results, storage
from raygan.errors import UsageError
from raygan.pareto import pareto_front

SAMPLES_FILE = "samples.png"  # raygan.trainable.SAMPLES_FILE (that module imports Ray)
STATE_FILE = "search_state.json"  # raygan.strategies.common.Driver.STATE
INFO = ["trial_id", "stage", "generation", "g_genotype", "d_genotype", "is", "fid"]
INFO += ["g_params", "d_params", "budget_steps", "device_s", "status"]
"""What a point's tooltip and panel show."""

Panel = dict[str, Any]
"""One chart's data: ``title``, and ``points`` (scatter) or ``series`` (lines)."""


def report(path: str, out: str | None = None) -> str:
    """Write the page for the search at ``path`` (to ``out``, default ``<path>/report.html``);
    its path."""
    table = results.table_path(path)
    if not storage.exists(table):
        raise UsageError(f"no trial table at {path} (no {storage.basename(table)})")
    df = results.load(path)
    out = out or storage.join(path, "report.html")
    storage.write_text(out, render(page_data(df, settings_of(path), storage.basename(path))))
    return out


def settings_of(path: str) -> dict[str, Any]:
    """The settings the search started with (none for ``raygan train`` folders)."""
    from raygan import state

    file = storage.join(path, STATE_FILE)
    return dict(state.load(file).get("settings") or {}) if storage.exists(file) else {}


def page_data(df: pd.DataFrame, settings: dict[str, Any], name: str) -> dict[str, Any]:
    """Everything the page shows, as plain data."""
    trials = df[df["kind"] != "round"].reset_index(drop=True)
    strategy = "/".join(sorted(trials["strategy"].dropna().unique())) or "?"
    fronts = FRONTS.get(strategy, one_front)(trials)
    return {
        "title": f"raygan report: {name}",
        "meta": meta(trials, strategy),
        "fronts": fronts,
        "curves": CURVES.get(strategy, lambda rows: [])(trials),
        "cost": analysis.cost(df),
        "settings": {k: plain(v) for k, v in sorted(settings.items())},
        "samples": samples(fronts, trials),
    }


def meta(trials: pd.DataFrame, strategy: str) -> dict[str, Any]:
    def values(column: str) -> str:
        return ", ".join(str(v) for v in trials[column].dropna().unique()) or "-"

    failed = int((~trials["status"].isin(["ok", "stopped"])).sum())
    return {
        "strategy": strategy,
        "dataset": values("dataset"),
        "extractor": values("extractor"),
        "seed": values("seed"),
        "trials": len(trials),
        "failed": failed,
    }


# ----- the IS/FID panels -------------------------------------------------------------------------
def panel(rows: pd.DataFrame, title: str) -> Panel:
    """Every scored row as a point (IS up, FID down), coloured by generation; the IS/FID
    front of those points marked."""
    scored = rows[rows["status"].isin(["ok", "stopped"])].dropna(subset=["is", "fid"])
    front = set(pareto_front(scored, {"is": "max", "fid": "min"})["trial_id"])
    points = [
        {
            "id": row["trial_id"],
            "x": float(row["is"]),
            "y": float(row["fid"]),
            "c": plain(row["generation"]),
            "front": row["trial_id"] in front,
            "info": {k: plain(row[k]) for k in INFO},
        }
        for _, row in scored.iterrows()
    ]
    return {"title": title, "x": "IS (higher is better)", "y": "FID (lower is better)",
            "colour": "generation", "points": points}  # fmt: skip


def one_front(trials: pd.DataFrame) -> list[Panel]:
    return [panel(trials, "every scored trial; ringed: the IS/FID front")]


def eagan_fronts(trials: pd.DataFrame) -> list[Panel]:
    searched = {1: "generators (stage 1)", 2: "discriminators for G* (stage 2)"}
    return [
        panel(
            trials[trials["stage"] == stage],
            f"{searched.get(int(stage), stage)}; ringed: the IS/FID front",
        )
        for stage in sorted(trials["stage"].dropna().unique())
    ]


def samples(fronts: list[Panel], trials: pd.DataFrame) -> dict[str, str]:
    """The sample grid of every front point whose checkpoint still holds one, as data URIs."""
    where = dict(zip(trials["trial_id"], trials["checkpoint"], strict=True))
    found = {}
    for point in (p for f in fronts for p in f["points"] if p["front"]):
        checkpoint = where.get(point["id"])
        if isinstance(checkpoint, str) and storage.exists(storage.join(checkpoint, SAMPLES_FILE)):
            png = storage.read_bytes(storage.join(checkpoint, SAMPLES_FILE))
            found[point["id"]] = "data:image/png;base64," + base64.b64encode(png).decode()
    return found


# ----- the method's curves -----------------------------------------------------------------------
def series(x: Any, y: Any, name: str) -> dict[str, Any]:
    return {"name": name, "points": [[plain(a), plain(b)] for a, b in zip(x, y, strict=True)]}


def eagan_curves(trials: pd.DataFrame) -> list[Panel]:
    out = []
    for stage in sorted(int(s) for s in trials["stage"].dropna().unique()):
        hv = analysis.hypervolume_by_generation(trials, stage)
        out.append(
            {
                "title": f"stage {stage}: hypervolume of each generation's front",
                "x": "generation",
                "y": "hypervolume (normalised, ref 1.1)",
                "series": [series(hv["generation"], hv["hypervolume"], f"stage {stage}")],
            }
        )
    return out


def autogan_curves(trials: pd.DataFrame) -> list[Panel]:
    phase = results.extra(trials).reindex(columns=["phase"])["phase"]
    searched = trials[phase == "search"]
    mean = searched.groupby(["stage", "step"], as_index=False)["reward"].mean()
    lines = [series(g["step"], g["reward"], f"stage {int(s)}") for s, g in mean.groupby("stage")]
    return [{"title": "mean reward per controller step", "x": "controller step",
             "y": "reward", "series": lines}]  # fmt: skip


def adversarialnas_curves(trials: pd.DataFrame) -> list[Panel]:
    t = analysis.epochs_table(trials)
    entropy = [series(t["epoch"], t[f"{p}_entropy"], p.upper()) for p in ("g", "d")]
    return [
        {"title": "architecture-weight entropy", "x": "epoch", "y": "nats", "series": entropy},
        {"title": "IS of the EMA supernet generator", "x": "epoch", "y": "IS",
         "series": [series(t["epoch"], t["is"], "IS")]},
        {"title": "FID of the EMA supernet generator", "x": "epoch", "y": "FID",
         "series": [series(t["epoch"], t["fid"], "FID")]},
    ]  # fmt: skip


FRONTS: dict[str, Callable[[pd.DataFrame], list[Panel]]] = {
    "eagan": eagan_fronts,
    "random": eagan_fronts,
}
"""Strategy -> its IS/FID panels; :func:`one_front` for the others."""
CURVES: dict[str, Callable[[pd.DataFrame], list[Panel]]] = {
    "eagan": eagan_curves,
    "random": eagan_curves,
    "autogan": autogan_curves,
    "adversarialnas": adversarialnas_curves,
}
"""Strategy -> the curves its method has (hypervolume, reward, entropy)."""


# ----- the page ----------------------------------------------------------------------------------
def plain(value: Any) -> Any:
    """A JSON value: numpy scalars as numbers, NaN as null, anything else as text."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item() if getattr(value, "size", 1) == 1 else value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return value if isinstance(value, list) else str(value)


def asset(name: str) -> str:
    return resources.files("raygan").joinpath("report_assets", name).read_text()


def render(data: dict[str, Any]) -> str:
    """The page: the template with the style, the data (JSON, ``<`` escaped so no text in it
    can close the script element) and the script inlined."""
    payload = json.dumps(data, allow_nan=False).replace("<", "\\u003c")
    return (
        asset("page.html")
        .replace("{{title}}", html.escape(data["title"]))
        .replace("{{style}}", asset("report.css"))
        .replace("{{script}}", asset("report.js"))
        .replace("{{data}}", payload)
    )
