"""``raygan compare DIR ...``: searches of one space and dataset, side by side.

The pipeline, one way:

    each DIR's table (results.load), rows in the order they landed
      -> checked alike: one dataset, one metric extractor, the same genotype spaces
      -> objectives IS (max) and FID (min), normalised over every search's scored rows at
         once, so one reference point serves all (printed)
      -> per search: hypervolume of the front found so far after each row, against the
         device-hours spent so far (shared rounds included)
      -> per strategy: mean and range over its searches (seeds) on one grid of device-hours
      -> the final picks side by side; a text table and a PNG

Importing this module imports neither Ray nor torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from raygan import analysis, results
from raygan.errors import UsageError
from raygan.pareto import hypervolume

OBJECTIVES = {"is": "max", "fid": "min"}
"""What every search's rows score, whatever the method: the comparison's objectives."""
REFERENCE = 1.1
"""The reference point in every normalised objective: the worst seen, plus 10%."""
GRID = 50
"""Points of the device-hours grid a strategy's searches are averaged on."""


@dataclass(frozen=True)
class Search:
    """One search's table, as compared."""

    name: str  # its folder, as given
    strategy: str
    seed: int
    rows: pd.DataFrame  # every row, in the order they landed


def load(paths: list[str]) -> list[Search]:
    """Each folder's table; one line naming the first folder that cannot be compared."""
    if len(set(paths)) < len(paths):
        raise UsageError("a folder is named twice")
    found = []
    for path in paths:
        df = results.load(path)
        trials = df[df["kind"] != "round"]
        if trials.empty:
            raise UsageError(f"no trial rows at {path}")
        strategy = label(trials)
        seed = int(trials["seed"].dropna().iloc[0]) if trials["seed"].notna().any() else 0
        found.append(Search(path, strategy, seed, df.reset_index(drop=True)))
    check_alike(found)
    return found


def label(trials: pd.DataFrame) -> str:
    """What a search is grouped by: its strategy, and for a Tune search its searcher and
    scheduler (``tune:random+asha``), since the one strategy runs them all."""
    strategy = "/".join(sorted(trials["strategy"].dropna().unique()))
    if strategy != "tune":
        return strategy
    extra = results.extra(trials).reindex(columns=["searcher", "scheduler"])
    searcher = "/".join(sorted(extra["searcher"].dropna().unique()))
    asha = (extra["scheduler"] == "asha").any()
    return f"tune:{searcher}{'+asha' if asha else ''}"


def check_alike(searches: list[Search]) -> None:
    """Only searches of the same spaces, dataset and extractor compare."""
    first = searches[0]
    for s in searches[1:]:
        for what, of in (("dataset", dataset), ("extractor", extractor), ("spaces", spaces_of)):
            if of(s) != of(first):
                raise UsageError(
                    f"{s.name} and {first.name} differ in {what} "
                    f"({of(s)} vs {of(first)}); only searches of one space and dataset compare"
                )


def dataset(s: Search) -> str:
    return ",".join(sorted(s.rows["dataset"].dropna().unique()))


def extractor(s: Search) -> str:
    return ",".join(sorted(s.rows["extractor"].dropna().unique()))


def spaces_of(s: Search) -> str:
    trials = s.rows[s.rows["kind"] != "round"]
    names = set()
    for column in ("g_genotype", "d_genotype"):
        names |= {str(g).split(":", 1)[0] for g in trials[column].dropna()}
    return ",".join(sorted(names))


def scored(s: Search) -> pd.DataFrame:
    ok = s.rows[(s.rows["kind"] != "round") & (s.rows["status"] == "ok")]
    return ok.dropna(subset=list(OBJECTIVES))


def normalisation(searches: list[Search]) -> tuple[np.ndarray, np.ndarray]:
    """The lowest and the span of each (minimised) objective over every search's rows."""
    F = np.concatenate([minimised(scored(s)) for s in searches])
    if not len(F):
        raise UsageError("no search has a scored trial")
    lo, hi = F.min(axis=0), F.max(axis=0)
    return lo, np.where(hi > lo, hi - lo, 1.0)


def minimised(rows: pd.DataFrame) -> np.ndarray:
    signs = np.array([-1.0 if m == "max" else 1.0 for m in OBJECTIVES.values()])
    return rows[list(OBJECTIVES)].to_numpy(float) * signs


def curve(s: Search, lo: np.ndarray, span: np.ndarray) -> pd.DataFrame:
    """Device-hours spent and hypervolume of the front found so far, after each row."""
    spent = s.rows["device_s"].fillna(0).cumsum().to_numpy() / 3600
    ok = s.rows.index.isin(scored(s).index)
    points = (minimised(s.rows.loc[ok]) - lo) / span
    out, seen = [], 0
    for i in range(len(s.rows)):
        seen += ok[i]
        out.append((spent[i], hypervolume(points[:seen], [REFERENCE] * len(OBJECTIVES))))
    return pd.DataFrame(out, columns=["device_h", "hypervolume"])


