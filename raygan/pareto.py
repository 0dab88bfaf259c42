"""Pareto machinery for multi-objective search: non-dominated sorting, crowding, hypervolume.

Every function minimises every objective; callers negate what they maximise (``pareto_front``
does it for a table from the modes it is given). ``F`` is an ``(n_points, n_objectives)`` array.

Conventions that matter for a search:

- **Ties and copies.** Point ``a`` dominates ``b`` when it is no worse in every objective and
  better in at least one, so identical points never dominate each other: copies share a front.
- **Failures.** A row containing NaN is a failed evaluation. It is dominated by every row
  without NaN and by nothing else: all such rows form one last front, with crowding 0, so a
  selection takes them only when nothing else is left.
- **Speed.** Sorting is the dominance-depth recursion ``rank(j) = 1 + max rank of j's
  dominators`` over rows in lexicographic order (only an earlier row can dominate a later one),
  evaluated a block of rows at a time with numpy: 0.1-0.3 s for 10,000 points x 3 objectives
  (``bench/bench_pareto.py``), against minutes for the pairwise Python loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

_BLOCK = 128  # rows ranked per numpy step: large enough to amortise Python, small for cache


def _as_matrix(F: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    F = np.asarray(F, dtype=float)
    if F.ndim != 2:
        raise ValueError(f"objectives must be a 2-D array (points x objectives), got {F.shape}")
    return F


def _ranks_of_unique(U: np.ndarray) -> np.ndarray:
    """Front index of each row of ``U`` (distinct rows, no NaN)."""
    n, m = U.shape
    order = np.lexsort(U.T[::-1])  # by objective 0, ties by 1, ...
    G = U[order]
    rank = np.zeros(n, dtype=np.int32)  # int32 halves the memory traffic of the max below
    earlier = np.tri(_BLOCK, _BLOCK, -1, dtype=bool)  # earlier[j, i]: row i precedes row j
    for s in range(0, n, _BLOCK):
        e = min(s + _BLOCK, n)
        block = G[s:e]
        # dom[j, i]: row i (< e) dominates block row j. Rows are distinct and sorted, so an
        # earlier row that is no worse in objectives 1.. is no worse in all and better in one.
        dom = block[:, 1, None] >= G[None, :e, 1] if m > 1 else np.ones((e - s, e), dtype=bool)
        for k in range(2, m):
            dom &= block[:, k, None] >= G[None, :e, k]
        dom[:, s:] &= earlier[: e - s, : e - s]
        base = (dom[:, :s] * (rank[:s] + 1)).max(axis=1, initial=0)
        inner, r = dom[:, s:], base
        while True:  # chains inside the block: relax until no rank grows
            grown = np.maximum(base, (inner * (r + 1)).max(axis=1, initial=0))
            if np.array_equal(grown, r):
                break
            r = grown
        rank[s:e] = r
    out = np.empty(n, dtype=np.int64)
    out[order] = rank
    return out


def _ranks(F: np.ndarray) -> np.ndarray:
    """Front index per row; NaN rows get one last front after all the others."""
    failed = np.isnan(F).any(axis=1)
    rank = np.zeros(len(F), dtype=np.int64)
    if (~failed).any():
        U, inverse = np.unique(F[~failed], axis=0, return_inverse=True)
        rank[~failed] = _ranks_of_unique(U)[inverse.ravel()]
        rank[failed] = rank[~failed].max() + 1
    return rank


def _group(rank: np.ndarray) -> list[np.ndarray]:
    order = np.argsort(rank, kind="stable")
    cuts = np.flatnonzero(np.diff(rank[order])) + 1
    return np.split(order, cuts) if len(order) else []


def non_dominated_sort(F: np.ndarray | Sequence[Sequence[float]]) -> list[np.ndarray]:
    """The fronts of ``F`` as arrays of row indices (ascending), front 0 (non-dominated) first.

    Every row of front ``k + 1`` is dominated by some row of front ``k``; no row of a later front
    dominates a row of an earlier one. NaN rows form the last front.
    """
    return _group(_ranks(_as_matrix(F)))


def crowding_distance(F: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """NSGA-II crowding distance of each point of one front (larger = more isolated).

    Per objective, a point scores the normalised gap between the nearest distinct values below
    and above its own; points holding an objective's minimum or maximum score ``inf``, so the
    front's extent is always kept. Tied values score alike, so the result does not depend on
    row order, except that of several identical points only the first keeps its distance and
    the copies get 0: a copy adds no diversity, and truncation should drop it first. A front
    of at most two distinct points is all boundary. NaN rows get 0.
    """
    F = _as_matrix(F)
    distance = np.zeros(len(F))
    valid = np.flatnonzero(~np.isnan(F).any(axis=1))
    if not len(valid):
        return distance
    _, first = np.unique(F[valid], axis=0, return_index=True)
    keep = valid[first]  # first occurrence of each distinct point
    if len(keep) <= 2:
        distance[keep] = np.inf
        return distance
    total = np.zeros(len(keep))
    for column in F[keep].T:
        values, position = np.unique(column, return_inverse=True)
        if len(values) < 2:
            continue  # an objective on which the whole front agrees separates nobody
        gap = np.full(len(values), np.inf)
        gap[1:-1] = (values[2:] - values[:-2]) / (values[-1] - values[0])
        total += gap[position.ravel()]
    distance[keep] = total
    return distance


def ranks_and_crowding(F: np.ndarray | Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Front index and crowding distance (within its own front) of every row of a population."""
    F = _as_matrix(F)
    rank = _ranks(F)
    crowding = np.zeros(len(F))
    for front in _group(rank):
        crowding[front] = crowding_distance(F[front])
    return rank, crowding


