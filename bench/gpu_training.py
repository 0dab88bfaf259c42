"""Training throughput of the one trainer, as a share of the device's peak.

For a pair at a preset's size (EAGAN's published G against AutoGAN-D, n_critic 5), in one run:
TFLOP/s of fp32, bf16 autocast, + channels_last, + ``torch.compile`` (default mode), +
``reduce-overhead`` (CUDA graphs of the compiled forwards), + ``cuda_graphs`` (the whole eager
step as one CUDA graph: pairs only), each as a ratio of fp32 and as a share of ``--peak``; the
same for a supernet round's steps (one drawn path per step: no whole-step graph); and a
``torch.profiler`` summary of one step of the fastest variant (top kernels by device time, and
the device's idle share of the step: launch gaps and host waits). FLOPs per step come from
:func:`raygan.cost.pair_step_flops`, the rate from the wall of ``--steps`` timed steps after
warm-up (the device synchronised at both ends only).

    python bench/gpu_training.py [--size paper] [--steps 30] [--peak 790]

On a machine without a GPU it runs on the CPU (use ``--size quick``), which checks the script.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from raygan import cost, nn, spaces, zoo
from raygan.estimate import NoiseImages
from raygan.train import GANTrainer, TrainConfig, init_weights

SIZES = {
    "quick": {"gf": 16, "df": 16, "g_batch": 32, "d_batch": 16},
    "paper": {"gf": 256, "df": 128, "g_batch": 128, "d_batch": 64},
}
VARIANTS = {
    "fp32": {},
    "bf16": {"amp_bf16": True},
    "bf16+cl": {"amp_bf16": True, "channels_last": True},
    "bf16+cl+compile": {"amp_bf16": True, "channels_last": True, "compile": "default"},
    "bf16+cl+compile-ro": {"amp_bf16": True, "channels_last": True, "compile": "reduce-overhead"},
    "bf16+cl+graphs": {"amp_bf16": True, "channels_last": True, "cuda_graphs": True},
}
D = spaces.Genotype.parse("autogan_d:")


def pair(size: dict, supernet: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    if supernet:
        g = nn.build_supernet("nas_cell_g", width=size["gf"])
    else:
        g = nn.build_generator(zoo.EAGAN_G, width=size["gf"])
    d = nn.build_discriminator(D, width=size["df"])
    init_weights(g)
    init_weights(d)
    return g, d


def rate(size: dict, variant: dict, steps: int, device: torch.device, supernet: bool) -> dict:
    """TFLOP/s of ``steps`` timed steps (after 3 of warm-up)."""
    cfg = TrainConfig(n_critic=5, g_batch=size["g_batch"], d_batch=size["d_batch"], **variant)
    trainer = GANTrainer(*pair(size, supernet), cfg, device)
    real = NoiseImages(32, device)
    rng = np.random.default_rng(0)
    paths = [spaces.get("nas_cell_g").sample(rng) for _ in range(8)] if supernet else [None]
    flops = np.mean([step_flops(size, cfg, p, supernet) for p in paths])
    for i in range(3):
        trainer.weight_steps(real, paths[i % len(paths)])
    sync(device)
    start = time.perf_counter()
    for i in range(steps):
        trainer.weight_steps(real, paths[i % len(paths)])
    sync(device)
    wall = time.perf_counter() - start
    return {"tflops": flops * steps / wall / 1e12, "step_s": wall / steps, "trainer": trainer}


def step_flops(size: dict, cfg: TrainConfig, path, supernet: bool) -> float:
    plain = dataclasses.replace(cfg, compile="none", cuda_graphs=False)
    d, g = cost.pair_step_flops(lambda: pair(size, supernet), plain, path)
    return cfg.n_critic * d + g


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def profile(trainer: GANTrainer, device: torch.device) -> str:
    """Top kernels by device time over one step, and how much of the step the device idled."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    real = NoiseImages(32, device)
    with torch_profile(activities=activities) as prof:
        start = time.perf_counter()
        trainer.weight_steps(real)
        sync(device)
        wall = time.perf_counter() - start
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=12)
    events = [e for e in prof.events() if e.device_type.name == "CUDA"]
    busy = sum(e.device_time for e in events) / 1e6 if events else float("nan")
    return f"{table}\nstep wall {wall * 1e3:.1f} ms, device busy {busy * 1e3:.1f} ms " + (
        f"({1 - busy / wall:.0%} idle: launch gaps and host waits)" if events else "(no GPU)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=SIZES, default="paper")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--peak", type=float, default=790.0, help="the device's bf16 TFLOP/s")
    p.add_argument("--variants", default=",".join(VARIANTS))
    a = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    size = SIZES[a.size]
    print(f"{a.size}-size pair on {cost.device_name(device)}, {a.steps} steps per variant")
    print(
        f"{'what':<24} {'variant':<18} {'ms/step':>8} {'TFLOP/s':>8} {'x fp32':>7} {'of peak':>8}"
    )
    best = None
    for supernet in (False, True):
        base = None
        for name in a.variants.split(","):
            if VARIANTS[name].get("cuda_graphs") and (supernet or device.type != "cuda"):
                continue  # a CUDA device only; a round's path changes every step
            r = rate(size, VARIANTS[name], a.steps, device, supernet)
            base = base or r["tflops"]
            what = "supernet round (paths)" if supernet else "fixed pair (trial)"
            print(
                f"{what:<24} {name:<18} {r['step_s'] * 1e3:>8.1f} {r['tflops']:>8.3f} "
                f"{r['tflops'] / base:>7.2f} {r['tflops'] / a.peak:>8.2%}"
            )
            if not supernet and (best is None or r["tflops"] > best[1]):
                best = (name, r["tflops"], r["trainer"])
    print(f"\nprofile of one step of the fixed pair, {best[0]}:")
    print(profile(best[2], device))


if __name__ == "__main__":
    main()