def by_strategy(curves: dict[str, pd.DataFrame], searches: list[Search]) -> pd.DataFrame:
    """Per strategy, on a grid up to the least any of its searches spent: mean, min, max."""
    out = []
    for strategy in sorted({s.strategy for s in searches}):
        mine = [curves[s.name] for s in searches if s.strategy == strategy]
        grid = np.linspace(0, min(c["device_h"].iloc[-1] for c in mine), GRID)
        values = np.array([so_far(c, grid) for c in mine])
        for x, column in zip(grid, values.T, strict=True):
            out.append((strategy, len(mine), x, column.mean(), column.min(), column.max()))
    return pd.DataFrame(out, columns=["strategy", "searches", "device_h", "mean", "min", "max"])


def so_far(c: pd.DataFrame, grid: np.ndarray) -> np.ndarray:
    """The curve's hypervolume at each grid point (the last value reached by then)."""
    at = np.searchsorted(c["device_h"].to_numpy(), grid, side="right") - 1
    hv = c["hypervolume"].to_numpy()
    return np.where(at >= 0, hv[np.clip(at, 0, None)], 0.0)


def pick(s: Search) -> dict:
    """The search's pick by the documented rule: lowest FID, then highest IS, then fewer G
    parameters; with what the search spent."""
    rows = scored(s).assign(_neg_is=lambda d: -d["is"])
    if rows.empty:
        return {"search": s.name, "strategy": s.strategy, "seed": s.seed}
    best = rows.sort_values(["fid", "_neg_is", "g_params"], kind="stable").iloc[0]
    return {
        "search": s.name,
        "strategy": s.strategy,
        "seed": s.seed,
        "is": best["is"],
        "fid": best["fid"],
        "g_params": best["g_params"],
        "d_params": best["d_params"],
        "g_genotype": best["g_genotype"],
        "trials": int((s.rows["kind"] != "round").sum()),
        "device_h": s.rows["device_s"].fillna(0).sum() / 3600,
    }


def compare(paths: list[str], out_dir: str) -> str:
    """The text of ``raygan compare``; ``compare.png`` written to ``out_dir``."""
    searches = load(paths)
    lo, span = normalisation(searches)
    curves = {s.name: curve(s, lo, span) for s in searches}
    grouped = by_strategy(curves, searches)
    finals = grouped.groupby("strategy").tail(1)
    every = pd.concat([scored(s) for s in searches])
    ranges = ", ".join(
        f"{k} {m} ({every[k].min():.4g} .. {every[k].max():.4g})" for k, m in OBJECTIVES.items()
    )
    lines = [
        f"{len(searches)} searches on {dataset(searches[0])} ({spaces_of(searches[0])}), "
        f"extractor {extractor(searches[0])}",
        f"objectives: {ranges}, each scaled to 0 (best seen) .. 1 (worst seen) over every "
        f"search; reference point {REFERENCE} in each",
        "hypervolume of the front found so far, at the device-hours every search of the "
        "strategy reached:",
        finals.to_string(index=False, float_format=lambda x: f"{x:.4g}"),
        "final picks (lowest FID, then IS):",
        pd.DataFrame([pick(s) for s in searches]).to_string(
            index=False, float_format=lambda x: f"{x:.4g}"
        ),
    ]
    written = plot(curves, grouped, searches, os.path.join(out_dir, "compare.png"))
    return "\n".join([*lines, *(f"plot: {p}" for p in written)])


def plot(
    curves: dict[str, pd.DataFrame], grouped: pd.DataFrame, searches: list[Search], path: str
) -> list[str]:
    """Each search's curve (thin), each strategy's mean (thick) and range (shaded)."""
    plt = analysis.pyplot()
    if plt is None:
        return []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = dict(zip(sorted(grouped["strategy"].unique()), plt.cm.tab10.colors, strict=False))
    for s in searches:
        c = curves[s.name]
        ax.step(c["device_h"], c["hypervolume"], where="post", lw=0.7, alpha=0.5,
                color=colours[s.strategy])  # fmt: skip
    for strategy, part in grouped.groupby("strategy"):
        n = int(part["searches"].iloc[0])
        ax.plot(part["device_h"], part["mean"], lw=2, color=colours[strategy],
                label=f"{strategy} (mean of {n})")  # fmt: skip
        ax.fill_between(part["device_h"], part["min"], part["max"], alpha=0.15,
                        color=colours[strategy])  # fmt: skip
    ax.set(xlabel="device-hours spent", ylabel="hypervolume (IS, FID; normalised)",
           title="front found so far against cost")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return analysis.save(fig, path)
