"""Mixed-op search (AdversarialNAS): architecture logits, the mixed generator, derivation.

The logits are modules of their own, apart from the supernets they weight, so that DDP averages
their gradients like any weight's and their optimisers never see a network weight (DARTS keeps
its architecture parameters apart from the network in the same way). Deriving a genotype from
them and scoring the mixed supernet live here, next to the networks; the architecture *step*
is :class:`raygan.train.Architect`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from raygan import spaces
from raygan.nn.arch import Searchable, edge_specs


class ArchLogits(torch.nn.Module):
    """One player's architecture logits, one parameter per edge group (cells, edges, choices).

    A module of its own so that DDP averages its gradients like any weight's, and so that its
    optimiser never sees a network weight. Choices a gene does not allow (the first D cell's
    input edges are convs only) are masked to probability 0 before every softmax.
    """

    def __init__(self, supernet: Searchable) -> None:
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
    per_edge = per_edge.detach()
    return float(per_edge.mean())


class MixedGenerator(torch.nn.Module):
    """A supernet generator with its mixed-op weights fixed: what IS/FID score every epoch.

    It is called as its supernet is, without the weights: ``M(z)``, or ``M(z, y)`` when
    the supernet is class-conditional (``num_classes`` mirrors the supernet's).
    """

    def __init__(self, supernet: Searchable, weights: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.supernet = supernet
        self.weights = weights
        self.latent_dim = supernet.latent_dim
        self.resolution = supernet.resolution
        self.num_classes: int | None = getattr(supernet, "num_classes", None)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.supernet(z, self.weights) if y is None else self.supernet(z, y, self.weights)
