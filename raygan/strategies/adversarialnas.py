"""AdversarialNAS (Gao et al., CVPR 2020): differentiable search of G and D together, on Ray Train.

Both players are supernets of the ``nas_cell`` spaces (``nas_cell_g``, ``adversarialnas_d``)
whose every edge is a mixed op, ``sum_i softmax(alpha)_i * op_i(x)``. The architecture logits
``alpha`` live in their own small modules (:class:`ArchLogits`), apart from the network weights,
with their own optimisers. Each iteration (METHODS.md section 2):

1. D-architecture step on one half of the real batch (with fresh z),
2. D-weight step on the other half,
3. every ``n_critic`` iterations a G-architecture step, then a G-weight step (and the EMA).

Every step is first-order and uses the hinge loss; the architecture of G minimises the G loss,
the architecture of D the D loss. Optionally the mixed-op weights are Gumbel-softmax samples
of the logits (``--gumbel``) with a temperature annealed exponentially over the run.

Distribution: the search is one ``ray.train.torch.TorchTrainer`` job. Every worker holds both
supernets and both logit modules, all four wrapped in DDP, so the weight gradients *and* the
architecture gradients are averaged across workers and every replica stays identical; the real
batch is sharded (each worker draws ``batch / workers`` images from its own shard of the data).
At the end of every epoch, rank 0 derives the genotypes, scores the EMA generator, checkpoints
through ``ray.train.report`` and appends one row to the trial table; a failed worker restarts
the whole group from the last reported checkpoint (``FailureConfig``).

What is scored each epoch: the EMA *supernet* generator run as a mixed op with the current
softmax weights, i.e. the generator this search has actually trained. The derived path alone,
without retraining, would mostly measure the discretisation gap (and BatchNorm statistics
gathered on the mixture), not the architecture; its real quality comes from retraining
``best.yaml`` (``raygan train --genotype-file``), as in the paper.

Table rows (one per epoch, ``trial_id`` ``epoch<n>``): ``generation`` is the epoch (1-based),
``g_genotype`` / ``d_genotype`` the derived genotypes, ``entropy`` the mean entropy of the
softmax weights over every edge of both players (``extra`` has ``g_entropy`` and ``d_entropy``
apart), ``g_params`` / ``d_params`` the derived networks' sizes at the search widths,
``budget_steps`` the G steps so far. The G steps draw ``batch`` latent vectors over all
workers. A row is appended only once per epoch: a worker that fails after rank 0 appended but
before Ray Train registered that epoch's checkpoint recomputes the epoch without writing it
twice (the table keeps the first attempt's row).

``best.yaml`` pairs the last epoch's derived G with AutoGAN-D at the retraining widths
(gf 256, df 128), as the paper retrains; ``--keep-searched-d`` keeps the searched D instead.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import itertools
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from raygan import data, nn, results, spaces, storage
from raygan.errors import UsageError
from raygan.nn.arch import edge_specs
from raygan.strategies import common
from raygan.train import d_hinge_loss, ema_update, g_hinge_loss

if TYPE_CHECKING:
    from raygan.metrics import Reference

HELP = "AdversarialNAS: differentiable search of G and D together (Ray Train, DDP)"

G_SPACE = "nas_cell_g"
D_SPACE = "adversarialnas_d"
RETRAIN_D = "autogan_d:"
"""The paper retrains the derived generator against the fixed AutoGAN discriminator."""
RUN_NAME = "search"
STATE_FILE = "state.pt"
STRATEGY = "adversarialnas"

# An epoch is one pass over the (capped) training images: len(images) // batch D iterations.
# CIFAR-10 at batch 120 has 416 iterations per epoch, so 24 epochs are the paper's ~10k.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "dataset": "shapes",
        "max_images": 640,
        "batch": 32,
        "gf": 16,
        "df": 16,
        "epochs": 3,
        "n_critic": 5,
        "eval_samples": 250,
        "workers": 2,
    },
    "paper": {
        "dataset": "cifar10",
        "max_images": 50_000,
        "batch": 120,
        "gf": 160,
        "df": 80,
        "epochs": 24,
        "n_critic": 5,
        "eval_samples": 5000,
        "workers": 1,
    },
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch", type=int, help="real images per D iteration, over all workers")
    p.add_argument("--gf", type=int, help="generator supernet width")
    p.add_argument("--df", type=int, help="discriminator supernet width")
    p.add_argument("--epochs", type=int, help="passes over the training images")
    p.add_argument("--n-critic", type=int, help="D iterations per G step")
    p.add_argument("--workers", type=int, help="Ray Train workers (DDP replicas)")
    p.add_argument(
        "--max-failures",
        type=int,
        default=2,
        help="worker-group restarts from the last epoch's checkpoint (default 2)",
    )
    p.add_argument(
        "--gumbel",
        action="store_true",
        help="mixed-op weights as Gumbel-softmax samples of the logits",
    )
    p.add_argument("--tau-start", type=float, default=1.0, help="Gumbel temperature at start")
    p.add_argument("--tau-end", type=float, default=0.1, help="Gumbel temperature at the end")
    p.add_argument("--final-gf", type=int, default=256, help="G width written to best.yaml")
    p.add_argument("--final-df", type=int, default=128, help="D width written to best.yaml")
    p.add_argument(
        "--keep-searched-d",
        action="store_true",
        help="best.yaml keeps the searched D instead of AutoGAN-D",
    )


def validate(args: argparse.Namespace) -> None:
    """Every problem in the options, before Ray starts."""
    common.require_positive(
        args,
        [
            "batch",
            "gf",
            "df",
            "epochs",
            "n_critic",
            "workers",
            "eval_samples",
            "max_images",
            "final_gf",
            "final_df",
        ],
    )
    common.check_resources(args)
    if args.max_failures < -1:
        raise UsageError(f"--max-failures must be -1 (no limit) or >= 0, got {args.max_failures}")
    if args.batch % (2 * args.workers):
        raise UsageError(
            f"--batch {args.batch} must split into an even share per worker "
            f"(a multiple of 2 x --workers = {2 * args.workers}): each worker halves its share "
            f"between the architecture and the weight step"
        )
    if args.max_images < args.batch:
        raise UsageError(f"--max-images {args.max_images} is less than one --batch {args.batch}")
    if args.eval_samples < 10:
        raise UsageError(f"--eval-samples must be at least 10 (IS splits), got {args.eval_samples}")
    if not 0 < args.tau_end <= args.tau_start:
        raise UsageError(f"need 0 < --tau-end <= --tau-start, got {args.tau_end}, {args.tau_start}")


# ----- architecture: logits, derivation, entropy ------------------------------------------------
class ArchLogits(torch.nn.Module):
    """One player's architecture logits, one parameter per edge group (cells, edges, choices).

    A module of its own so that DDP averages its gradients like any weight's, and so that its
    optimiser never sees a network weight. Choices a gene does not allow (the first D cell's
    input edges are convs only) are masked to probability 0 before every softmax.
    """

    def __init__(self, supernet: nn.Searchable) -> None:
        super().__init__()
        masks = supernet.arch_masks()
        self.logits = torch.nn.ParameterDict(
            {
                group: torch.nn.Parameter(1e-3 * torch.randn(mask.shape))
                for group, mask in masks.items()
            }
        )
        for group, mask in masks.items():
            self.register_buffer(f"mask_{group}", mask, persistent=False)

    def masked(self) -> dict[str, torch.Tensor]:
        return {
            g: a.masked_fill(~getattr(self, f"mask_{g}"), -math.inf) for g, a in self.logits.items()
        }

    def forward(
        self, tau: float | None = None, noise: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Mixed-op weights: softmax of the logits, or with ``tau`` a Gumbel-softmax sample.

        The Gumbel noise is added to the *logits* (not to probabilities) and the sum divided
        by the temperature; masked choices stay at -inf, so they keep weight 0.
        """
        weights = {}
        for group, logits in self.masked().items():
            if tau is not None:
                exponential = torch.empty_like(logits).exponential_(generator=noise)
                logits = (logits - exponential.log()) / tau  # -log Exp(1) ~ Gumbel(0, 1)
            weights[group] = F.softmax(logits, dim=-1)
        return weights

    @torch.no_grad()
    def probabilities(self) -> dict[str, torch.Tensor]:
        """Plain softmax weights: what derivation, entropy and scoring use."""
        return {g: F.softmax(a, dim=-1) for g, a in self.masked().items()}