def hypervolume(F: np.ndarray | Sequence[Sequence[float]], ref: Sequence[float]) -> float:
    """Exact volume dominated by ``F`` and bounded by the reference point ``ref``.

    Only points strictly better than ``ref`` in every objective count (NaN rows never do).
    Exact for any number of objectives by slicing along the last one down to a 2-D sweep:
    O(n log n) for 2 objectives, O(n^2 log n) for 3, exponential beyond, so meant for 2 and 3.
    """
    ref_point = np.asarray(ref, dtype=float)
    if np.size(F) == 0:
        return 0.0
    F = _as_matrix(F)
    if F.shape[1] != ref_point.size:
        raise ValueError(f"reference point has {ref_point.size} objectives, points {F.shape[1]}")
    F = F[np.less(F, ref_point).all(axis=1)]
    if not len(F):
        return 0.0
    if F.shape[1] > 2:
        F = np.unique(F, axis=0)
        F = F[_ranks_of_unique(F) == 0]  # dominated points add no volume
    return float(_volume(F, ref_point))


def _volume(F: np.ndarray, ref: np.ndarray) -> float:
    if F.shape[1] == 1:
        return ref[0] - F[:, 0].min()
    if F.shape[1] == 2:
        F = F[np.lexsort((F[:, 1], F[:, 0]))]
        lowest = np.minimum.accumulate(F[:, 1])
        widths = np.diff(np.append(F[:, 0], ref[0]))
        return float(np.sum(widths * (ref[1] - lowest)))
    F = F[np.argsort(F[:, -1], kind="stable")]
    heights = np.diff(np.append(F[:, -1], ref[-1]))
    return sum(_volume(F[: i + 1, :-1], ref[:-1]) * h for i, h in enumerate(heights) if h > 0)


def pareto_front(df: pd.DataFrame, objectives: Mapping[str, str]) -> pd.DataFrame:
    """The rows of ``df`` on the Pareto front of ``objectives`` (column -> "max" | "min").

    Rows with a missing or non-finite objective, and rows whose ``status`` column (if any) is
    not ``"ok"``, are never on the front. Rows keep their index and order.
    """
    if not objectives:
        raise ValueError("pareto_front needs at least one objective")
    for name, mode in objectives.items():
        if name not in df.columns:
            raise KeyError(f"objective column {name!r} not in table; columns: {list(df.columns)}")
        if mode not in ("max", "min"):
            raise ValueError(f"objective {name!r}: mode must be 'max' or 'min', got {mode!r}")
    sign = np.array([-1.0 if mode == "max" else 1.0 for mode in objectives.values()])
    values = df[list(objectives)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    F = values * sign
    usable = np.isfinite(F).all(axis=1)
    if "status" in df.columns:
        usable &= (df["status"] == "ok").to_numpy()
    rows = np.flatnonzero(usable)
    return df.iloc[rows[_ranks(F[rows]) == 0]]
