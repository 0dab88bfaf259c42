"""``raygan search ... --estimate``: what a search will cost, before anything starts.

The pipeline:

    spec -> the method's stages (``estimate(spec)`` of its strategy module): G steps of each
            network kind it trains, and samples it scores
         -> FLOPs: each kind's step counted once (:func:`raygan.cost.pair_step_flops`),
            averaged over a few of the genotypes the search starts from
         -> device-hours at ``--tflops X``, or at the rate a 20-second probe trains here

Training FLOPs are the one trainer's steps (forward and backward, matmuls and convolutions);
evaluation FLOPs are the generator's forwards plus the feature extractor's. Neither Ray nor
any data is touched.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from raygan import cost, nn, spaces
from raygan.train import GANTrainer, TrainConfig

SAMPLED = 4
"""Genotypes drawn per searched space to average a step's FLOPs over."""

INCEPTION_FLOPS = 11.43e9
"""FLOPs of one Inception-v3 forward at 299 px (torchvision's network under the FLOP counter:
5.7 G multiply-adds); torch-fidelity's ``inception-v3-compat`` is the same network."""

PROBE_SECONDS = 20.0

RECALIBRATION_SAMPLES = 20 * 64
"""Generator forwards that re-estimate an inherited path's BatchNorm statistics
(:func:`raygan.nn.recalibrate_batch_norm`'s defaults)."""


@dataclass(frozen=True)
class Pair:
    """What one training step runs: G and D genotypes at their widths, and the budget."""

    g: spaces.Genotype
    d: spaces.Genotype
    gf: int
    df: int
    bottom_width: int
    cfg: TrainConfig
    n_cells: int | None = None
    d_blocks: int | None = None

    def build(self) -> tuple[torch.nn.Module, torch.nn.Module]:
        options = {} if self.n_cells is None else {"n_cells": self.n_cells}
        generator = nn.build_generator(
            self.g, width=self.gf, bottom_width=self.bottom_width, **options
        )
        size = nn.generator_resolution(self.g.space, self.bottom_width)
        return generator, nn.build_discriminator(self.d, width=self.df, resolution=size)

    def d_options(self) -> dict:
        """What every D forward takes (AutoGAN-D's blocks of an MLAS stage)."""
        return {} if self.d_blocks is None else {"n_blocks": self.d_blocks}


@dataclass(frozen=True)
class Stage:
    """One stage of a search: the FLOPs it trains and spends scoring, and a pair it trains
    (what a probe measures the rate on)."""

    name: str
    train_flops: float
    eval_flops: float
    pair: Pair


def step_flops(pair: Pair) -> float:
    """FLOPs of one G step of training (``n_critic`` D steps and the G step)."""
    d, g = cost.pair_step_flops(pair.build, pair.cfg, d_options=pair.d_options())
    return pair.cfg.n_critic * d + g


def sampled(space: str, seed: int, count: int = SAMPLED) -> list[spaces.Genotype]:
    """Genotypes drawn from ``space`` (what a search's first population looks like)."""
    rng = np.random.default_rng(seed)
    return [spaces.get(space).sample(rng) for _ in range(count)]


def mean_flops(pairs: list[Pair], flops: Callable[[Pair], float] = step_flops) -> float:
    return float(np.mean([flops(p) for p in pairs]))


def sample_flops(pair: Pair, extractor: str) -> float:
    """FLOPs of scoring one sample: a G forward and the extractor's forward."""
    return forward_flops(pair.build()[0]) + extractor_flops(extractor)


def forward_flops(generator: torch.nn.Module) -> float:
    """FLOPs of one sample through ``generator``."""
    with torch.no_grad():
        _, flops = cost.counted(lambda: generator(torch.zeros(2, generator.latent_dim)))
    return flops / 2


