"""Tune's overhead on one trial: the same training function called directly vs as a trial.

Both run in this one process's session on the same machine, one after the other: first
``run_trial`` directly (calibrating the step count so it takes about ``--seconds``), then the
same config as a one-trial ``tune.Tuner`` (``ray.init`` is done before the clock starts). The
ratio (Tune wall / direct wall - 1) is the overhead; the target is under 10% at 30 s.

    python bench/bench_trial_overhead.py --seconds 30
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import ray
from ray import tune

from raygan.trainable import run_trial, train_pair

CONFIG = {
    "g": "nas_cell_g:1,1,1,0,2,3,1/1,1,0,1,3,0,5/0,1,0,3,0,0,3",
    "d": "autogan_d:", "gf": 32, "df": 32, "n_critic": 1, "g_batch": 32, "d_batch": 32,
    "max_images": 2000, "eval_samples": 500, "seed": 0,
}


def direct(config: dict) -> float:
    start = time.perf_counter()
    run_trial(config, lambda metrics, checkpoint_dir: None)
    return time.perf_counter() - start


def as_tune_trial(config: dict, cpus: int) -> float:
    with tempfile.TemporaryDirectory() as storage:
        start = time.perf_counter()
        tuner = tune.Tuner(
            tune.with_resources(train_pair, {"cpu": cpus}), param_space=config,
            run_config=tune.RunConfig(storage_path=storage, name="overhead", verbose=0))
        grid = tuner.fit()
        wall = time.perf_counter() - start
        assert grid[0].metrics["status"] == "ok", grid[0].metrics
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="target trial length")
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    run_trial({**CONFIG, "steps": 2}, lambda m, c: None)  # warm caches (extractor, reference)
    probe = direct({**CONFIG, "steps": 20})
    steps = max(20, int(20 * args.seconds / probe))
    config = {**CONFIG, "steps": steps}
    t_direct = direct(config)
    t_tune = as_tune_trial(config, cpus)
    print(f"command: python {' '.join(sys.argv)}")
    print(f"{'steps':>8} {'direct s':>10} {'tune s':>10} {'overhead':>9}")
    print(f"{steps:>8} {t_direct:>10.2f} {t_tune:>10.2f} {t_tune / t_direct - 1:>9.1%}")


if __name__ == "__main__":
    main()
