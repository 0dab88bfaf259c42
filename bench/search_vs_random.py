"""A search against its random baseline at equal budget, over seeds: the final hypervolume
difference with a bootstrap 95% interval.

Runs ``raygan search SEARCH`` and ``raygan search BASELINE`` (the same preset) for each seed,
each as a user's process of its own, then scores every table as ``raygan compare`` does: one
IS/FID normalisation over all of them, the hypervolume of each search's front at its end, and
the mean difference (search minus baseline) with a bootstrap interval over the seeds. A tie at
toy scale is a finding, not a failure: do not tune presets to make it come out.

    python bench/search_vs_random.py [--seeds 5] [--preset quick] [--out DIR]
    python bench/search_vs_random.py --search autogan --baseline random ...  # where it fits
    python bench/search_vs_random.py --out DIR --only-compare   # tables already there
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

from raygan import compare


def run(strategy: str, seed: int, preset: str, out: str, extra: list[str]) -> float:
    """One search, to its end; its wall seconds."""
    began = time.perf_counter()
    cmd = [sys.executable, "-m", "raygan.cli", "search", strategy, "--preset", preset]
    cmd += ["--seed", str(seed), "--out", out, *extra]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def final_hypervolumes(paths: list[str]) -> dict[str, float]:
    """Each search's hypervolume at its end, under one normalisation for all."""
    searches = compare.load(paths)
    lo, span = compare.normalisation(searches)
    return {s.name: float(compare.curve(s, lo, span)["hypervolume"].iloc[-1]) for s in searches}


def bootstrap(differences: np.ndarray, draws: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """The 95% percentile interval of the mean difference, resampling seeds."""
    rng = np.random.default_rng(seed)
    means = rng.choice(differences, (draws, len(differences))).mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--search", default="eagan")
    p.add_argument("--baseline", default="random")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--preset", default="quick")
    p.add_argument("--out", default="trials/search-vs-random")
    p.add_argument("--only-compare", action="store_true", help="read the tables already there")
    p.add_argument("extra", nargs="*", help="options given to both searches (after --)")
    a = p.parse_args()
    paths = {}
    for seed in range(a.seeds):
        for strategy in (a.search, a.baseline):
            out = os.path.join(a.out, f"{strategy}-{seed}")
            paths[strategy, seed] = out
            if not a.only_compare:
                wall = run(strategy, seed, a.preset, out, a.extra)
                print(f"{strategy} seed {seed}: {wall / 60:.1f} min", flush=True)
    hv = final_hypervolumes(list(paths.values()))
    diff = np.array([hv[paths[a.search, s]] - hv[paths[a.baseline, s]] for s in range(a.seeds)])
    for s in range(a.seeds):
        print(f"seed {s}: {a.search} {hv[paths[a.search, s]]:.4f}, "
              f"{a.baseline} {hv[paths[a.baseline, s]]:.4f}")  # fmt: skip
    low, high = bootstrap(diff)
    print(f"final hypervolume, {a.search} - {a.baseline}: mean {diff.mean():+.4f} over "
          f"{a.seeds} seeds, bootstrap 95% interval [{low:+.4f}, {high:+.4f}]")  # fmt: skip


if __name__ == "__main__":
    main()
