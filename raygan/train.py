"""THE GAN training loop (METHODS.md, shared conventions), for every kind of training.

Hinge loss, Adam (0.0, 0.9), ``n_critic`` discriminator steps per generator step with separate
G and D batch sizes, and an EMA copy of the generator updated after every G step (all reported
numbers come from it). Seeded and reproducible on CPU; bf16 autocast, channels_last and
``torch.compile`` of the forwards are options (fused Adam on a GPU). Divergence (a non-finite
loss, or the variance of the recent G or D losses collapsing as in AutoGAN's dynamic reset)
raises :class:`Diverged` rather than letting a garbage generator be scored.

What a step trains is a parameter of the step: the architecture each forward runs (``None``
for a fixed network, a genotype for one path of a supernet, mixed-op weights for a mixed-op
supernet). One :class:`GANTrainer` therefore runs a trial's fixed pair, a shared-weights round
(EAGAN stage 1, AutoGAN's shared GAN) and the AdversarialNAS search, inside DDP or not
(``wrap``). AdversarialNAS's two architecture steps are :class:`Architect`'s, which uses the
trainer's losses (DARTS keeps ``architect.py`` apart from the network in the same way).

A class-conditional pair (networks built with ``num_classes``, :mod:`raygan.nn.conditional`)
trains the same way: real images go through D with their labels, fakes are drawn for classes
uniform over the dataset's (from the trainer's noise, as BigGAN and the projection GAN do)
and go through D with the class they were drawn for. An unconditional pair draws nothing more.

No Ray here: the loop runs the same in a Tune trial, a Train worker or a plain script.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypeAlias

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from raygan.cost import FlopMeter
from raygan.data import DeviceBatches
from raygan.graphed import GraphedStep
from raygan.nn import Arch
from raygan.nn.mixed import ArchLogits


class Diverged(RuntimeError):
    """Training produced a non-finite loss or collapsed; ``reason`` says which."""

    def __init__(self, reason: str, step: int):
        super().__init__(f"diverged at step {step}: {reason}")
        self.reason = reason
        self.step = step


class Collapsed(Diverged):
    """The recent G or D losses stopped varying: a trial fails, a shared round ends early
    (AutoGAN's dynamic reset). ``metrics`` holds the step's losses and both windows'
    variances."""

    def __init__(self, reason: str, step: int, metrics: dict[str, float]):
        super().__init__(reason, step)
        self.metrics = metrics


@dataclass
class TrainConfig:
    """Budget and optimiser settings; defaults are METHODS.md's search-time values."""

    steps: int = 1000  # generator steps
    n_critic: int = 5
    g_batch: int = 128
    d_batch: int = 64
    g_lr: float = 2e-4
    d_lr: float = 2e-4
    betas: tuple[float, float] = (0.0, 0.9)
    ema_decay: float = 0.999
    # Early on, average with decay min(ema_decay, (1 + t) / (10 + t)) so that short runs are not
    # scored on a generator still mostly made of its initial weights; identical to a constant
    # decay once t > 10 / (1 - decay) - 1 (about 9,000 steps at 0.999).
    ema_warmup: bool = True
    collapse_window: int = 500  # G steps watched for collapse; 0: never
    collapse_variance: float = 1e-3
    # real and fake through D as one batch (AdversarialNAS's code), not one batch each
    d_joint_batch: bool = False
    amp_bf16: bool = False
    channels_last: bool = False
    compile: str = "none"  # torch.compile mode of G's forwards ("none": eager)
    cuda_graphs: bool = False  # a fixed pair's whole weight step as one CUDA graph (graphed.py)
    check_every: int = 1  # G steps between reading the losses back (the host waits then)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def d_hinge_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def g_hinge_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


def init_weights(module: nn.Module) -> None:
    """METHODS.md's initialisation, as all three authors' codes do it: ``Conv2d`` weights
    xavier_uniform, BatchNorm weight N(1, 0.02) and bias 0; everything else keeps PyTorch's
    default (Linear and ConvTranspose2d weights, every conv and linear bias)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(getattr(m, "weight_orig", m.weight))  # spectral norm's raw
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def ema_decay_at(step: int, decay: float = 0.999, warmup: bool = True) -> float:
    """The EMA decay after ``step`` generator steps (``TrainConfig.ema_warmup`` says why)."""
    return min(decay, (1 + step) / (10 + step)) if warmup else decay


def scored_generator(state: Mapping[str, Any]) -> Mapping[str, torch.Tensor]:
    """The generator weights a checkpoint is scored with: its EMA copy (METHODS.md: every
    reported number comes from the EMA generator), or the raw weights if it holds none."""
    return state["G_ema"] if "G_ema" in state else state["G"]


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float | torch.Tensor) -> None:
    for pe, p in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(p, 1.0 - decay)
    for be, b in zip(ema.buffers(), model.buffers(), strict=True):
        be.copy_(b)


Noise: TypeAlias = tuple[torch.Tensor, dict[str, torch.Tensor]]
"""What fakes are made from: z, and the class keyword of a conditional pair's forwards."""

ArchSource: TypeAlias = Arch | Callable[[], Arch]
"""What a forward runs: an architecture, or a function that gives it at the moment of use
(Gumbel-softmax weights are drawn from the trainer's noise, so when they are drawn matters)."""


def _resolve(arch: ArchSource) -> Arch:
    return arch() if callable(arch) else arch


def _identity(module: nn.Module) -> nn.Module:
    return module


class GANTrainer:
    """State of one G/D training: G, D, EMA G, both optimisers, the step counter, the noise.

    ``G``/``D`` are the plain modules (state dicts, the EMA, parameter counts); forwards run
    through ``wrap(G)``/``wrap(D)`` (DDP in a Train worker). ``g_options`` go to every G forward
    and ``d_options`` to every D forward (AutoGAN's multi-level search runs the first
    ``n_cells`` cells of G, and D's blocks of that stage). ``state_dict`` and
    ``load_state_dict`` make a run resumable bit-for-bit on CPU (RNG states included).
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        cfg: TrainConfig,
        device: torch.device | str = "cpu",
        *,
        noise_seed: int | None = None,
        wrap: Callable[[nn.Module], nn.Module] = _identity,
        g_options: Mapping[str, Any] | None = None,
        d_options: Mapping[str, Any] | None = None,
    ):
        self.cfg = cfg
        self.device = torch.device(device)
        memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.G = generator.to(self.device, memory_format=memory_format)
        self.D = discriminator.to(self.device, memory_format=memory_format)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.num_classes: int | None = getattr(generator, "num_classes", None)
        fused = {"fused": True} if self.device.type == "cuda" else {}  # one kernel per step
        if cfg.cuda_graphs:
            fused["capturable"] = True  # Adam's step counts on the device, as a graph needs
        self.opt_g = torch.optim.Adam(
            self.G.parameters(), lr=cfg.g_lr, betas=tuple(cfg.betas), **fused
        )
        self.opt_d = torch.optim.Adam(
            self.D.parameters(), lr=cfg.d_lr, betas=tuple(cfg.betas), **fused
        )
        self.run_g, self.run_d = wrap(self.G), wrap(self.D)
        self._eager = (self.run_g, self.run_d)
        if cfg.compile != "none":  # G only: D's spectral norm updates its vectors in place
            self.run_g = torch.compile(self.run_g, mode=cfg.compile)  # (compiled autograd refuses)
        self.g_options = dict(g_options or {})
        self.d_options = dict(d_options or {})
        self.step = 0
        self.flops = FlopMeter(self.eager)  # what this process trained, per kind of step
        seed = cfg.seed if noise_seed is None else noise_seed
        self.noise = torch.Generator(device=self.device).manual_seed(seed)
        self._unread: list[torch.Tensor] = []  # losses not yet read back (observe)
        self._read: dict[str, float] = {}
        self._losses: dict[str, deque[float]] = {
            "g": deque(maxlen=max(1, cfg.collapse_window)),
            "d": deque(maxlen=max(1, cfg.collapse_window)),
        }
        self.graphed = GraphedStep(self) if cfg.cuda_graphs else None

    @contextlib.contextmanager
    def eager(self) -> Iterator[None]:
        """G and D run uncompiled inside (a step counted for its FLOPs runs so)."""
        compiled = self.run_g, self.run_d
        self.run_g, self.run_d = self._eager
        try:
            yield
        finally:
            self.run_g, self.run_d = compiled

    def z(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.G.latent_dim, device=self.device, generator=self.noise)

    def classes(self, n: int) -> dict[str, torch.Tensor]:
        """The class keyword of ``n`` fakes' forwards: classes uniform over the dataset's,
        drawn from the trainer's noise (none, and nothing drawn, for an unconditional pair)."""
        if self.num_classes is None:
            return {}
        y = torch.randint(self.num_classes, (n,), device=self.device, generator=self.noise)
        return {"y": y}

    def real(self, data: DeviceBatches, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``n`` real images and, for a conditional pair, their labels."""
        return data.sample_labelled(n) if self.num_classes is not None else (data.sample(n), None)

    def d_noise(self, n: int) -> Noise:
        """What a D step's ``n`` fakes are made from: z, then their classes."""
        z = self.z(n)
        return z, self.classes(n)

    def g_noise(self, n: int) -> Noise:
        """What a G step's ``n`` fakes are made from: their classes, then z."""
        drawn = self.classes(n)
        return self.z(n), drawn

    def ema_decay_after(self, step: int) -> float:
        return ema_decay_at(step, self.cfg.ema_decay, self.cfg.ema_warmup)

    def _autocast(self):
        """bf16 autocast when asked, on a GPU or the CPU (a CUDA graph cannot keep autocast's
        cache of cast weights: its casts are captured instead)."""
        return torch.autocast(
            self.device.type,
            dtype=torch.bfloat16,
            enabled=self.cfg.amp_bf16,
            cache_enabled=not self.cfg.cuda_graphs,
        )

    # -- the losses (an Architect's steps use them too)
    def d_loss(
        self,
        real: torch.Tensor,
        g_arch: ArchSource,
        d_arch: ArchSource,
        labels: torch.Tensor | None = None,
        noise: Noise | None = None,
    ) -> torch.Tensor:
        """The D hinge loss of ``real`` (with its ``labels``, conditional) and as many fakes
        (made from ``noise``, else drawn now)."""
        d_arch = _resolve(d_arch)
        z, drawn = noise if noise is not None else self.d_noise(len(real))
        with torch.no_grad(), self._autocast():
            fake = self.run_g(z, _resolve(g_arch), **self.g_options, **drawn)
        own = {} if labels is None else {"y": labels}
        with self._autocast():
            if self.cfg.d_joint_batch:
                both = {k: torch.cat([own[k], drawn[k]]) for k in drawn}
                logits = self.run_d(torch.cat([real, fake]), d_arch, **self.d_options, **both)
                return d_hinge_loss(*logits.split(len(real)))
            real_logits = self.run_d(real, d_arch, **self.d_options, **own)
            return d_hinge_loss(real_logits, self.run_d(fake, d_arch, **self.d_options, **drawn))

    def g_loss(
        self, n: int, g_arch: ArchSource, d_arch: ArchSource, noise: Noise | None = None
    ) -> torch.Tensor:
        g_arch, d_arch = _resolve(g_arch), _resolve(d_arch)
        z, drawn = noise if noise is not None else self.g_noise(n)
        with self._autocast():
            fake = self.run_g(z, g_arch, **self.g_options, **drawn)
            return g_hinge_loss(self.run_d(fake, d_arch, **self.d_options, **drawn))

    # -- the weight steps
    def d_step(
        self,
        real: torch.Tensor,
        g_arch: ArchSource = None,
        d_arch: ArchSource = None,
        labels: torch.Tensor | None = None,
        noise: Noise | None = None,
    ) -> torch.Tensor:
        loss = self.d_loss(real, g_arch, d_arch, labels, noise)
        optimise(self.opt_d, loss)
        return loss.detach()

    def g_step(
        self,
        g_arch: ArchSource = None,
        d_arch: ArchSource = None,
        *,
        noise: Noise | None = None,
        ema_decay: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One generator weight step, then the EMA (at ``ema_decay``, a device tensor inside a
        CUDA graph; else the decay after this step)."""
        loss = self.g_loss(self.cfg.g_batch, g_arch, d_arch, noise)
        optimise(self.opt_g, loss)
        self.step += 1
        ema_update(
            self.G_ema, self.G, self.ema_decay_after(self.step) if ema_decay is None else ema_decay
        )
        return loss.detach()

    def train_step(self, data: DeviceBatches, g_arch: ArchSource = None) -> dict[str, float]:
        """One generator step preceded by ``n_critic`` discriminator steps, checked."""
        return self.observe(*self.weight_steps(data, g_arch))

    def weight_steps(
        self, data: DeviceBatches, g_arch: ArchSource = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n_critic`` discriminator steps, then one generator step: their last losses (one
        CUDA graph's replay for a fixed pair with ``cuda_graphs``)."""
        if self.graphed is not None and g_arch is None:
            return self.graphed(data)
        return self.eager_weight_steps(data, g_arch)

    def eager_weight_steps(
        self, data: DeviceBatches, g_arch: ArchSource = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        for _ in range(self.cfg.n_critic):
            real, labels = self.real(data, self.cfg.d_batch)
            d_loss = self.d_step(real, g_arch, None, labels)
        return self.g_step(g_arch), d_loss

    def observe(self, g_loss: torch.Tensor, d_loss: torch.Tensor) -> dict[str, float]:
        """Queue a generator step's losses, and every ``check_every`` steps :meth:`check` them
        (the host waits for the device only then); the last losses checked."""
        self._unread.append(torch.stack([g_loss.detach().float(), d_loss.detach().float()]))
        if len(self._unread) >= self.cfg.check_every:
            return self.check()
        return self._read

    def check(self) -> dict[str, float]:
        """Read the queued losses and check each step's in order: :class:`Diverged` on a
        non-finite one, :class:`Collapsed` once the recent ones stop varying (either on any
        DDP worker, so that every worker stops at the same step); the last step's losses."""
        if self._unread:
            read = torch.stack(self._unread).tolist()
            self._unread.clear()
            for i, (g, d) in enumerate(read):
                self._read = self._checked(
                    {"g_loss": g, "d_loss": d}, self.step - len(read) + i + 1
                )
        return self._read

    def _checked(self, values: dict[str, float], step: int) -> dict[str, float]:
        if agreed(not all(map(math.isfinite, values.values())), self.device):
            bad = [f"{k[0].upper()} loss is {v}" for k, v in values.items() if not math.isfinite(v)]
            raise Diverged(", ".join(bad) or "a loss is not finite on another worker", step)
        for name, value in values.items():
            self._losses[name[0]].append(value)
        if self.cfg.collapse_window and len(self._losses["g"]) == self.cfg.collapse_window:
            variances = {f"{k}_loss_var": float(np.var(v)) for k, v in self._losses.items()}
            if agreed(min(variances.values()) < self.cfg.collapse_variance, self.device):
                raise Collapsed(
                    f"variance of the last {self.cfg.collapse_window} losses fell under "
                    f"{self.cfg.collapse_variance} (G {variances['g_loss_var']:.2e}, "
                    f"D {variances['d_loss_var']:.2e}: mode collapse)",
                    step,
                    {**values, **variances},
                )
            values.update(variances)
        return values

    def run(
        self,
        data: DeviceBatches,
        steps: int,
        g_arch: Callable[[int], Arch] | None = None,
        on_log: Callable[[int, dict[str, float]], None] | None = None,
        log_every: int = 100,
    ) -> dict[str, float]:
        """Train ``steps`` more generator steps; returns losses, wall time and throughput.

        ``g_arch(i)`` is the architecture of the run's ``i``-th step (a supernet's paths);
        ``img_per_s`` counts real images through the discriminator per second.
        """
        start = time.perf_counter()
        losses: dict[str, float] = {}
        self.G.train()
        self.D.train()
        for i in range(steps):
            arch = None if g_arch is None else g_arch(i)
            losses = self.flops.run(str(arch), functools.partial(self.train_step, data, arch))
            if on_log is not None and self.step % log_every == 0:
                on_log(self.step, losses)
        losses = self.check()  # every step's losses read and checked: the device is done
        wall = time.perf_counter() - start
        images = steps * self.cfg.n_critic * self.cfg.d_batch
        return {**losses, "wall_s": wall, "img_per_s": images / wall if wall > 0 else 0.0}

    def loss_windows(self) -> dict[str, list[float]]:
        """The recent losses the collapse check watches (every step's, checked first)."""
        self.check()
        return {k: list(v) for k, v in self._losses.items()}

    def load_loss_windows(self, windows: Mapping[str, list[float]]) -> None:
        for k, v in windows.items():
            self._losses[k].clear()
            self._losses[k].extend(v)

    def state_dict(self) -> dict[str, Any]:
        return {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "step": self.step,
            "noise": self.noise.get_state(),
            "losses": self.loss_windows(),
        }

    def load_state_dict(self, state: Mapping[str, Any], *, rng: bool = True) -> None:
        """Continue from ``state``; ``rng=False`` keeps this trainer's own noise and empty
        loss windows (a new shared round seeded on its own, from the last round's weights)."""
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state.get("G_ema", state["G"]))
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step = int(state["step"])
        if self.graphed is not None:
            self.graphed.reset()
        if rng:
            self.noise.set_state(state["noise"].cpu())  # an RNG state is a CPU tensor
            self.load_loss_windows(state["losses"])


def optimise(optimiser: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """Backward ``loss`` into fresh gradients and step ``optimiser`` alone."""
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()


def agreed(flag: bool, device: torch.device) -> bool:
    """``flag`` on any DDP worker (every worker gets the same answer, so none waits on one
    that stopped); the flag itself outside DDP."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return flag
    tensor = torch.tensor(float(flag), device=device)
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
    return bool(tensor)


@dataclass
class ArchConfig:
    """AdversarialNAS's architecture optimiser and mixed-op weights (METHODS.md section 2)."""

    lr: float = 3e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 1e-4
    gumbel: bool = False
    tau_start: float = 1.0
    tau_end: float = 0.1


class Architect:
    """AdversarialNAS's architecture steps, around a :class:`GANTrainer` of two supernets.

    Each iteration: a D-architecture step on one half of the real batch, a D-weight step on
    the other half, and every ``n_critic`` iterations a G-architecture step, then a G-weight
    step (and the EMA). First-order; G's architecture minimises the G loss, D's the D loss.
    With ``gumbel`` the mixed-op weights are Gumbel-softmax samples of the logits, drawn from
    the trainer's noise at a temperature annealed exponentially over ``total_iterations``.
    """

    def __init__(
        self,
        trainer: GANTrainer,
        alpha_g: ArchLogits,
        alpha_d: ArchLogits,
        cfg: ArchConfig,
        *,
        total_iterations: int,
        wrap: Callable[[nn.Module], nn.Module] = _identity,
    ):
        self.trainer, self.cfg = trainer, cfg
        self.alpha_g, self.alpha_d = alpha_g.to(trainer.device), alpha_d.to(trainer.device)
        arch = {"lr": cfg.lr, "betas": tuple(cfg.betas), "weight_decay": cfg.weight_decay}
        self.opt_g = torch.optim.Adam(self.alpha_g.parameters(), **arch)
        self.opt_d = torch.optim.Adam(self.alpha_d.parameters(), **arch)
        self.run_g, self.run_d = wrap(self.alpha_g), wrap(self.alpha_d)
        self.total_iterations = total_iterations
        self.iterations = 0  # D iterations done

    def tau(self) -> float | None:
        """The Gumbel temperature now (None: plain softmax), annealed exponentially."""
        c = self.cfg
        if not c.gumbel:
            return None
        progress = min(1.0, self.iterations / max(1, self.total_iterations))
        return c.tau_start * (c.tau_end / c.tau_start) ** progress

    def weights(self, player: str, *, grad: bool) -> Callable[[], dict[str, torch.Tensor]]:
        """Mixed-op weights of ``player``, drawn when used; without ``grad`` the logits are
        constants of the step."""
        logits = self.run_g if player == "g" else self.run_d

        def draw() -> dict[str, torch.Tensor]:
            with torch.set_grad_enabled(grad):
                return logits(self.tau(), self.trainer.noise)

        return draw

    def iteration(
        self, real: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """One D iteration on this worker's share of the real batch (with its labels, for a
        conditional pair), and G every n_critic; the losses stay on the device (the host reads
        them at report points only, so it never waits for the device inside the loop)."""
        t, g_fixed = self.trainer, self.weights("g", grad=False)
        arch_half, weight_half = real.chunk(2)
        arch_y, weight_y = (None, None) if labels is None else labels.chunk(2)
        d_arch_loss = t.d_loss(arch_half, g_fixed, self.weights("d", grad=True), arch_y)
        optimise(self.opt_d, d_arch_loss)
        d_loss = t.d_step(weight_half, g_fixed, self.weights("d", grad=False), weight_y)
        losses = {"d_arch": d_arch_loss.detach(), "d": d_loss}
        self.iterations += 1
        if self.iterations % t.cfg.n_critic == 0:
            d_fixed = self.weights("d", grad=False)
            g_arch_loss = t.g_loss(t.cfg.g_batch, self.weights("g", grad=True), d_fixed)
            optimise(self.opt_g, g_arch_loss)
            g_loss = t.g_step(g_fixed, d_fixed)
            t.observe(g_loss, d_loss)
            losses.update(g_arch=g_arch_loss.detach(), g=g_loss)
        return losses

    def state_dict(self) -> dict[str, Any]:
        return {
            "alpha_g": self.alpha_g.state_dict(),
            "alpha_d": self.alpha_d.state_dict(),
            "opt_alpha_g": self.opt_g.state_dict(),
            "opt_alpha_d": self.opt_d.state_dict(),
            "iterations": self.iterations,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.alpha_g.load_state_dict(state["alpha_g"])
        self.alpha_d.load_state_dict(state["alpha_d"])
        self.opt_g.load_state_dict(state["opt_alpha_g"])
        self.opt_d.load_state_dict(state["opt_alpha_d"])
        self.iterations = int(state["iterations"])
