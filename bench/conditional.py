"""Each strategy's quick search, class-conditional and not, at the same budget.

Runs ``raygan search STRATEGY --preset PRESET`` and the same with ``--conditional`` (each a
user's process of its own, on ``shapes``: eight shape classes, and an extractor that tells
them apart), then reads each table as a user would and prints, per search, its wall time
and its pick's scores: the row with the lowest FID among its final candidates (EAGAN and
random: stage 2's last generation; AutoGAN: the last stage's end-of-stage candidates;
AdversarialNAS: the last epoch; tune: every trial). A conditional search also has its pick's
intra-FID and class accuracy; an unconditional one has no classes to score. One seed at toy
scale: differences inside the evaluation's noise are to be read as ties.

    python bench/conditional.py [--strategies eagan,autogan,adversarialnas,random,tune]
        [--preset quick] [--seed 0] [--variants plain,conditional] [--out DIR]
    python bench/conditional.py --out DIR --only-read   # tables already there
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable

import pandas as pd

from raygan import results

EXTRA = {"adversarialnas": ["--workers", "2"]}
"""Options a strategy's quick search is run with (as bench/RESULTS.md's timings)."""


def last_generation(df: pd.DataFrame) -> pd.DataFrame:
    staged = df[df["stage"] == df["stage"].max()]
    return staged[staged["generation"] == staged["generation"].max()]


def last_stage_candidates(df: pd.DataFrame) -> pd.DataFrame:
    selected = df[(df["stage"] == df["stage"].max()) & (results.extra(df)["phase"] == "select")]
    return selected


FINAL: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "eagan": last_generation,
    "random": last_generation,
    "autogan": last_stage_candidates,
    "adversarialnas": lambda df: df[df["generation"] == df["generation"].max()],
    "tune": lambda df: df,
}
"""Each strategy's final candidates, among which its pick is the lowest FID."""


def run(strategy: str, conditional: bool, a: argparse.Namespace, out: str) -> float:
    """One search, to its end; its wall seconds."""
    began = time.perf_counter()
    cmd = [sys.executable, "-m", "raygan.cli", "search", strategy, "--preset", a.preset]
    cmd += ["--seed", str(a.seed), "--out", out, *EXTRA.get(strategy, [])]
    cmd += ["--conditional"] if conditional else []
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def pick(strategy: str, out: str) -> pd.Series:
    df = results.load(out)
    trials = df[df["kind"].isin(["trial", "epoch"])]
    final = FINAL[strategy](trials)
    ok = final[final["status"] == "ok"]
    return ok.sort_values("fid", kind="stable").iloc[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--strategies", default="eagan,autogan,adversarialnas,random,tune")
    p.add_argument("--preset", default="quick")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="trials/conditional")
    p.add_argument("--variants", default="plain,conditional", help="which searches to run")
    p.add_argument("--only-read", action="store_true", help="read the tables already there")
    a = p.parse_args()
    lines = []
    for strategy in a.strategies.split(","):
        for variant in a.variants.split(","):
            conditional = variant == "conditional"
            out = os.path.join(a.out, f"{strategy}-{variant}")
            wall = None if a.only_read else run(strategy, conditional, a, out)
            best = pick(strategy, out)
            shown = f"{wall / 60:.1f} min" if wall is not None else "read"
            line = (
                f"{strategy:<15}{variant:<12}{shown:>9}  "
                f"{best['is']:6.3f} {best['fid']:8.2f} {best['intra_fid']:9.2f} "
                f"{best['class_accuracy']:6.3f}  {best['g_genotype']}"
            )
            lines.append(line)
            print(line, flush=True)
    print(f"\n{'strategy':<15}{'variant':<12}{'wall':>9}  {'IS':>6} {'FID':>8} "
          f"{'intra-FID':>9} {'acc':>6}  pick")  # fmt: skip
    print("\n".join(lines))


if __name__ == "__main__":
    main()
