"""Tiny configurations of every search, killed at the driver's fault points, resumed, and
compared with committed expected values.

The expected tables (``tests/golden/<strategy>.json``) pin the objective columns of one tiny,
uninterrupted search per strategy on the CPU. A change that moves code must leave them as they
are; a change that alters numbers on purpose regenerates them in a commit of its own that says
why::

    python tests/test_golden.py            # rewrite tests/golden/*.json from fresh runs

The test runs each search as a user's process killed (SIGKILL) at two fault points of
:mod:`raygan.faults` in turn, with one trial failing in the first run, then resumes it to its
end: the table must hold every row once, with the uninterrupted run's values, the failed trial's
row included (it was run again on restore and succeeded), and agree with the searcher's state.
Between them the strategies cover every point of the boundary window.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile

import pytest
from procs import run_cli

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")

TINY: dict[str, list[str]] = {
    "eagan": [
        "--population", "4", "--generations", "2", "--gf", "8", "--df", "8",
        "--warmup-steps", "0", "--round-steps", "6", "--s2-steps", "3", "--g-batch", "8",
        "--d-batch", "8", "--eval-samples", "40", "--max-images", "200", "--workers", "2",
        "--keep-weights", "last", "--max-failures", "0",
    ],
    "autogan": [
        "--gf", "8", "--df", "8", "--iterations", "3", "--grow-at", "1,2",
        "--controller-steps", "1", "--controller-batch", "2", "--round-steps", "4",
        "--n-critic", "1", "--g-batch", "8", "--d-batch", "8", "--candidates", "3",
        "--keep", "2", "--eval-samples", "40", "--max-images", "200", "--workers", "1",
        "--reset-window", "0", "--max-failures", "0",
    ],
    "adversarialnas": [
        "--workers", "2", "--epochs", "2", "--batch", "16", "--gf", "8", "--df", "8",
        "--n-critic", "2", "--max-images", "48", "--eval-samples", "20", "--gumbel",
    ],
}  # fmt: skip
"""``--max-failures 0``: a trial the fault makes fail fails once, not three times (it
changes how a search runs, not its results)."""

KEYS = ["stage", "generation", "step", "individual", "g_genotype", "d_genotype"]
"""What orders the rows: Tune's trial ids and finishing order differ between runs."""
VALUES = ["is", "fid", "reward", "entropy", "g_params", "d_params", "rank", "crowding"]
"""The objective columns (and what selection derived from them) that must not move."""


def run_tiny(strategy: str, out: str) -> list[dict]:
    """Run one tiny search in this process; its rows as plain dicts, in a stable order."""
    from raygan import results
    from raygan.cli import main

    assert main(["search", strategy, *TINY[strategy], "--out", out]) == 0
    return table_rows(results.load(out))


def table_rows(df) -> list[dict]:
    """A table's key and value columns as plain dicts, in a stable order."""
    rows = []
    for record in df.loc[df["kind"] != "round", KEYS + VALUES].to_dict("records"):
        rows.append({k: clean(v) for k, v in record.items()})
    return sorted(rows, key=lambda r: json.dumps([r[k] for k in KEYS]))


