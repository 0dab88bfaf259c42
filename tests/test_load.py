"""Load: a Tune search of 500 trials writes exactly 500 rows to the raygan trial table.

Every trial reports once and ends; the driver then builds each trial's row from its
``ray.tune.Result`` (``raygan.trainable.row_fields`` into ``raygan.results.row``) and appends
the rows its table lacks (``raygan.results.append_once``), as every raygan search
does at a boundary. No row may be lost and none written twice, not even when the driver
appends the same results again (a driver killed between appending and saving its state
replays the boundary). The trials are trivial on purpose: what is measured is the path from
Tune to the table, at volume.
"""

from __future__ import annotations

import time

from procs import outcome
from ray import tune

from raygan import results
from raygan.results import append_once
from raygan.trainable import row_fields

TRIALS = 500
G = "nas_cell_g:1,1,1,0,2,3,1/1,1,0,1,3,0,5/0,1,0,3,0,0,3"
D = "autogan_d:"


def test_500_trials_land_in_the_table_exactly_once(ray_local, tmp_path):
    def report_once(config: dict) -> None:  # nested: Ray ships it by value to the workers
        tune.report({"status": "ok", "is": 1.0, "fid": 50.0, "done": True})

    experiment = str(tmp_path / "load")
    started = time.perf_counter()
    tuner = tune.Tuner(
        tune.with_resources(report_once, {"cpu": 1}),
        param_space={
            "g": G,
            "d": D,
            "row": tune.grid_search([{"individual": i} for i in range(TRIALS)]),
        },
        tune_config=tune.TuneConfig(
            reuse_actors=True,
            max_concurrent_trials=2,
            time_budget_s=240,  # a stall ends the run (and fails below) instead of hanging CI
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), name="load", verbose=0),
    )
    grid = tuner.fit()
    rows = [results.row(row_fields(outcome(r)), experiment="load", strategy="eagan") for r in grid]
    append_once(experiment, rows)
    wall = time.perf_counter() - started
    append_once(experiment, rows)  # the replayed boundary adds nothing

    assert grid.num_errors == 0
    df = results.load(experiment)
    assert len(df) == TRIALS, f"{len(df)} rows after {wall:.0f} s"
    assert df["trial_id"].is_unique
    assert sorted(df["individual"]) == list(range(TRIALS))
    assert set(df["status"]) == {"ok"} and set(df["experiment"]) == {"load"}
    assert set(df["g_genotype"]) == {G} and set(df["fid"]) == {50.0}
    assert sorted(df["trial_id"]) == sorted(r.metrics["trial_id"] for r in grid)
    print(f"{TRIALS} trials -> {len(df)} rows in {wall:.1f} s ({TRIALS / wall:.1f} trials/s)")
