"""The GAN training loop for one generator/discriminator pair (METHODS.md, shared conventions).

Hinge loss, Adam (0.0, 0.9), ``n_critic`` discriminator steps per generator step with separate
G and D batch sizes, and an EMA copy of the generator updated after every G step (all reported
numbers come from it). Seeded and reproducible on CPU; bf16 autocast and channels_last are
options for GPUs. Divergence (a non-finite loss, or the variance of the recent G or D losses
collapsing as in AutoGAN's dynamic reset) raises :class:`Diverged` rather than letting a
garbage generator be scored.

No Ray here: the loop runs the same in a Tune trial, a Train worker or a plain script.
"""

from __future__ import annotations

import copy
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from raygan.data import DeviceBatches


class Diverged(RuntimeError):
    """Training produced a non-finite loss or collapsed; ``reason`` says which."""

    def __init__(self, reason: str, step: int):
        super().__init__(f"diverged at step {step}: {reason}")
        self.reason = reason
        self.step = step


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
    collapse_window: int = 500
    collapse_variance: float = 1e-3
    amp_bf16: bool = False
    channels_last: bool = False
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def d_hinge_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def g_hinge_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


def init_weights(module: nn.Module) -> None:
    """METHODS.md's init: xavier_uniform conv/linear weights, BatchNorm weight N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            weight = getattr(m, "weight_orig", m.weight)  # spectral norm keeps the raw weight here
            nn.init.xavier_uniform_(weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
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
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for pe, p in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(p, 1.0 - decay)
    for be, b in zip(ema.buffers(), model.buffers(), strict=True):
        be.copy_(b)


class GANTrainer:
    """State of one pair's training: G, D, EMA G, both optimisers and the step counter.

    ``state_dict``/``load_state_dict`` make a run resumable bit-for-bit on CPU (RNG states
    included), which is what Tune checkpoints hold.
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        cfg: TrainConfig,
        device: torch.device | str = "cpu",
    ):
        self.cfg = cfg
        self.device = torch.device(device)
        memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.G = generator.to(self.device, memory_format=memory_format)
        self.D = discriminator.to(self.device, memory_format=memory_format)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.g_lr, betas=cfg.betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.d_lr, betas=cfg.betas)
        self.step = 0
        self.noise = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self._losses: dict[str, deque[float]] = {
            "g": deque(maxlen=cfg.collapse_window),
            "d": deque(maxlen=cfg.collapse_window),
        }

    def _z(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.G.latent_dim, device=self.device, generator=self.noise)

    def _autocast(self):
        enabled = self.cfg.amp_bf16 and self.device.type == "cuda"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def _check(self, name: str, loss: torch.Tensor) -> float:
        value = float(loss)
        if not torch.isfinite(loss):
            raise Diverged(f"{name} loss is {value}", self.step)
        window = self._losses[name]
        window.append(value)
        if len(window) == window.maxlen:
            t = torch.tensor(window)
            if float(t.var()) < self.cfg.collapse_variance:
                raise Diverged(
                    f"variance of the last {window.maxlen} {name.upper()} losses fell under "
                    f"{self.cfg.collapse_variance} (mode collapse)",
                    self.step,
                )
        return value

    def train_step(self, data: DeviceBatches) -> dict[str, float]:
        """One generator step preceded by ``n_critic`` discriminator steps."""
        cfg = self.cfg
        for _ in range(cfg.n_critic):
            real = data.sample(cfg.d_batch)
            with torch.no_grad(), self._autocast():
                fake = self.G(self._z(cfg.d_batch))
            with self._autocast():
                d_loss = d_hinge_loss(self.D(real), self.D(fake))
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
        with self._autocast():
            g_loss = g_hinge_loss(self.D(self.G(self._z(cfg.g_batch))))
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        self.step += 1
        ema_update(self.G_ema, self.G, ema_decay_at(self.step, cfg.ema_decay, cfg.ema_warmup))
        return {
            "g_loss": self._check("g", g_loss.detach()),
            "d_loss": self._check("d", d_loss.detach()),
        }

    def run(
        self,
        data: DeviceBatches,
        steps: int,
        on_log: Callable[[int, dict[str, float]], None] | None = None,
        log_every: int = 100,
    ) -> dict[str, float]:
        """Train ``steps`` more generator steps; returns losses, wall time and throughput.

        ``img_per_s`` counts real images through the discriminator per second.
        """
        start = time.perf_counter()
        losses: dict[str, float] = {}
        self.G.train()
        self.D.train()
        for _ in range(steps):
            losses = self.train_step(data)
            if on_log is not None and self.step % log_every == 0:
                on_log(self.step, losses)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        wall = time.perf_counter() - start
        images = steps * self.cfg.n_critic * self.cfg.d_batch
        return {**losses, "wall_s": wall, "img_per_s": images / wall if wall > 0 else 0.0}

    def state_dict(self) -> dict[str, Any]:
        return {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "step": self.step,
            "noise": self.noise.get_state(),
            "losses": {k: list(v) for k, v in self._losses.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step = int(state["step"])
        self.noise.set_state(state["noise"].cpu())  # an RNG state is a CPU tensor
        for k, v in state["losses"].items():
            self._losses[k].extend(v)
