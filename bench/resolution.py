"""What 48, 64 and 128 px cost against 32 px: memory and train step time of published pairs.

For each published generator asked for (``--archs``, zoo names) and each resolution, the pair
is built as :func:`raygan.nn.generator_layout` says (three cells up to 64 px, four at 128)
with the zoo entry's discriminator at that resolution (one extra down block per doubling
above 32 px), and one train step (a D hinge step, then a G hinge step, Adam 2e-4 (0, 0.9),
``--batch`` images each) is timed and its memory measured:

- on the CPU, the growth of the peak resident set from the built pair to the end of the
  steps (``ru_maxrss``: weights are in both, so the growth is activations, gradients and
  Adam's state);
- on CUDA, ``torch.cuda.max_memory_allocated`` over the steps (weights included).

Each pair runs in a fresh process (a process's peak RSS only grows, so a pair measured after
a larger one would show none of its own), and every figure is printed with its ratio to the
arch's 32 px one from the same run. The published genotypes have three cells; at 128 px the
fourth cell repeats the third (for AutoGAN with the same skip mask, which names the same
relative sources: 3 is the two cells before).

    python bench/resolution.py [--width-scale 0.25] [--batch 16] [--steps 5] [--device auto]

Step times are the median wall clock of ``--steps`` steps after ``--warmup``, and this
process's CPU time per step (all threads): on a shared machine the wall clock measures the
neighbours too, the CPU time much less so.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import shlex
import statistics
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from raygan import nn, spaces, zoo
from raygan.spaces import Genotype


@dataclass(frozen=True)
class Case:
    """One pair to measure."""

    arch: str
    resolution: int
    width_scale: float
    batch: int
    steps: int
    warmup: int
    device: str
    threads: int


@dataclass(frozen=True)
class Figures:
    """What one case measured."""

    g_space: str
    bottom_width: int
    g_params: int
    d_params: int
    step_s: float
    cpu_s: float
    memory_mib: float


def with_cells(g: Genotype, space: str) -> Genotype:
    """``g`` in ``space``, its last cell repeated until it has the space's cells."""
    cells = list(g.cells)
    cells += [cells[-1]] * (len(spaces.get(space).cells) - len(cells))
    return spaces.get(space).genotype(cells)


def build_pair(case: Case) -> tuple[torch.nn.Module, torch.nn.Module, str, int]:
    """(G, D, G's space, bottom width) of the zoo entry at the case's resolution."""
    entry = zoo.get(case.arch)
    space, bottom_width = nn.generator_layout(entry.g.space, case.resolution)
    g = nn.build_generator(
        with_cells(entry.g, space),
        width=zoo.scaled(entry.gf, case.width_scale),
        bottom_width=bottom_width,
        **entry.generator_options(),
    )
    d = nn.build_discriminator(
        entry.d, width=zoo.scaled(entry.df, case.width_scale), resolution=case.resolution
    )
    return g, d, space, bottom_width


def hinge_step(
    g: torch.nn.Module,
    d: torch.nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    real: torch.Tensor,
) -> None:
    """One D step and one G step of the papers' hinge loss."""
    z = torch.randn(len(real), g.latent_dim, device=real.device)
    loss_d = F.relu(1 - d(real)).mean() + F.relu(1 + d(g(z).detach())).mean()
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    loss_g = -d(g(torch.randn_like(z))).mean()
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(case: Case) -> Figures:
    """Build the case's pair, run its steps, return the figures (in this process)."""
    torch.set_num_threads(case.threads)
    torch.manual_seed(0)
    device = torch.device(case.device)
    g, d, space, bottom_width = build_pair(case)
    g, d = g.to(device).train(), d.to(device).train()
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.0, 0.9))
    real = torch.rand(case.batch, 3, case.resolution, case.resolution, device=device) * 2 - 1
    rss_before = peak_rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(case.warmup):
        hinge_step(g, d, opt_g, opt_d, real)
    sync(device)
    walls, cpu = [], time.process_time()
    for _ in range(case.steps):
        start = time.perf_counter()
        hinge_step(g, d, opt_g, opt_d, real)
        sync(device)
        walls.append(time.perf_counter() - start)
    cpu_s = (time.process_time() - cpu) / case.steps
    if device.type == "cuda":
        memory = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        memory = peak_rss_mib() - rss_before
    return Figures(
        space,
        bottom_width,
        nn.count_params(g),
        nn.count_params(d),
        statistics.median(walls),
        cpu_s,
        memory,
    )


def measure_apart(case: Case) -> Figures:
    """:func:`measure` in a fresh process, so that its peak memory is its own."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(measure, (case,))


def ratio(value: float, base: float | None) -> str:
    """``value / base`` for the table, ``-`` without a 32 px figure to divide by."""
    return f"{value / base:6.2f}" if base else f"{'-':>6}"


def report(device: str, rows: list[tuple[Case, Figures]]) -> None:
    memory = "peak alloc MiB" if device.startswith("cuda") else "RSS growth MiB"
    print(
        f"{'arch':<18} {'px':>4} {'G layout':<16} {'G params':>10} {'D params':>9} "
        f"{'wall ms':>8} {'x32':>6} {'CPU ms':>8} {'x32':>6} {memory:>15} {'x32':>6}"
    )
    base = {c.arch: f for c, f in rows if c.resolution == 32}
    for case, f in rows:
        b = base.get(case.arch)
        layout = f"{f.g_space} bw{f.bottom_width}"
        print(
            f"{case.arch:<18} {case.resolution:>4} {layout:<16} {f.g_params:>10,} "
            f"{f.d_params:>9,} {f.step_s * 1e3:>8.1f} {ratio(f.step_s, b and b.step_s)} "
            f"{f.cpu_s * 1e3:>8.1f} {ratio(f.cpu_s, b and b.cpu_s)} "
            f"{f.memory_mib:>15.1f} {ratio(f.memory_mib, b and b.memory_mib)}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="eagan_cifar10,autogan_cifar10_a", help="zoo names")
    parser.add_argument("--resolutions", default="32,48,64,128")
    parser.add_argument("--width-scale", type=float, default=0.25, help="x published gf/df")
    parser.add_argument("--batch", type=int, default=16, help="real and fake images per step")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per pair")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--device", default="auto", help="cpu, cuda, or auto (cuda if any)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    print("$ " + shlex.join(["python", "bench/resolution.py", *given]))
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolutions = [int(r) for r in args.resolutions.split(",")]
    for r in resolutions:
        try:
            nn.discriminator_downsamples(r)
        except ValueError as err:  # a size no layout reaches stops here, before any process
            parser.error(str(err))
    cases = [
        Case(arch, r, args.width_scale, args.batch, args.steps, args.warmup, device, args.threads)
        for arch in args.archs.split(",")
        for r in resolutions
    ]
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"
    print(
        f"{name}, {args.threads} threads; width scale {args.width_scale}, batch {args.batch}, "
        f"{args.steps} timed steps after {args.warmup}"
    )
    report(device, [(case, measure_apart(case)) for case in cases])


if __name__ == "__main__":
    main()