def clean(value):
    """JSON-able and comparable: NaN/None become None, numpy scalars plain numbers."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


SCORED = {"is", "fid", "reward", "crowding", "entropy"}
"""Columns computed from the evaluation's scores. Training is bitwise the same on every x86
CPU tried, its scores are not: the extractor's float32 matrix products and FID's matrix square
root round differently per CPU (up to 2.8e-4 relative in FID between an AMD EPYC and the
machine that wrote the expected tables; bench/RESULTS.md). AutoGAN's controller learns from
the rewards, so its entropy follows them (1e-7 there)."""
SCORE_RTOL = 1e-3


def same(a, b, column: str = "") -> bool:
    """Equal to the digit: integers and strings exactly, floats to 12 significant digits;
    a score (:data:`SCORED`) to :data:`SCORE_RTOL`."""
    if isinstance(a, float) or isinstance(b, float):
        rel = SCORE_RTOL if column in SCORED else 1e-12
        return a is not None and b is not None and math.isclose(a, b, rel_tol=rel)
    return a == b


KILLS: dict[str, list[tuple[str, str | None, int]]] = {
    # (RAYGAN_FAULT, the proposal whose trial fails in that run ("*": every one), exit code)
    "eagan": [("", "*", 1), ("trial-done:4", "0-1", -9), ("mid-checkpoint:1", None, -9)],
    "autogan": [("trial-done:2", "p0", -9)],
    "adversarialnas": [("state-saved:1", None, -9), ("rows-appended:1", None, -9)],
}
"""Each strategy's runs before the last, in turn. EAGAN: every trial of stage-1 generation 0
fails (the search stops, keeping the generation's shared round); then killed once that
generation's four trials finished, one of them having failed; then as the failed one's rerun
reports its checkpoint. AutoGAN (on S3): killed after the first controller batch finished, one
having failed.
AdversarialNAS: killed after epoch 1's state was saved, then once epoch 2's row was appended."""

ON_S3 = {"autogan"}
"""Strategies whose test runs with ``--out`` on S3 (the moto server of tests/conftest.py)."""


def killed_runs(strategy: str, out: str, tmp_path) -> list[dict]:
    """Run the strategy's runs in turn (each a process of its own, with a Ray of its own);
    the state each left."""
    from raygan import results, state, storage
    from raygan.strategies.common import Driver

    saved = []
    for i, (fault, failing, expected) in enumerate(KILLS[strategy]):
        env = {"RAYGAN_FAULT": fault, "RAYGAN_FAULT_TRIAL": failing or ""}
        args = ["search", strategy, *TINY[strategy], "--out", out] + (["--resume"] if i else [])
        code = run_cli(args, str(tmp_path / f"run{i}.log"), env)
        log = (tmp_path / f"run{i}.log").read_text()
        said = f"fault injected: {fault.split(':')[0]}" if fault else f"[{strategy}] stopped:"
        assert code == expected and said in log, log[-3000:]
        saved.append(state.load(storage.join(out, Driver.STATE)))
        if failing == "*":  # nothing of the failed boundary was kept but its round
            assert results.load(out).empty
            assert not storage.exists(storage.join(out, "tune", "stage1-gen0"))
        if strategy not in ON_S3:
            plant_payloads(out, str(tmp_path / "payload-ran"))
    return saved


def check_killed(strategy: str, out: str, saved: list[dict]) -> None:
    """What each run left: a boundary where every trial failed recorded nothing but its round;
    a failed trial's error was in the state before the kill."""

    for (_, failing, _), left in zip(KILLS[strategy], saved, strict=True):
        if failing == "*":
            assert left["pending"] is None and left["round"]["state"]  # the round is kept
        elif failing:
            outcomes = left["pending"]["outcomes"]
            assert "fault injected" in outcomes[failing]["error"]
            assert all(o["error"] is None for k, o in outcomes.items() if k != failing)


class Payload:
    """Unpickling this creates ``marker`` (the pickle names only ``builtins.open``)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant_payloads(out: str, marker: str) -> None:
    """What an attacker with write access to ``--out`` would plant for a resume to read:
    Tune's experiment files (``tuner.pkl``, a searcher's pickle, an experiment state whose trial
    is a hex-encoded cloudpickle, as Tune writes them) in every Tune experiment and Ray Train
    run folder, and a pickled driver state beside the JSON one."""
    import glob
    import pickle

    blob = pickle.dumps(Payload(marker))
    state = {"trial_data": [[json.dumps({"trial_id": "x"}), json.dumps({"stub": blob.hex()})]]}
    for folder in [*glob.glob(os.path.join(out, "*", "*")), out]:
        if os.path.isdir(folder):
            for name in ("tuner.pkl", "search_state.pkl", "searcher-state-2026.pkl"):
                with open(os.path.join(folder, name), "wb") as f:
                    f.write(blob)
            with open(os.path.join(folder, "experiment_state-2026-12-02_00-00-00.json"), "w") as f:
                json.dump(state, f)


def killed_and_resumed(strategy: str, tmp_path, s3_uri: str) -> str:
    """The strategy's tiny search, killed and resumed as :data:`KILLS` says, to its end (the
    last run in this process, on the session's Ray); its ``--out``."""
    from raygan.cli import main

    out = s3_uri if strategy in ON_S3 else str(tmp_path / "out")
    check_killed(strategy, out, killed_runs(strategy, out, tmp_path))
    assert main(["search", strategy, *TINY[strategy], "--out", out, "--resume"]) == 0
    assert not (tmp_path / "payload-ran").exists()  # nothing planted was unpickled
    return out


