"""PNG plots for ``raygan analyze`` (matplotlib, from the ``plot`` extra).

Each function writes one PNG and returns the list of paths written: empty, with a note on
stderr, when matplotlib is not installed, so analysis text never depends on plotting.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Sequence

import pandas as pd


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("raygan: no plots (pip install 'raygan[plot]' for matplotlib)", file=sys.stderr)
        return None
    return plt


def _integer_ticks(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _save(fig, path: str) -> list[str]:
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
    plt = _pyplot()
    if plt is None or df.empty:
        return []
    fig, ax = plt.subplots(figsize=(6, 4.5))
    points = ax.scatter(
        df[x], df[y], c=df[color] if color else None, cmap="viridis", s=28, alpha=0.8
    )
    if color:
        bar = fig.colorbar(points, ax=ax, label=color)
        if pd.api.types.is_integer_dtype(df[color]):
            _integer_ticks(bar.ax.yaxis)
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
    return _save(fig, path)


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
    plt = _pyplot()
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
        _integer_ticks(ax.xaxis)
    ax.grid(alpha=0.3)
    if group or len(ys) > 1:
        ax.legend(fontsize=8)
    return _save(fig, path)


def image_panels(
    images: Sequence[tuple[bytes, str]], path: str, *, title: str = "", columns: int = 4
) -> list[str]:
    """PNG images (each with a caption) side by side in one figure: the samples of a Pareto
    front, so that a collapsed generator is seen, not inferred from its IS and FID."""
    plt = _pyplot()
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
    return _save(fig, path)
