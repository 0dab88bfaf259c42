"""THE Ray Train launcher: one shared-weights round as one data-parallel job.

A round trains a supernet for ``steps`` steps with the one trainer (:class:`raygan.train.
GANTrainer`) on every worker, DDP averaging the gradients (gloo on CPUs, NCCL on GPUs). Two
kinds of round, one registry (:data:`ROUNDS`):

- ``paths`` (:class:`RoundSpec`, EAGAN stage 1 and AutoGAN's shared GAN): a generator supernet
  against one fixed discriminator; every generator step trains one architecture's path, taken
  from ``paths`` uniformly (EAGAN: the population) or in order (AutoGAN: the controller's
  samples), the same on every worker (the draw is seeded by the round);
- ``mixed`` (:class:`MixedRoundSpec`, one AdversarialNAS epoch): both players are mixed-op
  supernets whose architecture logits take their own steps (:class:`raygan.train.Architect`);
  at the end rank 0 derives the genotypes and scores the EMA mixed generator.

Worker-side checkpoint/resume is one path for both: every ``checkpoint_every`` steps (and at
the end) rank 0 writes ``state.pt`` (the trainer's, and the architect's, state, plus every
worker's noise and data streams) and reports it; a restarted worker group continues from it
exactly from the last checkpoint Ray Train registered (``FailureConfig``; at least the one
before the last report). A new round starts from the previous round's ``state.pt``
(``init``): weights, optimisers and the EMA step count carry over; the random streams either
start afresh from the round's seed (``paths``: each round is seeded by its generation) or
continue (``mixed``: epoch after epoch, as one long run). A round whose loss is non-finite
fails (it is never saved as a checkpoint); one whose losses collapse (``collapse_window``)
ends early with ``collapsed`` in its metrics (AutoGAN's dynamic reset).
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch

from raygan import cost, data, nn, spaces, storage
from raygan.train import (
    ArchConfig,
    Architect,
    Collapsed,
    Diverged,
    GANTrainer,
    TrainConfig,
    init_weights,
)

STATE_FILE = "state.pt"


@dataclass
class RoundSpec:
    """One single-path round; plain data so it travels to the Train workers."""

    kind: ClassVar[str] = "paths"
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
    resolution: int | None = None  # of the images trained on; default: the whole G's
    n_cells: int | None = None  # generator cells to run (AutoGAN MLAS); None: all
    d_blocks: int | None = None  # AutoGAN-D blocks of an MLAS stage (of the first 3, + the last)
    num_classes: int | None = None  # class-conditional pair (raygan.nn.conditional); None: not
    collapse_window: int = 0  # 0: never stop early; else losses watched for collapse
    collapse_var: float = 1e-3
    amp_bf16: bool = False
    channels_last: bool = False
    compile: str = "none"  # torch.compile mode (raygan.train.TrainConfig)
    check_every: int = 1  # G steps between reading the losses back
    seed: int = 0
    init: str | None = None  # state.pt of the previous round (weights and optimisers)
    checkpoint_every: int = 0  # 0: only at the end
    extra: dict[str, Any] = field(default_factory=dict)

    continue_streams: ClassVar[bool] = False

    def stream_seed(self, rank: int) -> int:
        return self.seed * 1000 + rank

    def round_steps(self, images: int) -> int:
        return self.steps


@dataclass
class MixedRoundSpec:
    """One AdversarialNAS epoch: ``steps`` D iterations of both mixed-op supernets."""

    kind: ClassVar[str] = "mixed"
    g_space: str = "nas_cell_g"
    d_space: str = "adversarialnas_d"
    gf: int = 16
    df: int = 16
    bottom_width: int = 4
    batch: int = 32  # real images per D iteration, over all workers
    epochs: int = 3  # of the whole search (the Gumbel temperature's schedule)
    n_critic: int = 5
    w_lr: float = 2e-4
    w_betas: tuple[float, float] = (0.0, 0.9)
    arch: dict[str, Any] = field(default_factory=dict)  # raygan.train.ArchConfig fields
    ema_decay: float = 0.999
    dataset: str = "shapes"
    data_root: str | None = None
    max_images: int = 640
    num_classes: int | None = None  # class-conditional supernets; None: not
    amp_bf16: bool = False
    channels_last: bool = False
    compile: str = "none"
    check_every: int = 1
    seed: int = 0
    init: str | None = None
    checkpoint_every: int = 0
    eval_samples: int = 250
    extractor: str = "raygan-shapes-v1"  # resolved by the driver: every epoch scores alike
    inception_weights: str | None = None

    continue_streams: ClassVar[bool] = True

    @property
    def resolution(self) -> int:
        return nn.generator_resolution(self.g_space, self.bottom_width)

    def stream_seed(self, rank: int) -> int:
        return self.seed * 1_000_003 + rank

    def round_steps(self, images: int) -> int:
        """An epoch is one pass over the (capped) training images."""
        return max(1, images // self.batch)


def path_schedule(spec: RoundSpec) -> list[int]:
    """Which path each generator step trains: identical on every worker (seeded by the round)."""
    if spec.order == "sequential":
        return [i % len(spec.paths) for i in range(spec.steps)]
    rng = np.random.default_rng(spec.seed)
    return rng.integers(len(spec.paths), size=spec.steps).tolist()


def build_models(spec: RoundSpec) -> tuple[torch.nn.Module, torch.nn.Module]:
    classes = spec.num_classes
    generator = nn.build_supernet(
        spec.g_space, width=spec.gf, bottom_width=spec.bottom_width, num_classes=classes
    )
    discriminator = nn.build_discriminator(
        spaces.Genotype.parse(spec.d),
        width=spec.df,
        resolution=nn.generator_resolution(spec.g_space, spec.bottom_width),
        num_classes=classes,
    )
    init_weights(generator)
    init_weights(discriminator)
    return generator, discriminator


# ----- what a worker trains ---------------------------------------------------------------------
class PathRound:
    """A ``paths`` round on one worker: one path per generator step."""

    def __init__(
        self, spec: RoundSpec, device: torch.device, world: int, noise_seed: int, steps: int
    ) -> None:
        generator, discriminator = build_models(spec)
        cfg = TrainConfig(
            n_critic=spec.n_critic,
            g_batch=max(1, spec.g_batch // world),
            d_batch=max(1, spec.d_batch // world),
            g_lr=spec.g_lr,
            d_lr=spec.d_lr,
            betas=tuple(spec.betas),
            collapse_window=spec.collapse_window,
            collapse_variance=spec.collapse_var,
            amp_bf16=spec.amp_bf16,
            channels_last=spec.channels_last,
            compile=spec.compile,
            # where a collapse ends the round early (AutoGAN's dynamic reset), the step it ends
            # at shapes the weights: every step's losses are read then
            check_every=1 if spec.collapse_window else spec.check_every,
        )
        g_options = {} if spec.n_cells is None else {"n_cells": spec.n_cells}
        d_options = {} if spec.d_blocks is None else {"n_blocks": spec.d_blocks}
        self.trainer = GANTrainer(
            generator,
            discriminator,
            cfg,
            device,
            noise_seed=noise_seed,
            wrap=ddp_wrapper(single_path=True),
            g_options=g_options,
            d_options=d_options,
        )
        self.paths = [spaces.Genotype.parse(p) for p in spec.paths]
        self.schedule = path_schedule(spec)

    def step(self, batches: data.DeviceBatches, i: int) -> dict[str, Any]:
        path = self.schedule[i]
        step = functools.partial(self.trainer.train_step, batches, self.paths[path])
        return self.trainer.flops.run(path, step)

    def state_dict(self) -> dict[str, Any]:
        return self.trainer.state_dict()

    def load_state_dict(self, state: dict[str, Any], *, rng: bool) -> None:
        self.trainer.load_state_dict(state, rng=rng)

    def final(self) -> dict[str, Any]:
        return {}


class MixedRound:
    """A ``mixed`` round on one worker: :meth:`Architect.iteration` per step."""

    def __init__(
        self,
        spec: MixedRoundSpec,
        device: torch.device,
        world: int,
        noise_seed: int,
        steps: int,
        *,
        wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
    ) -> None:
        """``wrap``: how each module runs (default: DDP in a Train worker)."""
        self.spec = spec
        classes = spec.num_classes
        g = nn.build_supernet(
            spec.g_space, width=spec.gf, bottom_width=spec.bottom_width, num_classes=classes
        )
        d = nn.build_supernet(
            spec.d_space, width=spec.df, resolution=spec.resolution, num_classes=classes
        )
        init_weights(g)
        init_weights(d)
        alpha_g, alpha_d = nn.ArchLogits(g), nn.ArchLogits(d)
        self.batch = spec.batch // world  # this worker's share of the real batch
        cfg = TrainConfig(
            n_critic=spec.n_critic,
            g_batch=self.batch,
            g_lr=spec.w_lr,
            d_lr=spec.w_lr,
            betas=tuple(spec.w_betas),
            ema_decay=spec.ema_decay,
            collapse_window=0,
            d_joint_batch=True,
            amp_bf16=spec.amp_bf16,
            channels_last=spec.channels_last,
            compile=spec.compile,
            check_every=spec.check_every,
        )
        wrap = wrap or ddp_wrapper(single_path=False)
        self.trainer = GANTrainer(g, d, cfg, device, noise_seed=noise_seed, wrap=wrap)
        self.architect = Architect(
            self.trainer,
            alpha_g,
            alpha_d,
            ArchConfig(**spec.arch),
            total_iterations=spec.epochs * steps,
            wrap=wrap,
        )

    def step(self, batches: data.DeviceBatches, i: int) -> dict[str, Any]:
        with_g = (self.architect.iterations + 1) % self.trainer.cfg.n_critic == 0
        real = self.trainer.real(batches, self.batch)
        step = functools.partial(self.architect.iteration, *real)
        return self.trainer.flops.run(with_g, step)

    def state_dict(self) -> dict[str, Any]:
        return {**self.trainer.state_dict(), "architect": self.architect.state_dict()}

    def load_state_dict(self, state: dict[str, Any], *, rng: bool) -> None:
        self.trainer.load_state_dict(state, rng=rng)
        self.architect.load_state_dict(state["architect"])

    def digest(self) -> str:
        """A hash of every parameter (weights, logits, EMA G): equal on all DDP replicas."""
        h = hashlib.sha256()
        t, a = self.trainer, self.architect
        for module in (t.G, t.D, a.alpha_g, a.alpha_d, t.G_ema):
            for p in module.parameters():
                h.update(p.detach().cpu().numpy().tobytes())
        return h.hexdigest()[:16]

    def final(self) -> dict[str, Any]:
        """Rank 0's result: the derived genotypes, entropies, and IS/FID of the EMA mixture."""
        from raygan import metrics

        s, a = self.spec, self.architect
        probs_g, probs_d = a.alpha_g.probabilities(), a.alpha_d.probabilities()
        g, d = nn.derive(s.g_space, probs_g), nn.derive(s.d_space, probs_d)
        scores = metrics.evaluate(
            nn.MixedGenerator(self.trainer.G_ema, probs_g).eval(),
            reference=mixed_reference(s),
            num_samples=s.eval_samples,
            extractor=s.extractor,
            device=self.trainer.device,
            inception_weights=s.inception_weights,
            seed=s.seed,
            bf16=s.amp_bf16,
        )
        return {
            "g": str(g),
            "d": str(d),
            **scores,
            "g_entropy": nn.mean_entropy(probs_g),
            "d_entropy": nn.mean_entropy(probs_d),
            "g_params": nn.count_params(
                nn.build_generator(
                    g, width=s.gf, bottom_width=s.bottom_width, num_classes=s.num_classes
                )
            ),
            "d_params": nn.count_params(
                nn.build_discriminator(
                    d, width=s.df, resolution=s.resolution, num_classes=s.num_classes
                )
            ),
            "g_steps": self.trainer.step,
            "d_iterations": a.iterations,
            "tau": a.tau(),
            "replica_digest": self.digest(),
        }


