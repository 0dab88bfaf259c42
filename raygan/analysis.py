"""Everything ``raygan analyze`` computes and draws, per strategy.

The pipeline, one way:

    trial table (results.load)
      -> grouped by ``strategy``: ANALYZERS[strategy](rows, out_dir), or the plain table
      -> per strategy: Pareto fronts and hypervolume per generation (EAGAN and its random
         baseline), reward per controller step (AutoGAN), entropy / IS / FID and genes
         chosen per epoch (AdversarialNAS), the IS/FID front of a Tune search
      -> text for the terminal, PNGs into ``out_dir``

Plots need matplotlib (the ``plot`` extra). Every plotting function returns the list of
paths it wrote: empty, with a note on stderr, when matplotlib is missing, so the text never
depends on plotting. Importing this module imports neither Ray nor torch; an analyzer imports
what its strategy defines (objectives, spaces) when it runs.
"""

from __future__ import annotations

import functools
import io
import itertools
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from raygan import results, spaces, storage
from raygan.pareto import hypervolume, pareto_front

Analyzer = Callable[[pd.DataFrame, str], str]

TABLE_COLUMNS = ["trial_id", "g_genotype", "d_genotype", "is", "fid", "g_params", "status"]


def analyze(df: pd.DataFrame, out_dir: str) -> str:
    """The text of ``raygan analyze`` for a whole table: each strategy's rows through its
    analyzer (plain table for ``train`` and unknown strategies), PNGs written to ``out_dir``."""
    texts = []
    for name, rows in df[df["kind"] != "round"].groupby("strategy", sort=False):
        texts.append(analyzer(str(name))(rows.reset_index(drop=True), out_dir))
    return "\n".join([*texts, *cost_summary(df)])


def cost(df: pd.DataFrame) -> dict[str, Any] | None:
    """What the table's rows paid, in device-seconds: ``total``, ``rounds`` (shared rounds),
    ``training``, ``scoring``, ``flops`` trained, the ``devices`` and their ``unit`` (CPU core
    or device); None for a table without cost columns (written before them)."""
    paid = df.dropna(subset=["device_s"])
    if paid.empty or paid["device_s"].sum() <= 0:
        return None
    share = paid["device_share"]
    devices = ", ".join(sorted(paid["device"].dropna().unique()))
    return {
        "total": float(paid["device_s"].sum()),
        "rounds": float(paid.loc[paid["kind"] == "round", "device_s"].sum()),
        "training": float((paid["train_s"].fillna(0) * share).sum()),
        "scoring": float((paid["eval_s"].fillna(0) * share).sum()),
        "flops": float(paid["train_flops"].fillna(0).sum()),
        "devices": devices,
        "unit": "CPU core" if devices == "cpu" else "device",
    }


def cost_summary(df: pd.DataFrame) -> list[str]:
    """:func:`cost` as two lines: device-hours (shared rounds and trials apart), the shares
    spent training, scoring and in set-up or orchestration, and the FLOP rate while training
    (per GPU, or per CPU core)."""
    c = cost(df)
    if c is None:
        return []
    total, training, scoring = c["total"], c["training"], c["scoring"]
    rate = c["flops"] / training / 1e12 if training > 0 else 0.0
    return [
        f"cost: {total / 3600:.4g} device-hours on {c['devices']} (shared rounds "
        f"{c['rounds'] / 3600:.4g}, trials {(total - c['rounds']) / 3600:.4g}); training "
        f"{training / total:.0%}, scoring {scoring / total:.0%}, set-up and orchestration "
        f"{1 - (training + scoring) / total:.0%}",
        f"trained {c['flops'] / 1e12:.4g} TFLOP at {rate:.4g} TFLOP/s per {c['unit']} while "
        "training",
    ]


def analyzer(strategy: str) -> Analyzer:
    """The analyzer for a strategy's rows; :func:`table_summary` for any without one."""
    return ANALYZERS.get(strategy, table_summary)


def table_summary(df: pd.DataFrame, out_dir: str) -> str:
    """The trials as a table (single ``raygan train`` runs, strategies without an analyzer)."""
    return df[TABLE_COLUMNS].to_string(index=False)


