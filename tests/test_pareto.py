"""Pareto machinery: hand-worked cases, then properties against brute force on tie-heavy data."""

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from raygan.pareto import (
    crowding_distance,
    hypervolume,
    non_dominated_sort,
    pareto_front,
    ranks_and_crowding,
)


def dominance(F) -> np.ndarray:
    """D[i, j]: row i dominates row j, straight from the definition."""
    A, B = F[:, None, :], F[None, :, :]
    return (A <= B).all(axis=-1) & (A < B).any(axis=-1)


def as_sets(fronts):
    return [sorted(f.tolist()) for f in fronts]


# Small integer grids make ties, copies and shared coordinates common.
def points(max_objectives=3, max_points=40, high=6):
    return st.integers(1, max_objectives).flatmap(
        lambda m: arrays(
            np.float64,
            st.tuples(st.integers(0, max_points), st.just(m)),
            elements=st.integers(0, high).map(float),
        )
    )


# ----- non-dominated sorting ----------------------------------------------------------------
def test_hand_worked_fronts():
    F = [[1, 5], [2, 2], [5, 1], [3, 3], [4, 4], [6, 6], [2, 2]]
    assert as_sets(non_dominated_sort(F)) == [[0, 1, 2, 6], [3], [4], [5]]


def test_copies_share_a_front_and_nan_rows_come_last():
    F = [[1, 1, 1], [1, 1, 1], [np.nan, 0, 0], [2, 2, 2], [0, np.nan, 9]]
    assert as_sets(non_dominated_sort(F)) == [[0, 1], [3], [2, 4]]
    assert as_sets(non_dominated_sort([[np.nan, 1.0]])) == [[0]]
    assert non_dominated_sort(np.empty((0, 2))) == []


def test_one_objective_ranks_by_value_with_ties():
    assert as_sets(non_dominated_sort([[3], [1], [2], [1]])) == [[1, 3], [2], [0]]


@settings(max_examples=200, deadline=None)
@given(points())
def test_fronts_match_the_definition(F):
    fronts = non_dominated_sort(F)
    assert sorted(np.concatenate(fronts).tolist() if fronts else []) == list(range(len(F)))
    D = dominance(F)
    for k, front in enumerate(fronts):
        assert not D[np.ix_(front, front)].any()  # a front is mutually non-dominated
        later = np.concatenate(fronts[k + 1 :]) if k + 1 < len(fronts) else np.array([], int)
        assert not D[np.ix_(later, front)].any()  # nothing later dominates anything earlier
        if k:  # each member of front k is dominated by someone in front k - 1
            assert D[np.ix_(fronts[k - 1], front)].any(axis=0).all()


def test_large_random_population_matches_a_pairwise_sort():
    rng = np.random.default_rng(0)
    F = np.round(rng.random((2000, 3)), 1)  # many ties
    rank, _ = ranks_and_crowding(F)
    D = dominance(F)
    expected, remaining, level = np.empty(len(F), int), np.ones(len(F), bool), 0
    while remaining.any():  # peel: the front is what no remaining row dominates
        front = remaining & ~D[remaining].any(axis=0)
        expected[front] = level
        remaining &= ~front
        level += 1
    assert np.array_equal(rank, expected)


# ----- crowding -----------------------------------------------------------------------------
def test_crowding_hand_worked():
    F = [[0, 4], [1, 2], [2, 1], [4, 0]]
    d = crowding_distance(F)
    assert np.isinf(d[0]) and np.isinf(d[3])
    assert d[1] == pytest.approx((2 - 0) / 4 + (4 - 1) / 4)
    assert d[2] == pytest.approx((4 - 1) / 4 + (2 - 0) / 4)


def test_crowding_small_fronts_are_all_boundary_and_copies_get_zero():
    assert np.isinf(crowding_distance([[1, 2]])).all()
    assert np.isinf(crowding_distance([[1, 2], [2, 1]])).all()
    d = crowding_distance([[0, 3], [1, 1], [1, 1], [3, 0]])
    assert np.isinf(d[[0, 3]]).all() and d[1] > 0 and d[2] == 0
    assert crowding_distance([[np.nan, 1], [0, 1], [1, 0]])[0] == 0


@settings(max_examples=100, deadline=None)
@given(points(max_points=20), st.randoms())
def test_crowding_does_not_depend_on_row_order(F, random):
    F = np.unique(F, axis=0)  # copies aside, the value is a function of the point set
    perm = np.array(random.sample(range(len(F)), len(F)), dtype=int)
    assert np.array_equal(crowding_distance(F)[perm], crowding_distance(F[perm]))


def test_ranks_and_crowding_computes_crowding_within_each_front():
    F = np.array([[0, 2], [1, 1], [2, 0], [1, 3], [3, 1], [2, 2]])
    rank, crowding = ranks_and_crowding(F)
    assert rank.tolist() == [0, 0, 0, 1, 1, 1]
    for r in (0, 1):
        np.testing.assert_array_equal(crowding[rank == r], crowding_distance(F[rank == r]))


