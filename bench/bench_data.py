"""Is data ever the bottleneck? A tiny GAN's training throughput fed by DeviceBatches vs fed
by pre-made tensors.

Run from the repository root:

    python bench/bench_data.py [--device cpu] [--batch 64] [--steps 20] [--rounds 5]

Each step is what ``raygan.train`` does per iteration: a hinge D step on a real batch and a
fake batch, then a G step. The real batch comes either from ``DeviceBatches.sample`` over the
``shapes`` dataset (uint8 on the device, converted per batch) or from a list of float
tensors made before timing (no data cost at all). The two feeds alternate for ``--rounds``
rounds so that load on a shared machine hits both alike; the median round counts. Target:
DeviceBatches reaches at least 0.95 of the pre-made throughput. Throughput is given by wall
clock and by the process's CPU time: on a busy shared CPU machine the wall clock mostly
measures the neighbours, and CPU time (one thread by default) measures the work; on a GPU
only the wall clock means anything.
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from raygan import data


class TinyG(nn.Module):
    """64-d noise -> 32 px image in three upsampling convs (about 4M multiply-adds)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 4 * 4 * 64)
        self.body = nn.Sequential(
            nn.Upsample(scale_factor=2),
            nn.Conv2d(64, 32, 3, 1, 1),
            nn.ReLU(),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(32, 32, 3, 1, 1),
            nn.ReLU(),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(32, 3, 3, 1, 1),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.fc(z).view(-1, 64, 4, 4))


class TinyD(nn.Module):
    """32 px image -> score in three strided convs (about 2M multiply-adds)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, 2, 1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def make_step(device: torch.device, batch: int) -> Callable[[torch.Tensor], None]:
    torch.manual_seed(0)
    g, d = TinyG().to(device), TinyD().to(device)
    opt_g = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.0, 0.9))

    def step(real: torch.Tensor) -> None:
        z = torch.randn(batch, 64, device=device)
        loss_d = F.relu(1 - d(real)).mean() + F.relu(1 + d(g(z).detach())).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = -d(g(z)).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

    return step


def images_per_second(
    step: Callable[[torch.Tensor], None],
    feed: Callable[[], torch.Tensor],
    steps: int,
    batch: int,
    device: torch.device,
) -> tuple[float, float]:
    """Throughput by wall clock and by this process's CPU time."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step(feed())
    sync()
    images = steps * batch
    return images / (time.perf_counter() - wall), images / (time.process_time() - cpu)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=20_000, help="shapes images to sample from")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads on CPU")
    args = parser.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    print("$ " + shlex.join(["python", "bench/bench_data.py", *given]))
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    batches = data.DeviceBatches(data.load("shapes", max_images=args.images), device, seed=0)
    premade = [torch.rand(args.batch, 3, 32, 32, device=device) * 2 - 1 for _ in range(8)]
    cycle = itertools.cycle(premade)
    feeds = {
        "pre-made tensors": lambda: next(cycle),
        "DeviceBatches": lambda: batches.sample(args.batch),
    }

    step = make_step(device, args.batch)
    for feed in feeds.values():  # warm-up: allocator, kernels
        images_per_second(step, feed, 3, args.batch, device)
    rates: dict[str, list[tuple[float, float]]] = {name: [] for name in feeds}
    for _ in range(args.rounds):
        for name, feed in feeds.items():
            rates[name].append(images_per_second(step, feed, args.steps, args.batch, device))
    wall = {name: statistics.median(r[0] for r in rs) for name, rs in rates.items()}
    cpu = {name: statistics.median(r[1] for r in rs) for name, rs in rates.items()}

    start = time.process_time()
    for _ in range(200):
        batches.sample(args.batch)
    sample_us = (time.process_time() - start) / 200 * 1e6

    print(f"device {device}, batch {args.batch}, {args.rounds} rounds x {args.steps} steps")
    print(f"{'feed':<18} {'img/s (wall)':>13} {'img/s (CPU time)':>17}")
    for name in feeds:
        print(f"{name:<18} {wall[name]:13.0f} {cpu[name]:17.0f}")
    base, ours = "pre-made tensors", "DeviceBatches"
    print(
        f"ratio DeviceBatches / pre-made: {wall[ours] / wall[base]:.3f} (wall), "
        f"{cpu[ours] / cpu[base]:.3f} (CPU time); target >= 0.95"
    )
    share = sample_us * cpu[base] / (1e6 * args.batch)
    print(f"DeviceBatches.sample alone: {sample_us:.0f} us CPU per batch, {share:.2%} of a step")


if __name__ == "__main__":
    main()