def derive(space_name: str, probs: dict[str, torch.Tensor]) -> spaces.Genotype:
    """The discrete genotype of softmax weights ``probs`` (per group: cells x edges x choices).

    Per edge the most probable allowed choice, ``none`` included. Then every ``not_all_none``
    rule of the space (G: n2's and n3's inputs; D: node0's, node1's and node2's) must keep one
    input: if all its edges chose ``none``, the edge whose ``none`` weight is lowest takes its
    best other op. Up and down edges have no ``none`` and are plain argmaxes.
    """
    space = spaces.get(space_name)
    specs = {(e.cell, e.gene): e for e in edge_specs(space_name)}

    def weights(cell: int, gene: int) -> torch.Tensor:
        e = specs[cell, gene]
        return probs[e.group][cell, e.slot].detach().cpu()

    def best(cell: int, gene: int, exclude: tuple[int, ...] = ()) -> int:
        w = weights(cell, gene)
        return max(
            (i for i in specs[cell, gene].allowed if i not in exclude), key=lambda i: float(w[i])
        )

    cells = [[best(c, p) for p in range(len(genes))] for c, genes in enumerate(space.cells)]
    for rule in space.rules:
        if rule.kind != "not_all_none":
            raise ValueError(f"{space_name}: cannot derive under a {rule.kind!r} rule")
        for c, cell in enumerate(cells):
            none = {p: specs[c, p].choices.index("none") for p in rule.positions}
            if all(cell[p] == none[p] for p in rule.positions):
                keep = min(rule.positions, key=lambda p: float(weights(c, p)[none[p]]))
                cell[keep] = best(c, keep, exclude=(none[keep],))
    return space.genotype(cells)