# ----- plotting primitives -----------------------------------------------------------------------
def pyplot():
    """``matplotlib.pyplot`` on the Agg backend, or None (with a note on stderr) without it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("raygan: no plots (pip install 'raygan[plot]' for matplotlib)", file=sys.stderr)
        return None
    return plt


def integer_ticks(axis) -> None:
    """Only whole numbers on ``axis`` (generations, epochs, stages)."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def save(fig, path: str) -> list[str]:
    """Write ``fig`` to ``path`` as PNG (folders made as needed); returns ``[path]``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    fig.clf()
    return [path]


def scatter(
    df: pd.DataFrame,
    x: str,
    y: str,
    path: str,
    *,
    color: str | None = None,
    highlight: pd.DataFrame | None = None,
    highlight_label: str = "Pareto front",
    title: str = "",
    invert_x: bool = False,
) -> list[str]:
    """``y`` against ``x``, coloured by ``color``; ``highlight`` rows ringed (not joined: a
    front over more than these two objectives is not a line in their plane)."""
    plt = pyplot()
    if plt is None or df.empty:
        return []
    fig, ax = plt.subplots(figsize=(6, 4.5))
    points = ax.scatter(
        df[x], df[y], c=df[color] if color else None, cmap="viridis", s=28, alpha=0.8
    )
    if color:
        bar = fig.colorbar(points, ax=ax, label=color)
        if pd.api.types.is_integer_dtype(df[color]):
            integer_ticks(bar.ax.yaxis)
    if highlight is not None and not highlight.empty:
        ax.scatter(
            highlight[x],
            highlight[y],
            s=140,
            facecolors="none",
            edgecolors="crimson",
            linewidths=1.5,
            label=highlight_label,
        )
        ax.legend()
    if invert_x:
        ax.invert_xaxis()
    ax.set(xlabel=x, ylabel=y, title=title)
    ax.grid(alpha=0.3)
    return save(fig, path)


def line(
    df: pd.DataFrame,
    x: str,
    ys: str | Sequence[str],
    path: str,
    *,
    title: str = "",
    group: str | None = None,
) -> list[str]:
    """One line per ``ys`` column (or per ``group`` value) against ``x``."""
    plt = pyplot()
    if plt is None or df.empty:
        return []
    ys = [ys] if isinstance(ys, str) else list(ys)
    fig, ax = plt.subplots(figsize=(6, 4))
    groups = df.groupby(group) if group else [(None, df)]
    for key, part in groups:
        for y in ys:
            label = " ".join(str(v) for v in (f"{group} {key}" if group else None, y) if v)
            ax.plot(part[x], part[y], marker="o", ms=3, label=label)
    ax.set(xlabel=x, ylabel=ys[0] if len(ys) == 1 else "", title=title)
    if pd.api.types.is_integer_dtype(df[x]):
        integer_ticks(ax.xaxis)
    ax.grid(alpha=0.3)
    if group or len(ys) > 1:
        ax.legend(fontsize=8)
    return save(fig, path)


def image_panels(
    images: Sequence[tuple[bytes, str]], path: str, *, title: str = "", columns: int = 4
) -> list[str]:
    """PNG images (each with a caption) side by side in one figure: the samples of a Pareto
    front, so that a collapsed generator is seen, not inferred from its IS and FID."""
    plt = pyplot()
    if plt is None or not images:
        return []
    columns = min(columns, len(images))
    rows = -(-len(images) // columns)
    size = (max(3 * columns, 6), 3.2 * rows + 0.4)
    fig, axes = plt.subplots(rows, columns, figsize=size, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (png, caption) in zip(axes.flat, images, strict=False):
        ax.imshow(plt.imread(io.BytesIO(png), format="png"))
        ax.set_title(caption, fontsize=8)
    fig.suptitle(title, fontsize=10)
    return save(fig, path)


def _float(digits: int) -> Callable[[float], str]:
    return lambda x: f"{x:.{digits}f}"


# ----- EAGAN ------------------------------------------------------------------------------------
def hypervolume_by_generation(df: pd.DataFrame, stage: int) -> pd.DataFrame:
    """Hypervolume of each generation's front, against one reference point per stage (in
    the objectives the stage was searched under)."""
    from raygan.strategies.selection import table_objectives

    staged = df[df["stage"] == stage]
    senses = table_objectives(staged, stage)
    objectives = list(senses)
    rows = staged[staged["status"] == "ok"].dropna(subset=objectives)
    if rows.empty:
        return pd.DataFrame(columns=["generation", "hypervolume", "front_size"])
    signs = np.array([-1.0 if m == "max" else 1.0 for m in senses.values()])
    F = rows[objectives].to_numpy(float) * signs
    lo, hi = F.min(axis=0), F.max(axis=0)
    scale = np.where(hi > lo, hi - lo, 1.0)
    ref = np.full(len(objectives), 1.1)  # normalised worst + 10%
    out = []
    for generation, group in rows.groupby("generation"):
        front = pareto_front(group, senses)
        G = (front[objectives].to_numpy(float) * signs - lo) / scale
        out.append(
            {
                "generation": int(generation),
                "hypervolume": hypervolume(G, ref),
                "front_size": len(front),
            }
        )
    return pd.DataFrame(out)


def front_samples(front: pd.DataFrame, searched: str) -> list[tuple[bytes, str]]:
    """Each front member's sample grid (saved with its trial's final checkpoint), captioned
    with its scores and genotype; members whose checkpoint is gone are left out."""
    from raygan.trainable import SAMPLES_FILE

    panels = []
    for _, row in front.iterrows():
        if not isinstance(row["checkpoint"], str):
            continue
        path = storage.join(row["checkpoint"], SAMPLES_FILE)
        if storage.exists(path):
            genes = str(row[searched]).split(":", 1)[-1]
            caption = f"IS {row['is']:.2f}, FID {row['fid']:.1f}\n{genes}"
            panels.append((storage.read_bytes(path), caption))
    return panels


def analyze_eagan(df: pd.DataFrame, out_dir: str, label: str = "EAGAN") -> str:
    """Per stage: the last generation's Pareto front, hypervolume per generation, and three
    PNGs (every individual with the front ringed, hypervolume, the front's samples); the
    random baseline's rows (``label``) read the same."""
    from raygan.strategies.selection import lowest, table_objectives

    lines = []
    for stage in sorted(int(s) for s in df["stage"].dropna().unique()):
        rows = df[df["stage"] == stage]
        senses = table_objectives(rows, stage)
        objectives = list(senses)
        last = rows[rows["generation"] == rows["generation"].max()]
        front = pareto_front(last, senses).sort_values(lowest(senses))
        hv = hypervolume_by_generation(df, stage)
        searched = "g_genotype" if stage == 1 else "d_genotype"
        lines.append(
            f"{label} stage {stage}: {len(rows)} trials, "
            f"{rows['generation'].nunique()} generations, "
            f"{(rows['status'] != 'ok').sum()} failed"
        )
        lines.append(
            f"Pareto front of generation {int(last['generation'].max())} "
            f"({', '.join(f'{o} {m}' for o, m in senses.items())}):"
        )
        show = front[[*objectives, searched, "checkpoint"]]
        lines.append(show.to_string(index=False, float_format=_float(3)))
        lines.append("hypervolume per generation (normalised objectives, ref 1.1):")
        lines.append(hv.to_string(index=False, float_format=_float(4)))
        ok = rows[rows["status"] == "ok"]
        written = scatter(
            ok,
            "is",
            "fid",
            os.path.join(out_dir, f"pareto_stage{stage}.png"),
            color="generation",
            highlight=front,
            highlight_label="Pareto front (last generation, 3 objectives)",
            invert_x=True,
            title=f"{label} stage {stage}: every individual (IS up, FID down)",
        )
        written += line(
            hv,
            "generation",
            "hypervolume",
            os.path.join(out_dir, f"hypervolume_stage{stage}.png"),
            title=f"{label} stage {stage}: hypervolume per generation",
        )
        written += image_panels(
            front_samples(front, searched),
            os.path.join(out_dir, f"front_samples_stage{stage}.png"),
            title=f"{label} stage {stage}: samples of the last generation's Pareto front",
        )
        lines += [f"plot: {p}" for p in written]
        lines.append("")
    return "\n".join(lines)


# ----- AutoGAN ----------------------------------------------------------------------------------
def analyze_autogan(df: pd.DataFrame, out_dir: str) -> str:
    """Per MLAS stage: architectures scored, resets, mean search reward per iteration, the
    kept prefixes (the final top-k in the last stage); one PNG of reward per controller step."""
    from raygan.strategies.autogan import LAST_STAGE

    df = df.join(results.extra(df).reindex(columns=["phase", "kept", "reset"]))
    df["reset"] = df["reset"].fillna(False).astype(bool)
    lines = []
    searched = df[df["phase"] == "search"]
    for stage, rows in df.groupby("stage"):
        s = rows[rows["phase"] == "search"]
        per_iteration = s.groupby("generation")["reward"].mean()
        resets = sorted(int(g) + 1 for g in rows.loc[rows["reset"], "generation"].unique())
        n = rows["generation"].nunique()
        lines.append(
            f"AutoGAN stage {int(stage)}: {len(rows)} architectures scored over {n} "
            f"iteration{'s' * (n != 1)}, {(rows['status'] != 'ok').sum()} failed"
            + (f", dynamic reset after iteration(s) {resets}" if resets else "")
        )
        if not per_iteration.empty:
            lines.append(
                "  mean search reward per iteration: "
                + ", ".join(f"{int(g) + 1}: {r:.3f}" for g, r in per_iteration.items())
            )
        kept = rows[rows["kept"].notna()].sort_values("kept")
        if not kept.empty:
            label = "final top-k" if int(stage) == LAST_STAGE else "kept prefixes"
            lines.append(f"  {label} (best first):")
            show = kept[["kept", "g_genotype", "reward", "is", "fid"]].astype({"kept": int})
            lines.append(show.to_string(index=False, float_format=_float(3)))
    curve = searched.groupby(["stage", "step"], as_index=False)["reward"].mean()
    written = line(
        curve,
        "step",
        "reward",
        os.path.join(out_dir, "reward_per_stage.png"),
        group="stage",
        title="AutoGAN: mean reward per controller step, by MLAS stage",
    )
    lines += [f"plot: {p}" for p in written]
    return "\n".join(lines)


# ----- AdversarialNAS ---------------------------------------------------------------------------
def epochs_table(df: pd.DataFrame) -> pd.DataFrame:
    """One line per epoch: entropies, scores, how many genes changed, the genotypes."""
    rows = df.sort_values("generation").reset_index(drop=True)
    extra = results.extra(rows)
    genes = [
        spaces.Genotype.parse(g).flat() + spaces.Genotype.parse(d).flat()
        for g, d in zip(rows["g_genotype"], rows["d_genotype"], strict=True)
    ]
    changed = [0] + [
        sum(a != b for a, b in zip(x, y, strict=True)) for x, y in itertools.pairwise(genes)
    ]
    return pd.DataFrame(
        {
            "epoch": rows["generation"].astype(int),
            "g_entropy": extra.get("g_entropy", rows["entropy"]),
            "d_entropy": extra.get("d_entropy", rows["entropy"]),
            "is": rows["is"],
            "fid": rows["fid"],
            "changed": changed,
            "g_genotype": rows["g_genotype"],
            "d_genotype": rows["d_genotype"],
        }
    )


def analyze_adversarialnas(df: pd.DataFrame, out_dir: str) -> str:
    """The per-epoch table, the genotypes derived last, and two PNGs (curves, ops chosen)."""
    table = epochs_table(df)
    extractor = df["extractor"].dropna().unique()
    lines = [
        f"AdversarialNAS: {len(table)} epochs; IS/FID of the EMA supernet generator "
        f"({', '.join(extractor) or 'no extractor'}); changed = genes that differ from the "
        f"previous epoch's genotypes",
        table.to_string(index=False, float_format=_float(3)),
    ]
    if not table.empty:
        last = table.iloc[-1]
        lines.append(
            f"derived after epoch {last['epoch']}: G {last['g_genotype']}\n"
            f"{'':>23}D {last['d_genotype']}"
        )
    written = plot_curves(table, os.path.join(out_dir, "adversarialnas_curves.png"))
    written += plot_genotypes(table, os.path.join(out_dir, "adversarialnas_genotypes.png"))
    lines += [f"plot: {p}" for p in written]
    return "\n".join(lines)


def plot_curves(table: pd.DataFrame, path: str) -> list[str]:
    """Entropy of G's and D's architecture weights, IS and FID, per epoch."""
    plt = pyplot()
    if plt is None or table.empty:
        return []
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    axes[0].plot(table["epoch"], table["g_entropy"], "o-", label="G")
    axes[0].plot(table["epoch"], table["d_entropy"], "s-", label="D")
    axes[0].legend()
    axes[1].plot(table["epoch"], table["is"], "o-", color="tab:green")
    axes[2].plot(table["epoch"], table["fid"], "o-", color="tab:red")
    titles = ("architecture-weight entropy (nats)", "IS (up)", "FID (down)")
    for ax, title in zip(axes, titles, strict=True):
        ax.set(xlabel="epoch", title=title)
        integer_ticks(ax.xaxis)
        ax.grid(alpha=0.3)
    fig.suptitle("AdversarialNAS search, EMA supernet generator")
    return save(fig, path)


def plot_genotypes(table: pd.DataFrame, path: str) -> list[str]:
    """Heatmaps of the op every edge chose, per epoch (G left, D right); ``none`` is grey."""
    plt = pyplot()
    if plt is None or table.empty:
        return []
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from raygan import nn
    from raygan.nn.arch import edge_specs

    names = list(dict.fromkeys(name for ops in nn.OP_LISTS.values() for name in ops))
    tab20 = plt.get_cmap("tab20").colors
    colours = [(0.85, 0.85, 0.85), *tab20[::2], *tab20[1::2]][: len(names)]
    cmap = ListedColormap(colours)
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 5 + 0.5 * len(table)), 9))
    for ax, column, player in zip(axes, ("g_genotype", "d_genotype"), "GD", strict=True):
        space = spaces.Genotype.parse(table[column].iloc[0]).space  # nas_cell_g4 at 128 px
        specs = edge_specs(space)
        cells = [spaces.Genotype.parse(text).cells for text in table[column]]
        grid = np.array([[names.index(e.choices[c[e.cell][e.gene]]) for e in specs] for c in cells])
        ax.imshow(grid.T, cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5, aspect="auto")
        ax.set_yticks(range(len(specs)), [f"c{e.cell + 1} {e.name}" for e in specs], fontsize=7)
        ax.set_xticks(range(len(table)), table["epoch"].tolist(), fontsize=7)
        ax.set(xlabel="epoch", title=f"{player} ({space})")
        used = sorted({names.index(name) for e in specs for name in e.choices})
        ax.legend(
            handles=[Patch(color=colours[i], label=names[i]) for i in used],
            loc="upper center",
            bbox_to_anchor=(0.5, -0.05),
            ncol=3,
            fontsize=8,
        )
    fig.suptitle("AdversarialNAS: op chosen per edge after each epoch")
    return save(fig, path)


