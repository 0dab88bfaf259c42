"""Tune's overhead on one trial: the same training function called directly vs as a trial.

A trial is one fresh worker process, so the fair baseline is a fresh process too: the direct
run is ``python -c "run_trial(...)"`` in a subprocess, timed from spawn to exit (interpreter,
imports and all), with the same thread count Ray gives a trial of ``--cpus`` CPUs. The Tune
run is a one-trial ``raygan.trainable.fit_trials`` (what ``raygan train`` runs) on an already
started Ray (``ray.init`` is a once-per-search cost, not a per-trial one). The step count is
calibrated first so the direct run takes about ``--seconds``. The ratio (Tune wall / direct
wall - 1) is the overhead; the target is under 10% at 30 s.

    python bench/bench_trial_overhead.py --seconds 30
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import ray

from raygan.trainable import fit_trials

CONFIG = {
    "g": "nas_cell_g:1,1,1,0,2,3,1/1,1,0,1,3,0,5/0,1,0,3,0,0,3",
    "d": "autogan_d:",
    "gf": 32,
    "df": 32,
    "n_critic": 1,
    "g_batch": 32,
    "d_batch": 32,
    "max_images": 2000,
    "eval_samples": 500,
    "seed": 0,
}

DIRECT = """
import json, sys, time
from raygan.trainable import run_trial
start = time.perf_counter()
result = run_trial(json.loads(sys.argv[1]), lambda metrics, checkpoint_dir: None)
assert result["status"] == "ok", result
print(json.dumps({"inside": time.perf_counter() - start}))
"""


def direct(config: dict, cpus: int) -> tuple[float, float]:
    """Wall time of a fresh process calling ``run_trial``, and the call's own part of it."""
    env = {**os.environ, "OMP_NUM_THREADS": str(cpus)}  # what Ray sets for a trial
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", DIRECT, json.dumps(config)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    return wall, json.loads(out.stdout.strip().splitlines()[-1])["inside"]


def as_tune_trial(config: dict, cpus: int) -> tuple[float, float]:
    """Wall time of a one-trial ``fit_trials`` and the trial's own ``wall_s`` inside it."""
    with tempfile.TemporaryDirectory() as storage:
        start = time.perf_counter()
        (trial,) = fit_trials(storage, "overhead", resources={"cpu": cpus}, param_space=config)
        wall = time.perf_counter() - start
        assert trial.error is None and trial.metrics["status"] == "ok", trial.metrics
    return wall, trial.metrics["wall_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="target trial length")
    parser.add_argument("--cpus", type=int, default=1, help="CPUs per trial (raygan's default)")
    args = parser.parse_args()
    ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
    direct({**CONFIG, "steps": 2}, args.cpus)  # warm the disk caches (extractor, reference)
    probe, probe_inside = direct({**CONFIG, "steps": 20}, args.cpus)
    startup = probe - probe_inside  # interpreter and imports
    steps = max(20, int(20 * (args.seconds - startup) / probe_inside))
    config = {**CONFIG, "steps": steps}
    t_direct, d_inside = direct(config, args.cpus)
    t_tune, t_inside = as_tune_trial(config, args.cpus)
    print(f"command: python {' '.join(sys.argv)}")
    header = ("steps", "direct s", "(in call)", "tune s", "(in trial)", "overhead")
    print(" ".join(f"{h:>10}" for h in header))
    print(
        f"{steps:>10} {t_direct:>10.2f} {d_inside:>10.2f} {t_tune:>10.2f} {t_inside:>10.2f} "
        f"{t_tune / t_direct - 1:>10.1%}"
    )
    print("in call / in trial: run_trial's own wall time; the rest is process start, imports")
    print("and (Tune) scheduling and bookkeeping")


if __name__ == "__main__":
    main()