def mean_entropy(probs: dict[str, torch.Tensor]) -> float:
    """Mean over edges of the entropy (nats) of each edge's softmax weights."""
    per_edge = torch.cat([-torch.xlogy(p, p).sum(-1).flatten() for p in probs.values()])
    return float(per_edge.mean())


# ----- one worker's search ------------------------------------------------------------------------
@dataclass
class SearchSpec:
    """Everything a Train worker needs; plain data so it travels in ``train_loop_config``."""

    out: str
    experiment: str
    gf: int = 16
    df: int = 16
    bottom_width: int = 4
    batch: int = 32
    epochs: int = 3
    n_critic: int = 5
    w_lr: float = 2e-4
    w_betas: tuple[float, float] = (0.0, 0.9)
    a_lr: float = 3e-4
    a_betas: tuple[float, float] = (0.5, 0.999)
    a_weight_decay: float = 1e-4
    ema_decay: float = 0.999
    gumbel: bool = False
    tau_start: float = 1.0
    tau_end: float = 0.1
    dataset: str = "shapes"
    data_root: str | None = None
    max_images: int = 640
    seed: int = 0
    eval_samples: int = 250
    extractor: str = "raygan-shapes-v1"  # resolved by the driver: every epoch scores alike
    inception_weights: str | None = None

    @property
    def resolution(self) -> int:
        return 8 * self.bottom_width


def _no_wrap(module: torch.nn.Module) -> torch.nn.Module:
    return module


