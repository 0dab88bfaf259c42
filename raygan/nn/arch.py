"""The architecture argument of a network, and the list of its searchable edges.

Every network in :mod:`raygan.nn` is a :class:`Searchable`: built from a genotype it is a fixed
network, built from ``None`` it is the supernet of its space. Its forward takes an optional
architecture, in one of two forms:

- a :class:`~raygan.spaces.Genotype` of its space: one path through the supernet (the shared
  weights of AutoGAN and EAGAN); a fixed network accepts only its own genotype;
- a mapping ``{group: weights}`` with one tensor per edge group of shape
  ``(cells, edges per cell, choices)`` as :meth:`Searchable.arch_shapes` lists them (for the
  nas_cell spaces: G ``normal`` (3, 5, 7) and ``up`` (3, 2, 3); D ``normal`` (4, 5, 7) and
  ``down`` (4, 2, 6)): every edge is a mixed op (AdversarialNAS). The weights are used as given
  (softmax, Gumbel, masking are the search code's choice; architecture logits are not part of
  these modules).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from raygan import spaces
from raygan.nn.choice import Pick
from raygan.nn.conditional import labels_hook
from raygan.nn.ops import op_list_of
from raygan.spaces import Genotype

Arch = Genotype | Mapping[str, torch.Tensor] | None


@dataclass(frozen=True)
class EdgeSpec:
    """One searchable decision, in genome order.

    ``group`` is the op list the edge chooses from (``normal``, ``up``, ``down``) or, for genes
    that are not op lists (the autogan space), the gene's name; ``slot`` is its position among
    the cell's edges of that group, i.e. its row in the group's mixed-op weight tensor.
    ``allowed`` are the choice indices the gene permits; the others must get zero weight.
    """

    cell: int
    gene: int
    name: str
    group: str
    slot: int
    choices: tuple[str, ...]
    allowed: tuple[int, ...]


@functools.cache
def edge_specs(space_name: str) -> tuple[EdgeSpec, ...]:
    """Every edge of a space, cell by cell, gene by gene."""
    specs = []
    for c, genes in enumerate(spaces.get(space_name).cells):
        slots: Counter[str] = Counter()
        for p, gene in enumerate(genes):
            group = op_list_of(gene.choices) or gene.name
            specs.append(EdgeSpec(c, p, gene.name, group, slots[group], gene.choices, gene.allow))
            slots[group] += 1
    return tuple(specs)


class Searchable(nn.Module):
    """Base of every network: a fixed network (``genotype`` given) or its space's supernet."""

    space_name: ClassVar[str]
    mixable: ClassVar[bool] = True
    """Whether the space can be searched with mixed ops (False: single path only)."""
    num_classes: int | None = None
    """Classes of a class-conditional network (:mod:`raygan.nn.conditional`), else None."""

    def __init__(self, genotype: Genotype | None) -> None:
        super().__init__()
        if genotype is not None:
            spaces.get(self.space_name).validate(genotype)
        self.genotype = genotype
        # the classes of a conditional network, or a clear error for an unconditional one
        self.register_forward_pre_hook(labels_hook, with_kwargs=True)

    @property
    def is_supernet(self) -> bool:
        return self.genotype is None

    def edges(self) -> tuple[EdgeSpec, ...]:
        """The space's searchable edges in genome order, with their candidates."""
        return edge_specs(self.space_name)

    def arch_shapes(self) -> dict[str, tuple[int, int, int]]:
        """Shape of the mixed-op weight tensor per edge group: (cells, edges per cell, choices)."""
        cells = len(spaces.get(self.space_name).cells)
        shapes: dict[str, tuple[int, int, int]] = {}
        for e in self.edges():
            _, slots, _ = shapes.get(e.group, (cells, 0, len(e.choices)))
            shapes[e.group] = (cells, max(slots, e.slot + 1), len(e.choices))
        return shapes

    def arch_masks(self) -> dict[str, torch.Tensor]:
        """Per group, True where a choice is allowed: mask logits with it before a softmax."""
        masks = {g: torch.zeros(shape, dtype=torch.bool) for g, shape in self.arch_shapes().items()}
        for e in self.edges():
            masks[e.group][e.cell, e.slot, list(e.allowed)] = True
        return masks

    def picks(self, arch: Arch) -> list[list[Pick]]:
        """What each gene of each cell is told to do for ``arch`` (see the module doc)."""
        if arch is None:
            if self.genotype is None:
                raise ValueError(
                    f"the {self.space_name} supernet needs an architecture: "
                    "a Genotype or mixed-op weights"
                )
            arch = self.genotype
        if isinstance(arch, Genotype):
            spaces.get(self.space_name).validate(arch)
            if self.genotype is not None and arch != self.genotype:
                raise ValueError(
                    f"this network was built for {self.genotype} and cannot run {arch}; "
                    "build the supernet to run several architectures"
                )
            return [list(cell) for cell in arch.cells]
        return self._mixed_picks(arch)

    def _mixed_picks(self, weights: Mapping[str, torch.Tensor]) -> list[list[Pick]]:
        if not self.mixable:
            raise TypeError(f"the {self.space_name} space is searched single-path: pass a Genotype")
        if not self.is_supernet:
            raise ValueError("mixed-op weights need a supernet; this is a fixed network")
        shapes = self.arch_shapes()
        got = {g: tuple(w.shape) for g, w in weights.items()}
        if got != shapes:
            raise ValueError(f"mixed-op weights of shapes {got}; expected {shapes}")
        cells = spaces.get(self.space_name).cells
        picks: list[list[Pick]] = [[None] * len(genes) for genes in cells]
        for e in self.edges():
            picks[e.cell][e.gene] = weights[e.group][e.cell, e.slot]
        return picks
