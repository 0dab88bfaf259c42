"""What training costs: FLOPs counted with torch's FLOP counter, and the device that paid.

FLOPs are counted once per kind of step (an architecture, or an AdversarialNAS iteration with
or without its generator step) by running that step under a dispatch mode that applies
``torch.utils.flop_counter``'s formulas (matmuls and convolutions, forward and backward), then
multiplied by the steps of that kind. :func:`pair_step_flops` counts a step
of any size cheaply, for ``raygan search --estimate``.

No Ray here: Train workers, trials and the estimate use it alike.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

T = TypeVar("T")


def device_name(device: torch.device | str) -> str:
    """The device as a row names it: the GPU's model ("NVIDIA H200"), else its type ("cpu")."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


class _FlopCount(TorchDispatchMode):
    """Counts what ``torch.utils.flop_counter``'s formulas count (matmuls, convolutions,
    attention) for every op that runs; without FlopCounterMode's per-module bookkeeping, which
    made counting a supernet's many small ops several times slower."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.flops += formula(*args, **kwargs, out_val=out)
        return out


def counted(step: Callable[[], T]) -> tuple[T, int]:
    """Run ``step`` under the FLOP counter: its result and the FLOPs it ran."""
    with _FlopCount() as counter:
        out = step()
    return out, int(counter.flops)


class FlopMeter:
    """FLOPs of the steps a training ran, each kind of step counted the first time it runs."""

    def __init__(
        self, eager: Callable[[], AbstractContextManager] = contextlib.nullcontext
    ) -> None:
        """``eager()``: what a counted step runs inside (compiled code is not counted)."""
        self.eager = eager
        self.per_kind: dict[Hashable, int] = {}
        self.total = 0
        self.steps = 0

    COUNTED_KINDS = 16
    """Kinds counted exactly; past them (AutoGAN's round trains a new sampled path almost
    every step) a new kind is taken at the mean of those counted, as counting costs about
    twice a step."""

    def run(self, kind: Hashable, step: Callable[[], T]) -> T:
        if kind in self.per_kind:
            out, flops = step(), self.per_kind[kind]
        elif len(self.per_kind) >= self.COUNTED_KINDS:
            out, flops = step(), sum(self.per_kind.values()) / len(self.per_kind)
        else:
            with self.eager():
                out, self.per_kind[kind] = counted(step)
            flops = self.per_kind[kind]
        self.total += flops
        self.steps += 1
        return out

    def mean(self) -> float:
        """FLOPs of an average step so far (0 before the first)."""
        return self.total / self.steps if self.steps else 0.0


def pair_step_flops(
    build: Callable[[], tuple[torch.nn.Module, torch.nn.Module]],
    cfg: Any,
    g_arch: Any = None,
    *,
    d_options: dict[str, Any] | None = None,
) -> tuple[int, int]:
    """FLOPs of one discriminator step and one generator step of the one trainer (losses and
    gradients) for the pair ``build()`` makes, at the batch sizes of ``cfg`` (a
    :class:`raygan.train.TrainConfig`); a G step of training costs ``n_critic * d + g``.

    A step's FLOPs are affine in its batch size, so they are counted on the CPU at batches of
    1 and 2 and extended to ``cfg``'s: exact, and quick at any width. (The optimisers' and
    the EMA's element-wise updates are no matmuls or convolutions: the counter counts none.)
    """
    from raygan.train import GANTrainer

    generator, discriminator = build()
    counts = []
    for batch in (1, 2):
        small = dataclasses.replace(cfg, g_batch=batch, d_batch=batch, cuda_graphs=False)
        trainer = GANTrainer(generator, discriminator, small, "cpu", d_options=d_options)
        real = torch.zeros(batch, 3, generator.resolution, generator.resolution)
        d_loss = functools.partial(trainer.d_loss, real, g_arch, None)
        g_loss = functools.partial(trainer.g_loss, batch, g_arch, None)
        counts.append(
            (
                counted(lambda f=d_loss: f().backward())[1],
                counted(lambda f=g_loss: f().backward())[1],
            )
        )
    (d1, g1), (d2, g2) = counts
    return d1 + (d2 - d1) * (cfg.d_batch - 1), g1 + (g2 - g1) * (cfg.g_batch - 1)


COLUMNS = ("device", "device_share", "device_s", "train_s", "eval_s", "setup_s", "train_flops")
"""What every row records of its cost (docs/results.md)."""


def fields(
    device: str,
    share: float,
    *,
    wall_s: float,
    train_s: float,
    eval_s: float,
    setup_s: float,
    train_flops: float,
) -> dict[str, Any]:
    """A row's cost: the device (:func:`device_name`), the share of it held (a GPU fraction, or
    CPU cores), the device-seconds paid (wall x share), and where the time went."""
    return {
        "device": device,
        "device_share": share,
        "device_s": wall_s * share,
        "train_s": train_s,
        "eval_s": eval_s,
        "setup_s": setup_s,
        "train_flops": int(train_flops),
    }


def round_fields(metrics: dict[str, Any], wall_s: float, share: float) -> dict[str, Any]:
    """A shared round's cost (:func:`fields`) from its workers' last report: its whole wall
    (Ray Train's start-up included), on every worker's device share together."""
    return {
        "wall_s": wall_s,
        **fields(
            metrics.get("device", "cpu"),
            share,
            wall_s=wall_s,
            train_s=metrics.get("train_s", 0.0),
            eval_s=metrics.get("eval_s", 0.0),
            setup_s=metrics.get("setup_s", 0.0),
            train_flops=metrics.get("train_flops", 0),
        ),
    }
