"""Failures are recorded, not repeated: a boundary whose every trial failed stops the search
with the trials' error, keeps its shared round, and records nothing of the boundary."""

from __future__ import annotations

import os

import pytest
from procs import run_cli
from test_golden import TINY

from raygan import results, state
from raygan.strategies.common import Driver


@pytest.mark.slow
def test_a_boundary_whose_every_trial_failed_stops_the_search(tmp_path):
    """EAGAN's first generation (the check is the driver's, the same for every strategy)."""
    strategy, boundary = "eagan", "stage1-gen0"
    out = str(tmp_path / strategy)
    log = tmp_path / "run.log"
    args = ["search", strategy, *TINY[strategy], "--out", out]
    code = run_cli(args, str(log), {"RAYGAN_FAULT_TRIAL": "*"})
    lines = log.read_text().splitlines()
    stopped = [line for line in lines if line.startswith(f"[{strategy}] stopped:")]
    assert code == 1 and len(stopped) == 1, log.read_text()[-3000:]
    assert f"every trial of {boundary} failed (RuntimeError: fault injected" in stopped[0]
    assert "rerun with --resume" in stopped[0]
    saved = state.load(os.path.join(out, Driver.STATE))
    assert saved["pending"] is None and saved["round"]["state"]  # the round is kept
    assert results.load(out).empty  # nothing of the boundary was recorded
    assert not os.path.exists(os.path.join(out, "tune", boundary))
