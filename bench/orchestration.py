"""How much of a search's time is orchestration: everything but training and scoring.

Runs one search as a user would (``raygan search NAME`` in a process of its own, on this
machine's CPUs), then reads its table's cost columns:

- **measured**: the search's wall x the machine's cores (the device-seconds it held) against
  the rows' training and scoring seconds x their share; the rest is orchestration (Ray Train
  and Tune start-up, worker processes, data and weight loading, checkpoints, the driver);
- **per boundary**: each shared round's wall against its workers' own training, scoring and
  set-up, and the mean trial's set-up;
- **estimate**: ``raygan search NAME --estimate``'s training FLOPs of each stage, against
  the FLOPs the rows recorded (their ``train_flops``, shared rounds included);
- **paper model**: a paper-size EAGAN stage-1 generation's training and scoring time at
  ``--tflops`` (from ``raygan search eagan --preset paper --estimate``'s counts), against the
  orchestration this search measured per round and per trial: the share orchestration
  would take of that generation if it cost on a GPU cluster what it costs here.

    python bench/orchestration.py [--strategy eagan] [--preset quick] [--tflops 200]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from raygan import results
from raygan.cluster import machine_cpus


def run_search(strategy: str, preset: str, out: str) -> float:
    """Run the search to its end; its wall in seconds."""
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "raygan.cli", "search", strategy, "--preset", preset]
    subprocess.run([*cmd, "--out", out], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def shares(df, wall: float, cores: int) -> dict[str, float]:
    held = wall * cores
    training = (df["train_s"].fillna(0) * df["device_share"]).sum()
    scoring = (df["eval_s"].fillna(0) * df["device_share"]).sum()
    return {
        "held": held,
        "training": training / held,
        "scoring": scoring / held,
        "orchestration": 1 - (training + scoring) / held,
    }


def overheads(df) -> dict[str, float]:
    """Seconds of orchestration per shared round and per trial, as measured."""
    rounds, trials = df[df["kind"] == "round"], df[df["kind"] != "round"]
    busy = rounds["train_s"] + rounds["eval_s"]
    return {
        "round": float((rounds["wall_s"] - busy).mean()) if len(rounds) else 0.0,
        "trial": float((trials["wall_s"] - trials["train_s"] - trials["eval_s"]).mean()),
    }


def estimated_vs_measured(df, strategy: str, preset: str) -> list[tuple[str, float, float]]:
    """Each stage's estimated training FLOPs and those its rows recorded (EAGAN's stages
    by the ``stage`` column; another strategy's as one total)."""
    from raygan import strategies
    from raygan.cli import build_parser
    from raygan.spec import build_spec

    args = build_parser().parse_args(["search", strategy, "--preset", preset])
    module = strategies.available()[strategy]
    stages = module.estimate(build_spec(strategy, args))
    if "stage" in df and len(stages) == df["stage"].nunique():
        measured = df.groupby("stage")["train_flops"].sum().tolist()
        return [(st.name, st.train_flops, m) for st, m in zip(stages, measured, strict=True)]
    return [("all", sum(st.train_flops for st in stages), float(df["train_flops"].sum()))]


def paper_generation(tflops: float) -> dict[str, float]:
    """A paper-size stage-1 generation's seconds of training and scoring at ``tflops``, and its
    trials (from the estimate's counts: 1 of 18 generations; the warm-up left out)."""
    from raygan.cli import build_parser
    from raygan.spec import build_spec
    from raygan.strategies import eagan

    args = build_parser().parse_args(["search", "eagan", "--preset", "paper"])
    spec = build_spec("eagan", args)
    stage1 = eagan.estimate(spec.replace(warmup_steps=0, generations=1))[0]
    rate = tflops * 1e12
    return {
        "train_s": stage1.train_flops / rate,
        "eval_s": stage1.eval_flops / rate,
        "trials": spec.population,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--strategy", default="eagan")
    p.add_argument("--preset", default="quick")
    p.add_argument("--tflops", type=float, default=200.0, help="a GPU's training rate")
    p.add_argument("--out", help="an existing finished search to read instead of running one")
    p.add_argument("--wall", type=float, help="with --out: the wall it took, in seconds")
    a = p.parse_args()
    if a.out:
        out, wall = a.out, a.wall
    else:
        out = os.path.join(tempfile.mkdtemp(prefix="raygan-orchestration-"), a.strategy)
        wall = run_search(a.strategy, a.preset, out)
    df, cores = results.load(out), machine_cpus()
    s = shares(df, wall, cores)
    print(f"{a.strategy} {a.preset}: wall {wall:.0f} s on {cores} cores ({s['held']:.0f} core-s)")
    print(
        f"  training {s['training']:.1%}, scoring {s['scoring']:.1%}, "
        f"orchestration {s['orchestration']:.1%}"
    )
    o = overheads(df)
    print(f"  orchestration per shared round {o['round']:.1f} s, per trial {o['trial']:.1f} s")
    for name, estimated, measured in estimated_vs_measured(df, a.strategy, a.preset):
        print(
            f"  {name}: estimate {estimated / 1e12:.3f} TFLOP trained, rows {measured / 1e12:.3f}"
            f" ({estimated / measured:.3f}x)"
        )
    g = paper_generation(a.tflops)
    work = g["train_s"] + g["eval_s"]
    # one round, then the trials a GPU each, one after another on one GPU: the worst case
    orchestration = o["round"] + g["trials"] * o["trial"]
    print(
        f"paper-size EAGAN stage-1 generation at {a.tflops:g} TFLOP/s: {work:.0f} s of "
        f"training and scoring, {orchestration:.0f} s of orchestration at the overheads above "
        f"(one GPU, trials in turn): {orchestration / (work + orchestration):.1%} of it"
    )


if __name__ == "__main__":
    main()
