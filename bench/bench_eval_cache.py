"""What does the reference cache save? A first evaluation (reference statistics computed) vs
later ones (read from the cache), in a fresh cache directory.

Run from the repository root:

    python bench/bench_eval_cache.py [--reference-images 10000] [--samples 1000]

The extractor (``raygan-shapes-v1`` by default) is prepared first and timed on its own line,
so that the first evaluation's extra cost is the reference alone: making the real images,
their features, and their statistics. Every later evaluation, in any trial, only reads the
cache. The generator is a small random-weight network: its quality does not matter here.
Times are wall clock and this process's CPU time (all threads): on a busy shared machine the
wall clock mostly measures the neighbours.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from collections.abc import Callable

import torch
from torch import nn

from raygan import metrics


class TinyG(nn.Module):
    latent_dim = 64
    resolution = 32

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(self.latent_dim, 4 * 4 * 64)
        self.body = nn.Sequential(
            nn.Upsample(scale_factor=8),
            nn.Conv2d(64, 3, 3, 1, 1),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.fc(z).view(-1, 64, 4, 4))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-images", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=1_000)
    parser.add_argument("--extractor", default=metrics.SHAPES_EXTRACTOR)
    parser.add_argument("--inception-weights", default=None)
    parser.add_argument("--repeat", type=int, default=2, help="cached evaluations to time")
    args = parser.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    print("$ " + shlex.join(["python", "bench/bench_eval_cache.py", *given]))
    torch.manual_seed(0)
    generator = TinyG()
    reference = metrics.Reference("shapes", 32, num_images=args.reference_images)

    def clocked(fn: Callable[[], object]) -> tuple[float, float, object]:
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        return time.perf_counter() - wall, time.process_time() - cpu, out

    with tempfile.TemporaryDirectory(prefix="raygan-cache-") as cache:
        *prepare, extractor = clocked(
            lambda: metrics.resolve_extractor(
                args.extractor, inception_weights=args.inception_weights, cache_dir=cache
            )
        )

        def evaluate() -> dict:
            return metrics.evaluate(
                generator,
                reference=reference,
                num_samples=args.samples,
                extractor=extractor.name,
                inception_weights=args.inception_weights,
                cache_dir=cache,
            )

        *first, scores = clocked(evaluate)
        later = [clocked(evaluate)[:2] for _ in range(args.repeat)]

    print(
        f"extractor {extractor.name}, reference {args.reference_images} shapes images at 32 px, "
        f"{args.samples} generated samples (IS {scores['is']:.2f}, FID {scores['fid']:.1f})"
    )
    print(f"{'step':<48} {'wall s':>7} {'CPU s':>7}")
    rows = [
        ("prepare extractor (one-off, not per reference)", prepare),
        ("first evaluation (reference computed)", first),
        *((f"cached evaluation {i}", t) for i, t in enumerate(later, 1)),
    ]
    for name, (wall, cpu) in rows:
        print(f"{name:<48} {wall:7.2f} {cpu:7.2f}")
    cached = [min(t[i] for t in later) for i in (0, 1)]
    print(
        f"first / cached: x{first[0] / cached[0]:.1f} (wall), x{first[1] / cached[1]:.1f} "
        f"(CPU time); the reference costs {first[0] - cached[0]:.1f} s once"
    )


if __name__ == "__main__":
    main()