def mixed_flops(spec: Any) -> tuple[float, float]:
    """FLOPs of an AdversarialNAS D iteration at ``spec.batch`` (averaged over ``n_critic``
    of them, the last with the G steps), and of one sample through the EMA mixture. Each kind
    of iteration runs once on the CPU at batches of 2 and 4, extended to the spec's (FLOPs
    are affine in it)."""
    from raygan import nn as raygan_nn
    from raygan import supernet

    work = supernet.MixedRound(spec, torch.device("cpu"), 1, 0, 1, wrap=lambda m: m)
    trainer, architect, n = work.trainer, work.architect, spec.n_critic
    counts = []
    for batch in (2, 4):
        trainer.cfg = dataclasses.replace(trainer.cfg, g_batch=batch)
        real = torch.zeros(batch, 3, spec.resolution, spec.resolution)
        architect.iterations = 0  # a D iteration alone, unless n_critic is 1
        alone = cost.counted(functools.partial(architect.iteration, real))[1]
        architect.iterations = n - 1  # the iteration with the G steps
        with_g = cost.counted(functools.partial(architect.iteration, real))[1]
        counts.append(((n - 1) * alone + with_g) / n)
    per_iteration = counts[0] + (counts[1] - counts[0]) * (spec.batch - 2) / 2
    mixture = raygan_nn.MixedGenerator(trainer.G_ema, architect.alpha_g.probabilities())
    return per_iteration, forward_flops(mixture)


def extractor_flops(extractor: str) -> float:
    """FLOPs of one image through the feature extractor (raygan's own is counted here)."""
    from raygan import metrics

    if extractor == metrics.INCEPTION:
        return INCEPTION_FLOPS
    net = metrics.ShapesNet().eval()
    with torch.no_grad():
        _, flops = cost.counted(lambda: net(torch.zeros(1, 3, net.INPUT_SIZE, net.INPUT_SIZE)))
    return flops


def extractor_for(spec) -> str:
    """The extractor a search would resolve: as given, else Inception unless it has no weights
    (then raygan's own, as ``auto`` does)."""
    from raygan import metrics

    if spec.extractor != metrics.AUTO:
        return spec.extractor
    return metrics.resolve_extractor(inception_weights=spec.inception_weights).name


def probe(pair: Pair, seconds: float = PROBE_SECONDS) -> tuple[float, str]:
    """The FLOP/s this machine's device trains ``pair`` at (for about ``seconds``), and the
    device's name."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    trainer = GANTrainer(*pair.build(), pair.cfg, device)
    trainer.d_options = pair.d_options()
    real = NoiseImages(nn.generator_resolution(pair.g.space, pair.bottom_width), device)
    trainer.weight_steps(real)  # warm-up: allocation, kernel choice
    _, flops = cost.counted(lambda: trainer.weight_steps(real))
    steps, start = 0, time.perf_counter()
    while (steps == 0 or time.perf_counter() - start < seconds) and steps < 10_000:
        trainer.weight_steps(real)
        steps += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return flops * steps / (time.perf_counter() - start), cost.device_name(device)


class NoiseImages:
    """Real batches of random pixels on the device (a probe measures speed, not learning)."""

    def __init__(self, resolution: int, device: torch.device) -> None:
        self.resolution, self.device = resolution, device

    def sample(self, n: int) -> torch.Tensor:
        return torch.rand(n, 3, self.resolution, self.resolution, device=self.device) * 2 - 1


def render(stages: list[Stage], rate: float | None, rate_from: str) -> str:
    """The estimate as text: FLOPs by stage, training and scoring, and device-hours at
    ``rate`` FLOP/s (None: FLOPs only)."""

    def line(name: str, train: float, evaluate: float) -> str:
        hours = "" if rate is None else f"{(train + evaluate) / rate / 3600:>13.4g}"
        return f"{name:<24} {train / 1e15:>12.4g} {evaluate / 1e15:>11.4g} {hours}".rstrip()

    head = f"{'stage':<24} {'train PFLOP':>12} {'eval PFLOP':>11}"
    lines = [head + ("" if rate is None else f" {'device-hours':>13}")]
    lines += [line(s.name, s.train_flops, s.eval_flops) for s in stages]
    train, evaluate = sum(s.train_flops for s in stages), sum(s.eval_flops for s in stages)
    lines.append(line("total", train, evaluate))
    at = "" if rate is None else f"at {rate / 1e12:.4g} TFLOP/s: "
    lines.append(f"{at}{rate_from} (set-up, data loading and orchestration not included)")
    return "\n".join(lines)
