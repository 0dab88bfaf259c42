"""Shared-weights training rounds as Ray Train jobs (EAGAN stage 1, AutoGAN's shared GAN).

A round trains a generator *supernet* (all candidate ops of a space) against one fixed
discriminator. Every minibatch trains one architecture's path through the supernet, taken from
``paths``: drawn uniformly (EAGAN: the current population) or in order (AutoGAN: the
architectures the controller sampled for this round). The draw is seeded by the round, so every
data-parallel worker trains the same path on its own shard of the real batch, and DDP averages
the gradients (gloo on CPUs, NCCL on GPUs; ``find_unused_parameters`` because one path leaves
the other candidates without gradients).

The job reports and checkpoints through ``ray.train.report`` every ``checkpoint_every`` steps,
so a failed worker restarts from the last checkpoint (``FailureConfig``). The final checkpoint
holds ``state.pt`` with the unwrapped ``G`` (supernet) and ``D`` state dicts, and ``G_ema``, the
supernet's EMA kept across rounds (decay 0.999 with the usual warm-up, counted in ``ema_step``
generator steps since the supernet was built): a candidate trial inherits its path's weights
from it (:func:`raygan.nn.inherit`) and is scored with the EMA path, as METHODS.md has every
reported number come from an EMA generator. The BatchNorm running statistics in it are shared
by every path and left by the last steps' paths, so a candidate scored without training
recomputes its own (:func:`raygan.nn.recalibrate_batch_norm`).

AutoGAN's multi-level search trains the first ``n_cells`` cells at a smaller ``resolution``, and
its dynamic reset watches for collapse: with ``collapse_window`` set, the round ends early, with
``collapsed`` in its metrics, once the variance of the last ``collapse_window`` G or D losses
falls under ``collapse_var`` on any worker (the workers agree before stopping, so DDP never waits
on one that left). The window starts empty in every round and after a worker restart.
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch

from raygan import data, nn, spaces, storage
from raygan.train import d_hinge_loss, ema_decay_at, ema_update, g_hinge_loss, init_weights

STATE_FILE = "state.pt"


@dataclass
class RoundSpec:
    """One shared-weights training round; plain data so it travels to the Train workers."""

    g_space: str
    d: str  # the fixed discriminator's genotype string
    paths: list[str]  # generator genotype strings to train
    gf: int = 64
    df: int = 64
    bottom_width: int = 4
    steps: int = 100  # generator steps in this round (over all workers together)
    n_critic: int = 5
    g_batch: int = 64
    d_batch: int = 32
    g_lr: float = 2e-4
    d_lr: float = 2e-4
    betas: tuple[float, float] = (0.0, 0.9)
    order: str = "uniform"  # "uniform" draw from paths, or "sequential" (cycled)
    dataset: str = "shapes"
    data_root: str | None = None
    max_images: int = 10_000
    resolution: int | None = None  # default: 8 * bottom_width
    n_cells: int | None = None  # generator cells to run (AutoGAN MLAS); None: all
    collapse_window: int = 0  # 0: never stop early; else losses watched for collapse
    collapse_var: float = 1e-3
    seed: int = 0
    init: str | None = None  # state.pt of the previous round (weights and optimisers)
    checkpoint_every: int = 0  # 0: only at the end
    extra: dict[str, Any] = field(default_factory=dict)


def path_schedule(spec: RoundSpec) -> list[int]:
    """Which path each generator step trains: identical on every worker (seeded by the round)."""
    if spec.order == "sequential":
        return [i % len(spec.paths) for i in range(spec.steps)]
    rng = np.random.default_rng(spec.seed)
    return rng.integers(len(spec.paths), size=spec.steps).tolist()


def build_models(spec: RoundSpec) -> tuple[torch.nn.Module, torch.nn.Module]:
    generator = nn.build_supernet(spec.g_space, width=spec.gf, bottom_width=spec.bottom_width)
    discriminator = nn.build_discriminator(spaces.Genotype.parse(spec.d), width=spec.df)
    init_weights(generator)
    init_weights(discriminator)
    return generator, discriminator


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """The Train worker: same path each step on every worker, real batch sharded by rank."""
    import ray.train
    import ray.train.torch

    spec = RoundSpec(**config)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    torch.manual_seed(spec.seed)  # identical initial weights on every worker
    # on the device before the optimisers load their state, which then lands there too
    generator, discriminator = (m.to(device) for m in build_models(spec))
    opt_g = torch.optim.Adam(generator.parameters(), lr=spec.g_lr, betas=tuple(spec.betas))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=spec.d_lr, betas=tuple(spec.betas))
    start = 0
    checkpoint = ray.train.get_checkpoint()
    source = None
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            source = torch.load(os.path.join(d, STATE_FILE), map_location=device, weights_only=True)
        start = int(source["round_step"])
    elif spec.init:
        source = storage.load_torch(spec.init, map_location=device)
    if source is not None:
        generator.load_state_dict(source["G"])
        discriminator.load_state_dict(source["D"])
        opt_g.load_state_dict(source["opt_g"])
        opt_d.load_state_dict(source["opt_d"])
    generator_ema = copy.deepcopy(generator).requires_grad_(False)  # on the device already
    if source is not None and "G_ema" in source:
        generator_ema.load_state_dict(source["G_ema"])
    ema_step = int(source.get("ema_step", 0)) if source is not None else 0
    generator = ray.train.torch.prepare_model(
        generator, parallel_strategy_kwargs={"find_unused_parameters": True}
    )
    discriminator = ray.train.torch.prepare_model(discriminator)

    resolution = spec.resolution or 8 * spec.bottom_width
    images = data.load(
        spec.dataset,
        root=spec.data_root,
        resolution=resolution,
        max_images=spec.max_images,
        seed=spec.seed,
    )
    batches = data.DeviceBatches(images[rank::world], device, seed=spec.seed * 1000 + rank + start)
    noise = torch.Generator(device=device).manual_seed(spec.seed * 1000 + rank + start)
    g_batch, d_batch = max(1, spec.g_batch // world), max(1, spec.d_batch // world)
    paths = [spaces.Genotype.parse(p) for p in spec.paths]
    schedule = path_schedule(spec)
    latent = _unwrap(generator).latent_dim
    every = spec.checkpoint_every or spec.steps
    forward = {} if spec.n_cells is None else {"n_cells": spec.n_cells}
    losses = {"g": deque(maxlen=spec.collapse_window), "d": deque(maxlen=spec.collapse_window)}

    def z(n: int) -> torch.Tensor:
        return torch.randn(n, latent, device=device, generator=noise)

    for step in range(start, spec.steps):
        path = paths[schedule[step]]
        for _ in range(spec.n_critic):
            with torch.no_grad():
                fake = generator(z(d_batch), path, **forward)
            d_loss = d_hinge_loss(discriminator(batches.sample(d_batch)), discriminator(fake))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        g_loss = g_hinge_loss(discriminator(generator(z(g_batch), path, **forward)))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        ema_step += 1
        ema_update(generator_ema, _unwrap(generator), ema_decay_at(ema_step))
        done = step + 1
        collapsed, variances = _collapse_check(losses, g_loss, d_loss, spec, world, device)
        if done % every == 0 or done == spec.steps or collapsed:
            metrics = {
                "round_step": done,
                "g_loss": float(g_loss),
                "d_loss": float(d_loss),
                "collapsed": collapsed,
                **variances,
            }
            with tempfile.TemporaryDirectory() as tmp:
                ckpt = None
                if rank == 0:
                    torch.save(
                        {
                            "G": _unwrap(generator).state_dict(),
                            "G_ema": generator_ema.state_dict(),
                            "ema_step": ema_step,
                            "D": _unwrap(discriminator).state_dict(),
                            "opt_g": opt_g.state_dict(),
                            "opt_d": opt_d.state_dict(),
                            "round_step": done,
                        },
                        os.path.join(tmp, STATE_FILE),
                    )
                    ckpt = ray.train.Checkpoint.from_directory(tmp)
                ray.train.report(metrics, checkpoint=ckpt)
            if collapsed:
                break


def _collapse_check(
    losses: dict[str, deque],
    g_loss: torch.Tensor,
    d_loss: torch.Tensor,
    spec: RoundSpec,
    world: int,
    device: torch.device,
) -> tuple[bool, dict[str, float]]:
    """Record this step's losses; once a window is full, whether G or D looks collapsed on any
    worker (all workers get the same answer) and the windows' variances."""
    if not spec.collapse_window:
        return False, {}
    losses["g"].append(float(g_loss))
    losses["d"].append(float(d_loss))
    if len(losses["g"]) < spec.collapse_window:
        return False, {}
    variances = {f"{k}_loss_var": float(np.var(v)) for k, v in losses.items()}
    flag = torch.tensor(float(min(variances.values()) < spec.collapse_var), device=device)
    if world > 1:
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag), variances


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    return getattr(module, "module", module)


class RoundResult(NamedTuple):
    state: str  # the final checkpoint's state.pt
    metrics: dict[str, Any]  # the last report: round_step, losses, collapsed, loss variances


def train_round(
    spec: RoundSpec,
    *,
    name: str,
    storage_path: str,
    workers: int = 1,
    use_gpu: bool = False,
    cpus_per_worker: float = 1.0,
    max_failures: int = 2,
) -> RoundResult:
    """Run one round as a ``TorchTrainer`` job; its final ``state.pt`` and last metrics."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=asdict(spec),
        scaling_config=ScalingConfig(
            num_workers=workers, use_gpu=use_gpu, resources_per_worker={"CPU": cpus_per_worker}
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path,
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
        ),
    )
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    state = storage.join(storage.checkpoint_uri(result.checkpoint), STATE_FILE)
    return RoundResult(state, dict(result.metrics))


def run_round(spec: RoundSpec, **options: Any) -> str:
    """:func:`train_round` (same options) for callers that need only the final ``state.pt``."""
    return train_round(spec, **options).state
