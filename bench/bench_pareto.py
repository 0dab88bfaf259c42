"""How fast is raygan.pareto? Non-dominated sorting against the textbook pairwise loop.

Run from the repository root:

    python bench/bench_pareto.py [--points 10000] [--objectives 3] [--naive-points 1000]

Times ``non_dominated_sort`` on uniform random points (best of ``--repeat``), the O(M N^2)
pure-Python fast-non-dominated-sort of Deb et al. on a subset (checking that both agree), the
ratio on that subset, and the naive time extrapolated (x N^2) to the full size. Also times
``ranks_and_crowding`` and a 3-objective ``hypervolume`` for scale.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable

import numpy as np

from raygan.pareto import hypervolume, non_dominated_sort, ranks_and_crowding


def naive_sort(F: list[list[float]]) -> list[list[int]]:
    """Deb et al.'s fast non-dominated sort, pairwise in Python: the baseline."""
    n = len(F)
    dominated: list[list[int]] = [[] for _ in range(n)]
    count = [0] * n
    for i in range(n):
        for j in range(i + 1, n):
            a, b = F[i], F[j]
            a_le = all(x <= y for x, y in zip(a, b, strict=True))
            b_le = all(y <= x for x, y in zip(a, b, strict=True))
            if a_le and not b_le:
                dominated[i].append(j)
                count[j] += 1
            elif b_le and not a_le:
                dominated[j].append(i)
                count[i] += 1
    fronts, current = [], [i for i in range(n) if count[i] == 0]
    while current:
        fronts.append(sorted(current))
        following = []
        for i in current:
            for j in dominated[i]:
                count[j] -= 1
                if count[j] == 0:
                    following.append(j)
        current = following
    return fronts


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--objectives", type=int, default=3)
    parser.add_argument("--naive-points", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    print("$ " + shlex.join(["python", "bench/bench_pareto.py", *given]))

    rng = np.random.default_rng(args.seed)
    F = rng.random((args.points, args.objectives))
    n, m = F.shape
    fronts = non_dominated_sort(F)
    t_sort = best_of(args.repeat, lambda: non_dominated_sort(F))
    t_crowd = best_of(args.repeat, lambda: ranks_and_crowding(F))
    print(f"non_dominated_sort   {n} x {m}: {t_sort * 1e3:8.1f} ms ({len(fronts)} fronts)")
    print(f"ranks_and_crowding   {n} x {m}: {t_crowd * 1e3:8.1f} ms")

    sub = F[: args.naive_points]
    t_vec = best_of(args.repeat, lambda: non_dominated_sort(sub))
    start = time.perf_counter()
    expected = naive_sort(sub.tolist())
    t_naive = time.perf_counter() - start
    agree = [f.tolist() for f in non_dominated_sort(sub)] == expected
    k = len(sub)
    print(
        f"naive Python loop    {k} x {m}: {t_naive * 1e3:8.1f} ms vs {t_vec * 1e3:.1f} ms "
        f"vectorised: x{t_naive / t_vec:.0f} (fronts agree: {agree})"
    )
    estimate = t_naive * (n / k) ** 2
    print(f"naive, extrapolated {n} x {m}: {estimate:8.1f} s  -> x{estimate / t_sort:.0f}")

    front = F[fronts[0]]
    if m in (2, 3):
        t_hv = best_of(args.repeat, lambda: hypervolume(front, np.ones(m)))
        print(f"hypervolume of front 0 ({len(front)} points): {t_hv * 1e3:8.1f} ms")
    if not agree:
        raise SystemExit("vectorised and naive fronts differ")


if __name__ == "__main__":
    main()