@pytest.mark.slow
@pytest.mark.parametrize("strategy", sorted(TINY))
def test_killed_and_resumed_search_matches_its_expected_table(strategy, golden_search):
    from raygan import results, state, storage
    from raygan.strategies.common import Driver

    with open(os.path.join(GOLDEN, f"{strategy}.json")) as f:
        expected = json.load(f)
    out = golden_search(strategy)
    df = results.load(out)
    assert not df["trial_id"].duplicated().any() and (df["status"] == "ok").all()
    got = table_rows(df)
    assert len(got) == len(expected)
    for row, want in zip(got, expected, strict=True):
        for column in KEYS + VALUES:
            assert same(row[column], want[column], column), (column, row, want)
    paid_for(strategy, df)
    df = df[df["kind"] != "round"]
    agrees_with_search(strategy, df, state.load(storage.join(out, Driver.STATE)))
    assert not storage.exists(storage.join(out, storage.LEASE_FILE))  # released at the end
    if strategy in ON_S3:  # checkpoints, rounds and state all in the bucket
        assert df["checkpoint"].str.startswith("s3://").all()
        assert storage.exists(storage.join(df["checkpoint"].iloc[-1], "state.pt"))


ROUNDS = {"eagan": 2, "autogan": 3, "adversarialnas": 0}
"""Shared rounds with a row of their own (AdversarialNAS's epoch rows are its rounds')."""
WORKERS = {"eagan": 2, "autogan": 1, "adversarialnas": 2}
"""Each strategy's ``--workers`` in :data:`TINY`."""


def paid_for(strategy: str, df) -> None:
    """Every row records its cost: the device, device-seconds, where the time went; every
    round and every trial that trained, its FLOPs."""
    rounds = df[df["kind"] == "round"]
    assert len(rounds) == ROUNDS[strategy] and rounds["trial_id"].str.startswith("round-").all()
    assert (df["device"] == "cpu").all() and (df["device_s"] > 0).all()
    assert (df["device_s"] >= df["wall_s"] * 0.999).all()  # a share of at least one core
    for column in ("train_s", "eval_s", "setup_s"):
        assert (df[column] >= 0).all() and (df[column] <= df["wall_s"]).all(), column
    trained = df[df["budget_steps"] > 0]
    assert not trained.empty and (trained["train_flops"] > 0).all()
    assert (df.loc[df["budget_steps"] == 0, "train_flops"] == 0).all()
    shared = df[df["kind"].isin(["round", "epoch"])]
    assert (shared["device_share"] == WORKERS[strategy]).all()  # a core for each worker


def agrees_with_search(strategy: str, df, final: dict) -> None:
    """The searcher's saved state tells the same story as the table."""
    if strategy == "eagan":  # stage 2's NSGA-II: every individual's status and objectives
        from raygan.searchers.nsga2 import NSGA2
        from raygan.strategies.selection import objectives

        search = NSGA2(
            "eagan_d",
            population_size=4,
            generations=2,
            metrics=tuple(objectives(2)),
            modes=tuple(objectives(2).values()),
            seed=2,
            reevaluate_parents=True,  # as the driver's stage 2 (seed + stage)
        )
        search.load_state_dict(final["algorithm"])
        s2 = df[df["stage"] == 2].set_index(["generation", "individual"])
        assert len(search.history()) == len(s2)
        for h in search.history():
            row = s2.loc[(h["generation"], h["individual"])]
            assert h["status"] == "ok" and same(h["fid"], float(row["fid"]))
    elif strategy == "autogan":  # the controller was told every trial, once
        assert final["controller"]["counter"] == len(df)
    else:
        assert final["epoch"] == len(df) == df["generation"].max()


if __name__ == "__main__":
    import ray

    os.environ.setdefault("RAYGAN_CACHE", tempfile.mkdtemp(prefix="raygan-golden-cache-"))
    import torch

    torch.set_num_threads(1)  # as the suite's conftest does
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    for name in sys.argv[1:] or sorted(TINY):
        rows = run_tiny(name, os.path.join(tempfile.mkdtemp(), name))
        with open(os.path.join(GOLDEN, f"{name}.json"), "w") as f:
            json.dump(rows, f, indent=1)
        print(f"{name}: {len(rows)} rows")
