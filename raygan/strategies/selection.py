"""What EAGAN-style selection ranks on: the score objectives, each with its sense, and the
rule that picks one architecture from a front (tune's pick and the analysis read them too).
"""

from __future__ import annotations

import pandas as pd

from raygan import results

PAPER_SCORES = "is,fid"
"""The paper's two scores, beside the searched network's parameter count."""

SCORES: dict[str, str] = {"is": "max", "fid": "min", "intra_fid": "min", "class_accuracy": "max"}
"""The scores an objective may be, with their sense; ``intra_fid`` and ``class_accuracy`` are
a ``--conditional`` search's (class accuracy: on ``shapes``, scored with raygan-shapes-v1)."""

SIZE = {1: "g_params", 2: "d_params"}
"""Each stage's third objective: the parameters of the network it searches (min)."""


def objectives(stage: int, scores: str = PAPER_SCORES) -> dict[str, str]:
    """A stage's NSGA-II objectives, name -> sense: the two ``--objectives`` scores (the
    paper's IS and FID by default), then the searched network's parameter count."""
    return {**{name: SCORES[name] for name in scores.split(",")}, SIZE[stage]: "min"}


def table_objectives(rows: pd.DataFrame, stage: int) -> dict[str, str]:
    """The objectives a stage's rows were searched under (recorded with each trial; rows
    written before they were recorded had the paper's)."""
    extra = results.extra(rows.head(1))
    chosen = extra["objectives"].iloc[0] if "objectives" in extra else None
    return objectives(stage, chosen if isinstance(chosen, str) else PAPER_SCORES)


def lowest(senses: dict[str, str]) -> str:
    """The score objective minimised (FID by default): what a front is ordered by."""
    return next(name for name, sense in senses.items() if sense == "min")


def pick_best(front: pd.DataFrame, senses: dict[str, str]) -> pd.Series:
    """The documented rule: the lowest of the score to minimise (FID by default), then the
    highest of the score to maximise (IS), then the fewest parameters."""
    low, size = lowest(senses), list(senses)[2]
    high = next(name for name in list(senses)[:2] if name != low)
    ordered = front.assign(_neg=-front[high]).sort_values([low, "_neg", size], kind="stable")
    return ordered.iloc[0]
