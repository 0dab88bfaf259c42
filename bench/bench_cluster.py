"""Cluster scaling on one machine: one EAGAN-like generation on 3 nodes vs 1, and 500 trials.

A generation is P trials through Tune exactly as raygan runs one (``reuse_actors``, a
checkpoint per trial, then every trial's row, built from its ``ray.tune.Result``, appended to
a trial table by the driver, as a search does at a boundary). Each trial
costs a fixed ``--trial-seconds`` of waiting, the stand-in for a GPU's work: on this one
machine three ``ray.cluster_utils.Cluster`` nodes share the same cores, so a CPU-bound trial
could not show what three real machines give; a trial that holds its node's only CPU slot for
a fixed time can. Nodes have 1 CPU each and a trial asks for 1, so 1 node runs the generation
one trial at a time and 3 nodes run it three at a time: the ideal ratio is 3, and what is
lost to it is Ray's cost of placing trials on other nodes. Both clusters run in this one
process, one after the other; then a 500-trial search of trials that report once and end
(``tests/test_load.py``'s workload) runs on a plain 2-CPU ``ray.init``.

    python bench/bench_cluster.py                       # P=6, 10 s trials, 500-trial run
    python bench/bench_cluster.py --results bench/RESULTS.md   # also append the figures
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

G = "nas_cell_g:1,1,1,0,2,3,1/1,1,0,1,3,0,5/0,1,0,3,0,0,3"
D = "autogan_d:"


def fixed_cost_trial(config: dict) -> None:
    """Holds its CPU slot for ``seconds``, then reports once with a small checkpoint."""
    from ray import tune

    time.sleep(config["seconds"])
    with tempfile.TemporaryDirectory() as d:
        Path(d, "state.txt").write_text(str(config["row"]["individual"]))
        tune.report(
            {"status": "ok", "is": 1.0, "fid": 50.0, "done": True},
            checkpoint=tune.Checkpoint.from_directory(d),
        )


def report_once(config: dict) -> None:
    from ray import tune

    tune.report({"status": "ok", "is": 1.0, "fid": 50.0, "done": True})


def run_trials(trainable, rows: int, out: Path, name: str, extra: dict, **tune_config) -> float:
    """Tune ``rows`` trials, then append their rows to a trial table as the driver does; the
    wall time of both, rows checked."""
    from ray import tune

    from raygan import results
    from raygan.results import append_once
    from raygan.trainable import row_fields

    experiment = str(out / name)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={
            "g": G,
            "d": D,
            **extra,
            "row": tune.grid_search([{"individual": i} for i in range(rows)]),
        },
        tune_config=tune.TuneConfig(reuse_actors=True, **tune_config),
        run_config=tune.RunConfig(storage_path=str(out / "tune"), name=name, verbose=0),
    )
    start = time.perf_counter()
    grid = tuner.fit()
    append_once(
        experiment, [results.row(row_fields(r), experiment=name, strategy="eagan") for r in grid]
    )
    wall = time.perf_counter() - start
    df = results.load(experiment)
    assert grid.num_errors == 0, f"{grid.num_errors} trials failed"
    assert len(df) == rows and df["trial_id"].is_unique, f"{len(df)} rows for {rows} trials"
    return wall


def generation(nodes: int, population: int, seconds: float, out: Path) -> dict:
    import ray

    from raygan.cluster import local_cluster

    start = time.perf_counter()
    with local_cluster(nodes, cpus_per_node=1):
        up = time.perf_counter() - start
        assert len([n for n in ray.nodes() if n["Alive"]]) == nodes
        wall = run_trials(
            fixed_cost_trial, population, out, f"generation-{nodes}", {"seconds": seconds}
        )
    return {"nodes": nodes, "startup_s": up, "wall_s": wall}


def load(trials: int, out: Path) -> float:
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        return run_trials(report_once, trials, out, "load", {}, max_concurrent_trials=2)
    finally:
        ray.shutdown()


def machine() -> str:
    load1, load5, _ = os.getloadavg()
    return (
        f"{os.cpu_count()} cores, {platform.python_version()}, "
        f"load average {load1:.1f} (1 min) / {load5:.1f} (5 min) at the start"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=6, help="trials per generation (P)")
    parser.add_argument("--trial-seconds", type=float, default=10.0, help="fixed cost per trial")
    parser.add_argument("--trials", type=int, default=500, help="trials of the load run (0: skip)")
    parser.add_argument("--results", help="append the figures to this Markdown file")
    args = parser.parse_args()
    # A private Ray temp folder: a Cluster records its address there, where other Ray users
    # of this machine (a plain ray.init()) would otherwise find and join it.
    private_tmp = None
    if "RAY_TMPDIR" not in os.environ:
        private_tmp = os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="rgb", dir="/tmp")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    where = machine()

    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            runs = [generation(n, args.population, args.trial_seconds, out) for n in (3, 1)]
            load_wall = load(args.trials, out) if args.trials else None
    finally:
        if private_tmp:
            shutil.rmtree(private_tmp, ignore_errors=True)

    three, one = runs
    ratio = one["wall_s"] / three["wall_s"]
    lines = [
        f"- command: `{command}`",
        f"- machine: {where}",
        "",
        "| run | nodes (1 CPU each) | cluster start (s) | wall (s) | ideal (s) | over ideal (s) |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        ideal = -(-args.population // run["nodes"]) * args.trial_seconds
        lines.append(
            f"| generation, P={args.population}, {args.trial_seconds:g} s trials "
            f"| {run['nodes']} | {run['startup_s']:.1f} | {run['wall_s']:.1f} | {ideal:.0f} "
            f"| {run['wall_s'] - ideal:+.1f} |"
        )
    lines += [
        "",
        f"- speed-up of 3 nodes over 1: **{ratio:.2f}x** (ideal 3.00x)",
    ]
    if load_wall is not None:
        lines.append(
            f"- load: {args.trials} one-report trials into the trial table on 2 CPUs: "
            f"**{load_wall:.1f} s** ({args.trials / load_wall:.1f} trials/s), every row once"
        )
    text = "\n".join(lines)
    print(text)
    if args.results:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        path = Path(args.results)
        before = path.read_text() if path.exists() else ""
        heading = "" if "## Cluster" in before else "\n## Cluster\n"
        with open(path, "a") as f:
            f.write(f"{heading}\n### {stamp}\n\n{text}\n")


if __name__ == "__main__":
    main()