# ----- any Tune searcher ------------------------------------------------------------------------
def analyze_tune(df: pd.DataFrame, out_dir: str) -> str:
    """The searcher and scheduler, what became of the trials, the IS/FID front of those that
    trained their whole budget, and one PNG (every scored trial by batch, the front ringed)."""
    extra = results.extra(df).reindex(columns=["searcher", "scheduler"])
    searcher = ", ".join(extra["searcher"].dropna().unique()) or "?"
    scheduler = ", ".join(extra["scheduler"].dropna().unique()) or "fifo"
    counts = df["status"].value_counts().sort_index()
    said = ", ".join(f"{n} {status}" for status, n in counts.items())
    batches = df["generation"].nunique()
    ok = df[df["status"] == "ok"]
    front = pareto_front(ok, {"is": "max", "fid": "min"}).sort_values("fid")
    searched = [c for c in ("g_genotype", "d_genotype") if df[c].nunique() > 1] or ["g_genotype"]
    lines = [
        f"Tune search ({searcher}, scheduler {scheduler}): {len(df)} architectures in "
        f"{batches} batch{'es' * (batches != 1)} ({said})",
        "IS/FID front of the architectures trained to their whole budget:",
        front[["is", "fid", "g_params", *searched]].to_string(index=False, float_format=_float(3)),
    ]
    scored = df[df["status"].isin(["ok", "stopped"])].dropna(subset=["is", "fid"])
    written = scatter(
        scored,
        "is",
        "fid",
        os.path.join(out_dir, "tune_trials.png"),
        color="generation",
        highlight=front,
        invert_x=True,
        title=f"Tune search ({searcher}): every scored trial (IS up, FID down)",
    )
    return "\n".join([*lines, *(f"plot: {p}" for p in written)])


ANALYZERS: dict[str, Analyzer] = {
    "eagan": analyze_eagan,
    "autogan": analyze_autogan,
    "adversarialnas": analyze_adversarialnas,
    "random": functools.partial(analyze_eagan, label="Random (weight sharing)"),
    "tune": analyze_tune,
}
"""Strategy name (the table's ``strategy`` column) -> its analyzer: ``(rows, out_dir) -> text``."""