# ----- hypervolume --------------------------------------------------------------------------
def grid_volume(F, ref):
    """Brute force on integer points: count unit cells dominated by some point."""
    ref = np.asarray(ref, int)
    low = np.minimum(F.min(axis=0).astype(int), ref) if len(F) else ref
    count = 0
    for cell in itertools.product(*(range(lo, r) for lo, r in zip(low, ref, strict=True))):
        count += any(np.all(p <= np.array(cell)) for p in F)
    return count


def inclusion_exclusion(F, ref):
    F = [p for p in F if np.all(p < ref)]
    total = 0.0
    for k in range(1, len(F) + 1):
        for subset in itertools.combinations(F, k):
            corner = np.max(subset, axis=0)
            total += (-1) ** (k + 1) * np.prod(np.asarray(ref) - corner)
    return total


def test_hypervolume_hand_worked():
    assert hypervolume([[1, 2], [2, 1]], [3, 3]) == 3.0
    assert hypervolume([[0, 0, 0]], [1, 2, 3]) == 6.0
    # two overlapping boxes in 3-D: 2x2x1 + 1x1x2 - overlap 1x1x1
    assert hypervolume([[0, 0, 1], [1, 1, 0]], [2, 2, 2]) == 4 + 2 - 1
    assert hypervolume([[1, 1]], [1, 5]) == 0.0  # not strictly better than ref in every objective
    assert hypervolume([[np.nan, 0], [0, 0]], [1, 1]) == 1.0
    assert hypervolume(np.empty((0, 3)), [1, 1, 1]) == 0.0
    with pytest.raises(ValueError, match="reference point"):
        hypervolume([[0, 0]], [1, 1, 1])


@settings(max_examples=100, deadline=None)
@given(points(max_objectives=3, max_points=6, high=5))
def test_hypervolume_of_one_point_is_its_box(F):
    ref = np.full(F.shape[1], 6.0)
    for p in F:
        assert hypervolume([p], ref) == pytest.approx(np.prod(ref - p))


def grid_points(m, max_points, high):
    shape = st.tuples(st.integers(0, max_points), st.just(m))
    return arrays(np.float64, shape, elements=st.integers(0, high).map(float))


@settings(max_examples=150, deadline=None)
@given(grid_points(2, 8, 6))
def test_hypervolume_2d_matches_grid_and_inclusion_exclusion(F):
    assert hypervolume(F, [6.0, 6.0]) == pytest.approx(grid_volume(F, [6, 6]))
    assert hypervolume(F, [6.0, 6.0]) == pytest.approx(inclusion_exclusion(F, [6, 6]))


@settings(max_examples=60, deadline=None)
@given(grid_points(3, 7, 4))
def test_hypervolume_3d_matches_grid(F):
    assert hypervolume(F, [4.0, 4.0, 4.0]) == pytest.approx(grid_volume(F, [4, 4, 4]))


@settings(max_examples=100, deadline=None)
@given(points(max_objectives=3, max_points=10, high=6), st.lists(st.integers(0, 6), min_size=3))
def test_hypervolume_never_shrinks_when_a_point_is_added(F, extra):
    ref = np.full(F.shape[1], 6.0)
    grown = np.vstack([F, np.array(extra[: F.shape[1]], dtype=float)])
    assert hypervolume(grown, ref) >= hypervolume(F, ref) - 1e-9


# ----- tables -------------------------------------------------------------------------------
def test_pareto_front_of_a_table():
    df = pd.DataFrame(
        {
            "is": [8.0, 7.0, 9.0, 9.5, np.nan, 9.9, 9.0, np.inf],
            "fid": [10.0, 9.0, 12.0, 8.0, 1.0, 1.0, 12.0, 1.0],
            "status": ["ok", "ok", "ok", "ok", "ok", "failed", "ok", "ok"],
        },
        index=list("abcdefgh"),
    )
    front = pareto_front(df, {"is": "max", "fid": "min"})
    # d (9.5, 8) dominates a, b, c, g; e is NaN, f failed, h infinite.
    assert list(front.index) == ["d"]
    no_status = df.drop(columns="status").iloc[:4]
    assert list(pareto_front(no_status, {"is": "max", "fid": "min"}).index) == ["d"]
    assert list(pareto_front(no_status, {"is": "min", "fid": "max"}).index) == ["a", "b", "c"]


def test_pareto_front_keeps_ties_and_checks_its_arguments():
    df = pd.DataFrame({"a": [1.0, 1.0, 0.0], "b": [0.0, 0.0, 1.0]})
    assert list(pareto_front(df, {"a": "max", "b": "max"}).index) == [0, 1, 2]
    with pytest.raises(KeyError, match="nope"):
        pareto_front(df, {"nope": "max"})
    with pytest.raises(ValueError, match="'max' or 'min'"):
        pareto_front(df, {"a": "maximise"})
