"""A fixed pair's whole weight step as one CUDA graph (``TrainConfig.cuda_graphs``).

A trial's G and D have static shapes, so its step (``n_critic`` D steps, the G step, the EMA:
hundreds of small kernels) can be captured once and replayed as one launch: the GPU then
never waits for Python between kernels. The pipeline of one graphed step:

1. draw what is random eagerly, from the trainer's own streams in the eager order (real
   batches and their labels, z and fake classes), into the graph's static inputs, and set the
   EMA's decay for this step (a device tensor);
2. replay the graph: the step's arithmetic, with capturable Adam (its step counts live on the
   device) and autocast without its weight cache (a cached cast would be a stale input);
3. hand back copies of the step's losses, still on the device (the trainer reads them at its
   checks, as it does eager ones).

A graphed run therefore draws exactly what an eager run draws. The first steps of a process
run eagerly on a side stream (lazy initialisation must not happen inside a capture), and a
trainer that loads a state captures again (the optimisers' state tensors are new). No Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from raygan.data import DeviceBatches
    from raygan.train import GANTrainer

WARMUP_STEPS = 2
"""Eager steps a process runs before capturing (cuBLAS/cuDNN handles, autotuned kernels)."""


class GraphedStep:
    """The captured weight step of ``trainer`` (a fixed pair on a CUDA device)."""

    def __init__(self, trainer: GANTrainer) -> None:
        if trainer.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device; this trainer is on {trainer.device}")
        if trainer.cfg.compile != "none":
            raise ValueError("cuda_graphs captures the eager step: leave compile at 'none'")
        self.trainer = trainer
        self.graph: torch.cuda.CUDAGraph | None = None
        self.warm = 0
        self.inputs: dict[str, list] = {}
        self.ema_decay = torch.zeros((), device=trainer.device)
        self.losses: tuple[torch.Tensor, torch.Tensor] | None = None

    def reset(self) -> None:
        """Capture again before the next step (the optimisers' state was replaced)."""
        self.graph, self.warm = None, 0

    def __call__(self, data: DeviceBatches) -> tuple[torch.Tensor, torch.Tensor]:
        """One weight step: eager while warming up, then the graph; its last G and D losses."""
        t = self.trainer
        if self.warm < WARMUP_STEPS:
            self.warm += 1
            side = torch.cuda.Stream(t.device)
            side.wait_stream(torch.cuda.current_stream(t.device))
            with torch.cuda.stream(side):
                losses = t.eager_weight_steps(data)
            torch.cuda.current_stream(t.device).wait_stream(side)
            return losses
        self.draw(data)
        if self.graph is None:
            self.capture()
        self.graph.replay()
        t.step += 1
        g_loss, d_loss = self.losses
        return g_loss.clone(), d_loss.clone()

    def draw(self, data: DeviceBatches) -> None:
        """This step's random inputs, drawn as :meth:`GANTrainer.weight_steps` draws them."""
        t, n = self.trainer, self.trainer.cfg.n_critic
        drawn: dict[str, list] = {"real": [], "labels": [], "d_noise": []}
        for _ in range(n):
            real, labels = t.real(data, t.cfg.d_batch)
            drawn["real"].append(real)
            drawn["labels"].append(labels)
            drawn["d_noise"].append(t.d_noise(len(real)))
        drawn["g_noise"] = [t.g_noise(t.cfg.g_batch)]
        if not self.inputs:  # the first draw's tensors become the static inputs
            self.inputs = drawn
        else:
            for key, values in drawn.items():
                for static, value in zip(self.inputs[key], values, strict=True):
                    copy_into(static, value)
        self.ema_decay.fill_(t.ema_decay_after(t.step + 1))

    def capture(self) -> None:
        t, x = self.trainer, self.inputs
        t.opt_d.zero_grad(set_to_none=True)
        t.opt_g.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            for real, labels, noise in zip(x["real"], x["labels"], x["d_noise"], strict=True):
                d_loss = t.d_step(real, labels=labels, noise=noise)
            g_loss = t.g_step(noise=x["g_noise"][0], ema_decay=self.ema_decay)
            self.losses = (g_loss, d_loss)
        t.step -= 1  # capturing ran no step; g_step counted one


def copy_into(static: object, value: object) -> None:
    """Copy ``value`` into the static input ``static`` (tensors, in dicts or tuples, or None)."""
    if isinstance(static, torch.Tensor):
        static.copy_(value)
    elif isinstance(static, dict):
        for key in static:
            copy_into(static[key], value[key])
    elif isinstance(static, tuple):
        for s, v in zip(static, value, strict=True):
            copy_into(s, v)