def mixed_reference(spec: MixedRoundSpec) -> Any:
    """The real data the mixed generator is scored against: the training images themselves
    (same cap, same seed)."""
    from raygan import metrics

    return metrics.Reference(
        spec.dataset,
        spec.resolution,
        num_images=spec.max_images,
        root=spec.data_root,
        seed=spec.seed,
    )


ROUNDS: dict[str, tuple[type, type]] = {
    "paths": (RoundSpec, PathRound),
    "mixed": (MixedRoundSpec, MixedRound),
}
"""Round kinds: the spec that travels to the workers, and what a worker builds from it."""


# ----- the Train worker -------------------------------------------------------------------------
def train_loop_per_worker(config: dict[str, Any]) -> None:
    """The Train worker: build, continue from a checkpoint or the previous round, train, report."""
    import ray.train
    import ray.train.torch

    began = time.perf_counter()
    spec_type, round_type = ROUNDS[config["kind"]]
    spec = spec_type(**config["spec"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    images, labels = data.load_training(
        spec.dataset,
        labelled=spec.num_classes is not None,
        root=spec.data_root,
        resolution=spec.resolution or nn.generator_resolution(spec.g_space, spec.bottom_width),
        max_images=spec.max_images,
        seed=spec.seed,
    )
    steps = spec.round_steps(len(images))
    seed = spec.stream_seed(rank)  # data order and noise differ by worker
    torch.manual_seed(spec.seed)  # identical initial weights on every worker
    work = round_type(spec, device, world, seed, steps)
    batches = data.DeviceBatches(
        images[rank::world],
        device,
        seed=seed,
        channels_last=spec.channels_last,
        labels=None if labels is None else labels[rank::world],
    )
    start = restore(work, batches, spec, device, rank, world)
    every = spec.checkpoint_every or steps
    tic, metrics = time.perf_counter(), {"timed_steps": 0}
    setup = {"setup_s": tic - began, "device": cost.device_name(device)}
    for i in range(start, steps):
        done = i + 1
        try:
            metrics = {**work.step(batches, i), "collapsed": False}
            if done % every == 0 or done == steps:  # every queued loss checked before a report
                metrics.update(work.trainer.check())
        except Collapsed as err:
            metrics = {**err.metrics, "collapsed": True}
        except Diverged as err:  # reported, not raised: a retry would diverge again
            report_diverged(str(err), done, rank)
            return
        final = done == steps or metrics["collapsed"]
        if done % every == 0 or final:
            wall = time.perf_counter() - tic
            metrics = read_back(metrics)
            metrics.update(round_step=done, wall_s=wall, timed_steps=done - start, workers=world)
            flops = work.trainer.flops  # every worker trains its share of the same shapes
            metrics.update(setup, train_s=wall, train_flops=world * flops.mean() * done)
            report(work, batches, metrics, done, rank, final=final)
        if metrics["collapsed"]:
            break


def read_back(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` with each device tensor (a step's losses) read to a float: done at report
    points only, so the host does not wait for the device between them."""
    return {k: float(v) if isinstance(v, torch.Tensor) else v for k, v in metrics.items()}


def restore(
    work: Any, batches: data.DeviceBatches, spec: Any, device: torch.device, rank: int, world: int
) -> int:
    """Load this round's last checkpoint (a restarted worker group), else the previous
    round's state (``init``); the round step to continue from."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = torch.load(
                os.path.join(folder, STATE_FILE), map_location=device, weights_only=True
            )
        resumed = True
    elif spec.init:
        state, resumed = storage.load_torch(spec.init, map_location=device), False
    else:
        return 0
    streams = state.get("streams") or []
    own = resumed or spec.continue_streams
    work.load_state_dict(state, rng=False)
    if own and len(streams) == world:  # the same workers: each continues its own streams
        work.trainer.noise.set_state(streams[rank]["noise"].cpu())
        batches.load_state_dict(streams[rank]["data"])
        if resumed:  # a round's collapse windows start empty, and continue across a restart
            work.trainer.load_loss_windows(streams[rank]["losses"])
    return int(state.get("round_step", 0)) if resumed else 0


def report(
    work: Any,
    batches: data.DeviceBatches,
    metrics: dict[str, Any],
    done: int,
    rank: int,
    *,
    final: bool,
) -> None:
    """Report ``metrics`` with a checkpoint: rank 0 writes the state and every worker's
    streams (gathered from all workers); at the round's end, rank 0's result too."""
    import ray.train

    streams = gather(
        {
            "noise": work.trainer.noise.get_state(),
            "data": batches.state_dict(),
            "losses": work.trainer.loss_windows(),
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if rank == 0:
            if final:
                tic = time.perf_counter()
                metrics = {**metrics, **work.final()}
                metrics["eval_s"] = time.perf_counter() - tic
            state = {**work.state_dict(), "round_step": done, "streams": streams}
            torch.save(state, os.path.join(tmp, STATE_FILE))
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(metrics, checkpoint=checkpoint)


def report_diverged(reason: str, done: int, rank: int) -> None:
    """Report a divergence with a checkpoint that holds no weights (Ray Train keeps a run's
    last metrics only with a checkpoint), so nothing can continue from it."""
    import ray.train

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if rank == 0:
            with open(os.path.join(tmp, "diverged.txt"), "w") as f:
                f.write(reason)
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report({"diverged": reason, "round_step": done}, checkpoint=checkpoint)


def gather(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Every worker's ``obj``, in rank order (just this one outside DDP)."""
    if not torch.distributed.is_initialized():
        return [obj]
    out: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(out, {k: _cpu(v) for k, v in obj.items()})
    return out


def _cpu(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _cpu(v) for k, v in value.items()}
    return value.cpu() if isinstance(value, torch.Tensor) else value


def ddp_wrapper(*, single_path: bool) -> Callable[[torch.nn.Module], torch.nn.Module]:
    """How a Train worker wraps each module in DDP: a single-path supernet leaves the other
    candidates without gradients; architecture logits hold only constant masks as buffers."""

    def wrap(module: torch.nn.Module) -> torch.nn.Module:
        import ray.train.torch

        kwargs: dict[str, Any] = {}
        if isinstance(module, nn.ArchLogits):
            kwargs["broadcast_buffers"] = False
        elif single_path and getattr(module, "is_supernet", False):
            kwargs["find_unused_parameters"] = True
        return ray.train.torch.prepare_model(module, parallel_strategy_kwargs=kwargs)

    return wrap


class RoundDiverged(RuntimeError):
    """A shared round's loss went non-finite: the round is not saved, and nothing uses it."""


# ----- the driver side --------------------------------------------------------------------------
class RoundResult(NamedTuple):
    state: str  # the final checkpoint's state.pt
    metrics: dict[str, Any]  # the last report: losses, collapsed, wall time, the round's result
    wall_s: float  # the whole job's, as the driver saw it (Ray Train's start-up included)


def train_round(
    spec: RoundSpec | MixedRoundSpec,
    *,
    name: str,
    storage_path: str,
    workers: int = 1,
    use_gpu: bool = False,
    resources_per_worker: dict[str, float] | None = None,
    max_failures: int = 2,
) -> RoundResult:
    """Run one round as a ``TorchTrainer`` job; its final ``state.pt``, last metrics and wall.

    A run of the same name and storage path that was interrupted continues from its last
    checkpoint (Ray Train's own restoration).
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"kind": spec.kind, "spec": asdict(spec)},
        scaling_config=ScalingConfig(
            num_workers=workers, use_gpu=use_gpu, resources_per_worker=resources_per_worker
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path,
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
        ),
    )
    began = time.perf_counter()
    result = trainer.fit()
    wall_s = time.perf_counter() - began
    if result.error is not None:
        raise result.error
    if (result.metrics or {}).get("diverged"):
        storage.delete(storage.join(storage_path, name))  # a rerun starts the round afresh
        reason = result.metrics["diverged"]
        raise RoundDiverged(f"shared round {name} {reason}; nothing of it is kept")
    state = storage.join(storage.checkpoint_uri(result.checkpoint), STATE_FILE)
    return RoundResult(state, dict(result.metrics), wall_s)