class AdversarialSearch:
    """One worker's state: both supernets, both players' logits, four optimisers, the EMA G.

    ``wrap`` turns a module into what the forward passes run through (DDP in a Train worker,
    nothing in a single process). The four steps are methods of their own so that the update
    order is visible in :meth:`iteration` and each step's effect can be tested apart.
    """

    def __init__(
        self,
        spec: SearchSpec,
        device: torch.device,
        *,
        total_iterations: int,
        world_size: int = 1,
        noise_seed: int = 0,
        wrap: Callable[[torch.nn.Module], torch.nn.Module] = _no_wrap,
    ) -> None:
        self.spec = spec
        self.device = device
        torch.manual_seed(spec.seed)  # identical replicas (DDP also broadcasts rank 0's)
        g = nn.build_supernet(G_SPACE, width=spec.gf, bottom_width=spec.bottom_width)
        d = nn.build_supernet(D_SPACE, width=spec.df)
        alpha_g, alpha_d = ArchLogits(g), ArchLogits(d)
        self.g, self.d = g.to(device), d.to(device)
        self.alpha_g, self.alpha_d = alpha_g.to(device), alpha_d.to(device)
        self.g_ema = copy.deepcopy(self.g).eval().requires_grad_(False)
        weights = {"lr": spec.w_lr, "betas": tuple(spec.w_betas)}
        arch = {"lr": spec.a_lr, "betas": tuple(spec.a_betas), "weight_decay": spec.a_weight_decay}
        self.opt = {
            "g": torch.optim.Adam(self.g.parameters(), **weights),
            "d": torch.optim.Adam(self.d.parameters(), **weights),
            "g_arch": torch.optim.Adam(self.alpha_g.parameters(), **arch),
            "d_arch": torch.optim.Adam(self.alpha_d.parameters(), **arch),
        }
        self.G, self.D = wrap(self.g), wrap(self.d)
        self.arch_g, self.arch_d = wrap(self.alpha_g), wrap(self.alpha_d)
        self.batch = spec.batch // world_size  # this worker's share of the real batch
        self.total_iterations = total_iterations  # D iterations of the whole run (for tau)
        self.iterations = 0  # D iterations done
        self.g_steps = 0
        self.noise = torch.Generator(device=device).manual_seed(noise_seed)

    # -- ingredients
    def tau(self) -> float | None:
        """The Gumbel temperature now (None: plain softmax), annealed exponentially."""
        s = self.spec
        if not s.gumbel:
            return None
        progress = min(1.0, self.iterations / max(1, self.total_iterations))
        return s.tau_start * (s.tau_end / s.tau_start) ** progress

    def weights(self, arch: torch.nn.Module, *, grad: bool) -> dict[str, torch.Tensor]:
        """Mixed-op weights; without ``grad`` the logits are constants of this step."""
        with torch.set_grad_enabled(grad):
            return arch(self.tau(), self.noise)

    def z(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.g.latent_dim, device=self.device, generator=self.noise)

    def d_loss(self, real: torch.Tensor, d_weights: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.no_grad():
            fake = self.G(self.z(len(real)), self.weights(self.arch_g, grad=False))
        real_logits, fake_logits = self.D(torch.cat([real, fake]), d_weights).split(len(real))
        return d_hinge_loss(real_logits, fake_logits)

    def g_loss(self, g_weights: dict[str, torch.Tensor]) -> torch.Tensor:
        d_weights = self.weights(self.arch_d, grad=False)
        return g_hinge_loss(self.D(self.G(self.z(self.batch), g_weights), d_weights))

    def step(self, name: str, loss: torch.Tensor) -> float:
        """Backward and step only optimiser ``name``; other grads are cleared before use."""
        optimiser = self.opt[name]
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        return float(loss.detach())

    # -- the four steps
    def d_arch_step(self, real: torch.Tensor) -> float:
        return self.step("d_arch", self.d_loss(real, self.weights(self.arch_d, grad=True)))

    def d_weight_step(self, real: torch.Tensor) -> float:
        return self.step("d", self.d_loss(real, self.weights(self.arch_d, grad=False)))

    def g_arch_step(self) -> float:
        return self.step("g_arch", self.g_loss(self.weights(self.arch_g, grad=True)))

    def g_weight_step(self) -> float:
        loss = self.step("g", self.g_loss(self.weights(self.arch_g, grad=False)))
        self.g_steps += 1
        ema_update(
            self.g_ema, self.g, min(self.spec.ema_decay, (1 + self.g_steps) / (10 + self.g_steps))
        )
        return loss

    def iteration(self, real: torch.Tensor) -> dict[str, float]:
        """One D iteration on this worker's share of the real batch, and G every n_critic."""
        arch_half, weight_half = real.chunk(2)
        losses = {"d_arch": self.d_arch_step(arch_half), "d": self.d_weight_step(weight_half)}
        self.iterations += 1
        if self.iterations % self.spec.n_critic == 0:
            losses["g_arch"] = self.g_arch_step()
            losses["g"] = self.g_weight_step()
        return losses

    # -- what the search has found so far
    def genotypes(self) -> tuple[spaces.Genotype, spaces.Genotype]:
        return (
            derive(G_SPACE, self.alpha_g.probabilities()),
            derive(D_SPACE, self.alpha_d.probabilities()),
        )

    def digest(self) -> str:
        """A hash of every parameter (weights, logits, EMA G): equal on all DDP replicas."""
        h = hashlib.sha256()
        for module in (self.g, self.d, self.alpha_g, self.alpha_d, self.g_ema):
            for p in module.parameters():
                h.update(p.detach().cpu().numpy().tobytes())
        return h.hexdigest()[:16]

    def entropies(self) -> tuple[float, float]:
        return (
            mean_entropy(self.alpha_g.probabilities()),
            mean_entropy(self.alpha_d.probabilities()),
        )

    def scored_generator(self) -> MixedGenerator:
        """The EMA supernet with the current softmax weights, in eval mode (BN statistics)."""
        return MixedGenerator(self.g_ema, self.alpha_g.probabilities()).eval()

    # -- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "G": self.g.state_dict(),
            "D": self.d.state_dict(),
            "G_ema": self.g_ema.state_dict(),
            "alpha_g": self.alpha_g.state_dict(),
            "alpha_d": self.alpha_d.state_dict(),
            "opt": {name: opt.state_dict() for name, opt in self.opt.items()},
            "iterations": self.iterations,
            "g_steps": self.g_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.g.load_state_dict(state["G"])
        self.d.load_state_dict(state["D"])
        self.g_ema.load_state_dict(state["G_ema"])
        self.alpha_g.load_state_dict(state["alpha_g"])
        self.alpha_d.load_state_dict(state["alpha_d"])
        for name, opt in self.opt.items():
            opt.load_state_dict(state["opt"][name])
        self.iterations = int(state["iterations"])
        self.g_steps = int(state["g_steps"])


class MixedGenerator(torch.nn.Module):
    """A supernet generator with its mixed-op weights fixed: what IS/FID score every epoch."""

    def __init__(self, supernet: nn.Searchable, weights: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.supernet = supernet
        self.weights = weights
        self.latent_dim = supernet.latent_dim
        self.resolution = supernet.resolution

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.supernet(z, self.weights)


# ----- the Train worker -------------------------------------------------------------------------
def reference(spec: SearchSpec) -> Reference:
    """The real data IS/FID compare with: the training images themselves (same cap, seed)."""
    from raygan import metrics

    return metrics.Reference(
        spec.dataset,
        spec.resolution,
        num_images=spec.max_images,
        root=spec.data_root,
        seed=spec.seed,
    )


def epoch_row(search: AdversarialSearch, epoch: int, stats: dict[str, Any]) -> dict[str, Any]:
    """Rank 0's table row after ``epoch``: genotypes, entropies, IS/FID of the EMA generator."""
    from raygan import metrics

    spec = search.spec
    g, d = search.genotypes()
    g_entropy, d_entropy = search.entropies()
    scores = metrics.evaluate(
        search.scored_generator(),
        reference=reference(spec),
        num_samples=spec.eval_samples,
        extractor=spec.extractor,
        device=search.device,
        inception_weights=spec.inception_weights,
        seed=spec.seed,
    )
    g_edges = len(edge_specs(G_SPACE))
    d_edges = len(edge_specs(D_SPACE))
    return {
        "experiment": spec.experiment,
        "trial_id": f"epoch{epoch}",  # one row per epoch: common.append_once keys on it
        "strategy": STRATEGY,
        "generation": epoch,
        **spaces.table_columns("g", g),
        **spaces.table_columns("d", d),
        "gf": spec.gf,
        "df": spec.df,
        "resolution": spec.resolution,
        "dataset": spec.dataset,
        "is": scores["is"],
        "is_std": scores["is_std"],
        "fid": scores["fid"],
        "status": "ok"
        if math.isfinite(scores["is"]) and math.isfinite(scores["fid"])
        else "failed",
        "entropy": (g_entropy * g_edges + d_entropy * d_edges) / (g_edges + d_edges),
        "g_params": nn.count_params(
            nn.build_generator(g, width=spec.gf, bottom_width=spec.bottom_width)
        ),
        "d_params": nn.count_params(nn.build_discriminator(d, width=spec.df)),
        "budget_steps": search.g_steps,
        "seed": spec.seed,
        "extractor": scores["extractor"],
        "eval_samples": scores["num_samples"],
        "g_entropy": g_entropy,
        "d_entropy": d_entropy,
        "d_iterations": search.iterations,
        "tau": search.tau(),
        **stats,
    }


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """The Train worker: epochs of :meth:`AdversarialSearch.iteration`, a report per epoch."""
    import ray.train
    import ray.train.torch

    spec = SearchSpec(**config)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    state, start = None, 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = torch.load(
                os.path.join(folder, STATE_FILE), map_location=device, weights_only=True
            )
        start = int(state["epoch"])
    images = data.load(
        spec.dataset,
        root=spec.data_root,
        resolution=spec.resolution,
        max_images=spec.max_images,
        seed=spec.seed,
    )
    per_epoch = max(1, len(images) // spec.batch)
    # data order, z and Gumbel noise differ by rank (shards) and by resumption point
    seed = spec.seed * 1_000_003 + 1000 * start + rank
    batches = data.DeviceBatches(images[rank::world], device, seed=seed)
    search = AdversarialSearch(
        spec,
        device,
        total_iterations=spec.epochs * per_epoch,
        world_size=world,
        noise_seed=seed,
        wrap=_ddp,
    )
    if state is not None:
        search.load_state_dict(state)
        if rank == 0:  # rank 0 may have stopped between checkpoint and append
            common.append_once(spec.out, [json.loads(state["row"])])

    for epoch in range(start + 1, spec.epochs + 1):
        tic = time.perf_counter()
        for _ in range(per_epoch):
            losses = search.iteration(batches.sample(search.batch))
        wall = time.perf_counter() - tic
        stats = {
            "wall_s": wall,
            "img_per_s": per_epoch * spec.batch / wall,
            "resumed_from_epoch": start,
            "workers": world,
            **{f"{name}_loss": value for name, value in losses.items()},
        }
        row = None
        with tempfile.TemporaryDirectory() as tmp:
            saved = None
            if rank == 0:
                row = epoch_row(search, epoch, stats)
                torch.save(
                    {**search.state_dict(), "epoch": epoch, "row": json.dumps(row)},
                    os.path.join(tmp, STATE_FILE),
                )
                saved = ray.train.Checkpoint.from_directory(tmp)
            metrics = {"epoch": epoch, "replica_digest": search.digest(), **stats}
            ray.train.report(metrics, checkpoint=saved)
        if row is not None:
            common.append_once(spec.out, [row])


def _ddp(module: torch.nn.Module) -> torch.nn.Module:
    """Move to this worker's device and wrap in DDP (when there are several workers).

    Logit modules hold only their masks as buffers, which never change: not broadcast.
    """
    import ray.train.torch

    kwargs = {"broadcast_buffers": False} if isinstance(module, ArchLogits) else {}
    return ray.train.torch.prepare_model(module, parallel_strategy_kwargs=kwargs)


# ----- the driver -------------------------------------------------------------------------------
def train_storage(out: str) -> str:
    """Where Ray Train keeps this experiment's run (checkpoints): ``<out>/train``."""
    from raygan import cluster

    return cluster.storage_uri(storage.join(out, "train"))


def run_search(
    spec: SearchSpec,
    *,
    workers: int,
    use_gpu: bool = False,
    resources_per_worker: dict[str, float] | None = None,
    max_failures: int = 2,
) -> Any:
    """Run the search as one ``TorchTrainer`` job; returns its ``ray.train.Result``.

    A run of the same name and storage path resumes from its latest checkpoint (Ray Train's
    own restoration), which is what ``--resume`` relies on.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=asdict(spec),
        scaling_config=ScalingConfig(
            num_workers=workers, use_gpu=use_gpu, resources_per_worker=resources_per_worker
        ),
        run_config=RunConfig(
            name=RUN_NAME,
            storage_path=train_storage(spec.out),
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    return trainer.fit()


def spec_from_args(args: argparse.Namespace, extractor: str) -> SearchSpec:
    return SearchSpec(
        out=args.out,
        experiment=os.path.basename(args.out.rstrip("/")),
        gf=args.gf,
        df=args.df,
        bottom_width=common.bottom_width(args.dataset),
        batch=args.batch,
        epochs=args.epochs,
        n_critic=args.n_critic,
        gumbel=args.gumbel,
        tau_start=args.tau_start,
        tau_end=args.tau_end,
        dataset=args.dataset,
        data_root=args.data_root,
        max_images=args.max_images,
        seed=args.seed,
        eval_samples=args.eval_samples,
        extractor=extractor,
        inception_weights=args.inception_weights,
    )


def searched_epochs(out: str) -> pd.DataFrame:
    """This strategy's rows of ``out``'s table, one per finished epoch, in epoch order."""
    table = results.load(out)
    return table[table["strategy"] == STRATEGY].sort_values("generation")


def check_resumable(last: pd.Series, spec: SearchSpec) -> None:
    """``--resume`` must rebuild the networks the checkpoint holds, on the same data."""
    for column in ("gf", "df", "resolution", "dataset"):
        if last[column] != getattr(spec, column):
            raise UsageError(
                f"cannot resume: the search in {spec.out} has {column} {last[column]}, "
                f"the options give {getattr(spec, column)}; resume with the same settings"
            )


def write_best(args: argparse.Namespace, spec: SearchSpec) -> str:
    """``best.yaml``: the last epoch's derived G with AutoGAN-D (or the searched D)."""
    last = searched_epochs(spec.out).iloc[-1]
    g = spaces.Genotype.parse(last["g_genotype"])
    d = spaces.Genotype.parse(last["d_genotype"] if args.keep_searched_d else RETRAIN_D)
    path = storage.join(spec.out, "best.yaml")
    note = (
        f"AdversarialNAS: generator derived after epoch {int(last['generation'])}; "
        f"searched D {last['d_genotype']}\n"
        f"EMA supernet at that epoch: IS {last['is']:.3f}, FID {last['fid']:.3f} "
        f"({last['extractor']})\n"
        f"retrain: raygan train --genotype-file THIS_FILE (--width-scale for laptops)"
    )
    spaces.write_arch_file(
        path, spaces.Arch(g, d, args.final_gf, args.final_df, spec.bottom_width), comment=note
    )
    return path


def run(args: argparse.Namespace) -> int:
    validate(args)
    from raygan import metrics

    common.check_dataset(args)
    try:
        extractor = metrics.resolve_extractor(
            args.extractor, inception_weights=args.inception_weights
        )
    except FileNotFoundError as err:
        raise UsageError(str(err)) from None
    spec = spec_from_args(args, extractor.name)
    done = searched_epochs(args.out)
    if args.resume:
        if done.empty:
            raise UsageError(f"nothing to resume in {args.out}: no epoch of a search finished")
        check_resumable(done.iloc[-1], spec)
    elif not results.load(args.out).empty:
        raise UsageError(f"{args.out} already holds a search; use --resume or a new --out")
    if len(done) < spec.epochs:
        if not search_on_ray(args, spec):
            return 1
        finished = len(searched_epochs(args.out))
        if finished < spec.epochs:
            raise UsageError(
                f"the search in {args.out} had finished after {finished} epochs and Ray Train "
                f"does not extend a finished run; search longer in a new --out"
            )
    best = write_best(args, spec)
    print(
        f"[adversarialnas] done: {results.table_path(args.out)}, {best}; "
        f"analyse with: raygan analyze {args.out}"
    )
    return 0


def search_on_ray(args: argparse.Namespace, spec: SearchSpec) -> bool:
    """Start or join Ray, cache the reference statistics, run the job; False if it failed."""
    import ray.train

    from raygan import cluster, metrics

    cluster.connect(args.address)
    # the reference statistics once, here, rather than by rank 0 inside the job
    extractor = metrics.resolve_extractor(spec.extractor, inception_weights=spec.inception_weights)
    metrics.reference_statistics(reference(spec), extractor)
    print(
        f"[adversarialnas] {spec.epochs} epochs on {args.workers} worker(s), "
        f"batch {spec.batch}, gf {spec.gf}, df {spec.df}, {spec.dataset}",
        flush=True,
    )
    try:
        run_search(
            spec,
            workers=args.workers,
            use_gpu=args.gpus > 0,
            resources_per_worker={"CPU": args.cpus, **({"GPU": args.gpus} if args.gpus else {})},
            max_failures=args.max_failures,
        )
    except ray.train.TrainingFailedError as err:
        print(
            f"[adversarialnas] the search failed: {err}\nContinue from the last finished epoch "
            f"with the same command plus --resume."
        )
        return False
    return True


# ----- analysis ---------------------------------------------------------------------------------
def epochs_table(df: pd.DataFrame) -> pd.DataFrame:
    """One line per epoch: entropies, scores, how many genes changed, the genotypes."""
    rows = df.sort_values("generation").reset_index(drop=True)
    extra = results.extra(rows)
    genes = [
        spaces.Genotype.parse(g).flat() + spaces.Genotype.parse(d).flat()
        for g, d in zip(rows["g_genotype"], rows["d_genotype"], strict=True)
    ]
    changed = [0] + [
        sum(a != b for a, b in zip(x, y, strict=True)) for x, y in itertools.pairwise(genes)
    ]
    return pd.DataFrame(
        {
            "epoch": rows["generation"].astype(int),
            "g_entropy": extra.get("g_entropy", rows["entropy"]),
            "d_entropy": extra.get("d_entropy", rows["entropy"]),
            "is": rows["is"],
            "fid": rows["fid"],
            "changed": changed,
            "g_genotype": rows["g_genotype"],
            "d_genotype": rows["d_genotype"],
        }
    )


def analyze(df: pd.DataFrame, out_dir: str) -> str:
    table = epochs_table(df)
    extractor = df["extractor"].dropna().unique()
    lines = [
        f"AdversarialNAS: {len(table)} epochs; IS/FID of the EMA supernet generator "
        f"({', '.join(extractor) or 'no extractor'}); changed = genes that differ from the "
        f"previous epoch's genotypes",
        table.to_string(index=False, float_format=lambda x: f"{x:.3f}"),
    ]
    if not table.empty:
        last = table.iloc[-1]
        lines.append(
            f"derived after epoch {last['epoch']}: G {last['g_genotype']}\n"
            f"{'':>23}D {last['d_genotype']}"
        )
    written = plot_curves(table, os.path.join(out_dir, "adversarialnas_curves.png"))
    written += plot_genotypes(table, os.path.join(out_dir, "adversarialnas_genotypes.png"))
    lines += [f"plot: {p}" for p in written]
    return "\n".join(lines)


def plot_curves(table: pd.DataFrame, path: str) -> list[str]:
    """Entropy of G's and D's architecture weights, IS and FID, per epoch."""
    from matplotlib.ticker import MaxNLocator

    from raygan import plots

    plt = plots._pyplot()
    if plt is None or table.empty:
        return []
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    axes[0].plot(table["epoch"], table["g_entropy"], "o-", label="G")
    axes[0].plot(table["epoch"], table["d_entropy"], "s-", label="D")
    axes[0].legend()
    axes[1].plot(table["epoch"], table["is"], "o-", color="tab:green")
    axes[2].plot(table["epoch"], table["fid"], "o-", color="tab:red")
    titles = ("architecture-weight entropy (nats)", "IS (up)", "FID (down)")
    for ax, title in zip(axes, titles, strict=True):
        ax.set(xlabel="epoch", title=title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.suptitle("AdversarialNAS search, EMA supernet generator")
    return plots._save(fig, path)


def plot_genotypes(table: pd.DataFrame, path: str) -> list[str]:
    """Heatmaps of the op every edge chose, per epoch (G left, D right); ``none`` is grey."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from raygan import plots

    plt = plots._pyplot()
    if plt is None or table.empty:
        return []
    names = list(dict.fromkeys(name for ops in nn.OP_LISTS.values() for name in ops))
    tab20 = plt.get_cmap("tab20").colors
    colours = [(0.85, 0.85, 0.85), *tab20[::2], *tab20[1::2]][: len(names)]
    cmap = ListedColormap(colours)
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 5 + 0.5 * len(table)), 9))
    for ax, column, space, player in zip(
        axes, ("g_genotype", "d_genotype"), (G_SPACE, D_SPACE), "GD", strict=True
    ):
        specs = edge_specs(space)
        cells = [spaces.Genotype.parse(text).cells for text in table[column]]
        grid = np.array([[names.index(e.choices[c[e.cell][e.gene]]) for e in specs] for c in cells])
        ax.imshow(grid.T, cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5, aspect="auto")
        ax.set_yticks(range(len(specs)), [f"c{e.cell + 1} {e.name}" for e in specs], fontsize=7)
        ax.set_xticks(range(len(table)), table["epoch"].tolist(), fontsize=7)
        ax.set(xlabel="epoch", title=f"{player} ({space})")
        used = sorted({names.index(name) for e in specs for name in e.choices})
        ax.legend(
            handles=[Patch(color=colours[i], label=names[i]) for i in used],
            loc="upper center",
            bbox_to_anchor=(0.5, -0.05),
            ncol=3,
            fontsize=8,
        )
    fig.suptitle("AdversarialNAS: op chosen per edge after each epoch")
    return plots._save(fig, path)
