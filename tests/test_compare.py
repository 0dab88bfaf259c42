"""``raygan compare``: hypervolume of the front found so far against device-hours, per search
and per strategy over seeds, and the final picks; on tables written as searches write them."""

from __future__ import annotations

import os

import numpy as np
import pytest

from raygan import compare, results
from raygan.cli import main

G = "nas_cell_g:1,1,1,0,3,3,1/1,1,0,1,3,3,3/0,1,0,3,3,0,3"
D = "autogan_d:"


def write(path, strategy: str, seed: int, scores, *, dataset="shapes", round_s=0.0, **extra) -> str:
    """A search's table: an optional shared round first, then one trial per (IS, FID), each
    having cost one device-hour."""
    rows = []
    if round_s:
        rows.append({"trial_id": "round-0", "kind": "round", "device_s": round_s})
    for i, (is_, fid) in enumerate(scores):
        rows.append({"trial_id": f"t{i}", "g_genotype": G, "d_genotype": D, "is": is_,
                     "fid": fid, "g_params": 100 + i, "device_s": 3600.0})  # fmt: skip
    common = {"dataset": dataset, "extractor": "raygan-shapes-v1", "seed": seed, **extra}
    results.append(
        str(path),
        [results.row({**common, **r}, experiment=path.name, strategy=strategy) for r in rows],
    )
    return str(path)


def test_hypervolume_so_far_and_picks_match_a_hand_computation(tmp_path):
    # IS 1..3 and FID 10..30 over both searches: normalised, IS 3 is 0, FID 10 is 0
    a = write(tmp_path / "a", "eagan", 0, [(1.0, 30.0), (3.0, 20.0)])
    b = write(tmp_path / "b", "random", 0, [(2.0, 10.0), (1.0, 30.0)], round_s=1800.0)
    searches = compare.load([a, b])
    lo, span = compare.normalisation(searches)
    assert np.allclose(lo, [-3.0, 10.0]) and np.allclose(span, [2.0, 20.0])
    ca = compare.curve(searches[0], lo, span)
    # after (1, 30) -> (1, 1): nothing better than 1.1 x 1.1 but a 0.1 x 0.1 corner
    # after (3, 20) -> (0, 0.5): 1.1 x 0.6 more, overlapping the corner
    assert np.allclose(ca["device_h"], [1, 2])
    assert np.allclose(ca["hypervolume"], [0.01, 1.1 * 0.6])
    cb = compare.curve(searches[1], lo, span)
    assert np.allclose(cb["device_h"], [0.5, 1.5, 2.5])  # the round is paid for first
    assert np.allclose(cb["hypervolume"], [0, 0.6 * 1.1, 0.6 * 1.1])  # (0.5, 0) found at 1.5
    picks = {p["search"]: p for p in map(compare.pick, searches)}
    assert (picks[a]["is"], picks[a]["fid"], picks[a]["device_h"]) == (3.0, 20.0, 2.0)
    assert (picks[b]["fid"], picks[b]["trials"], picks[b]["device_h"]) == (10.0, 2, 2.5)


def test_a_strategy_is_averaged_over_its_seeds_up_to_what_each_reached(tmp_path):
    paths = [
        write(tmp_path / "e0", "eagan", 0, [(1.0, 30.0), (3.0, 10.0)]),
        write(tmp_path / "e1", "eagan", 1, [(1.0, 30.0), (1.0, 30.0), (2.0, 20.0)]),
    ]
    searches = compare.load(paths)
    lo, span = compare.normalisation(searches)
    curves = {s.name: compare.curve(s, lo, span) for s in searches}
    grouped = compare.by_strategy(curves, searches)
    assert grouped["device_h"].max() == 2.0  # the least any seed spent
    end = grouped.iloc[-1]
    assert end["min"] == pytest.approx(0.01) and end["max"] == pytest.approx(1.21)
    assert end["mean"] == pytest.approx((0.01 + 1.21) / 2) and end["searches"] == 2


def test_tune_searches_are_told_apart_by_searcher_and_scheduler(tmp_path):
    """One strategy, ``tune``, runs every Tune searcher: its searches group by searcher."""
    paths = [
        write(tmp_path / "t0", "tune", 0, [(1.0, 30.0)], searcher="optuna-tpe", scheduler="fifo"),
        write(tmp_path / "t1", "tune", 0, [(2.0, 20.0)], searcher="random", scheduler="asha"),
        write(tmp_path / "e0", "eagan", 0, [(3.0, 10.0)]),
    ]
    labels = [s.strategy for s in compare.load(paths)]
    assert labels == ["tune:optuna-tpe", "tune:random+asha", "eagan"]


def test_compare_prints_the_normalisation_and_draws_the_curves(tmp_path, capsys):
    a = write(tmp_path / "a", "eagan", 0, [(1.0, 30.0), (3.0, 20.0)])
    b = write(tmp_path / "b", "random", 0, [(2.0, 10.0)])
    assert main(["compare", a, b, "--plots", str(tmp_path / "plots")]) == 0
    text = capsys.readouterr().out
    assert "is max (1 .. 3), fid min (10 .. 30)" in text and "reference point 1.1" in text
    assert "eagan" in text and "random" in text and "final picks" in text
    assert os.path.getsize(tmp_path / "plots" / "compare.png") > 1000


@pytest.mark.parametrize(
    ("other", "message"),
    [
        ({"dataset": "cifar10"}, "differ in dataset (cifar10 vs shapes)"),
        ({"scores": []}, "no trial rows at"),
    ],
)
def test_searches_that_do_not_compare_are_refused_with_one_line(tmp_path, capsys, other, message):
    a = write(tmp_path / "a", "eagan", 0, [(1.0, 30.0)])
    scores = other.pop("scores", [(2.0, 10.0)])
    b = write(tmp_path / "b", "random", 0, scores, round_s=60.0, **other)
    assert main(["compare", a, b]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert err.startswith("raygan compare: error: ") and err.count("raygan compare") == 1
