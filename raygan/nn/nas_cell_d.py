"""The cell discriminators: EAGAN's (``eagan_d``) and AdversarialNAS's (``adversarialnas_d``).

Both are spectrally normalised everywhere and end in ReLU -> sum pool -> SN Linear(df, 1)
without bias (the authors' code has no bias on either; METHODS.md leaves it open).

Above 32 px (``resolution``) both add fixed residual down blocks before their searched cells,
one per doubling (:mod:`raygan.nn.resolution`), so the cells run at the sizes they run at
32 px and the genotypes keep their meaning. The blocks are the same modules, under the same
names (``extra``), in a supernet and in its fixed networks, so inheritance is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from raygan import spaces
from raygan.nn.arch import Arch, Searchable
from raygan.nn.blocks import DisTail, OptimizedDisBlock, extra_downsampling
from raygan.nn.choice import Pick, make_edges
from raygan.nn.resolution import discriminator_downsamples
from raygan.spaces import ABSENT, Gene, Genotype


def _absent(pick: Pick) -> bool:
    return isinstance(pick, int) and pick == ABSENT


class EaganDisCell(nn.Module):
    """Genes [n0->n1, n0->n2, n1->n2, n1->n3, n0->n3, down(n2), down(n3)] with node0 = input.

    n0->n3 has no leading ReLU. Absent down genes (-1): the cell outputs n2 + n3 unpooled.
    """

    def __init__(self, genes: Sequence[Gene], chosen: Sequence[int] | None, width: int) -> None:
        super().__init__()
        n = len(genes)
        relu = [gene.name != "n0_n3" for gene in genes]
        self.edges = make_edges(genes, chosen, [width] * n, width, sn=[True] * n, relu=relu)

    def forward(self, x: torch.Tensor, picks: Sequence[Pick]) -> torch.Tensor:
        n0_n1, n0_n2, n1_n2, n1_n3, n0_n3, down2, down3 = self.edges.values()
        p01, p02, p12, p13, p03, p_down2, p_down3 = picks
        n1 = n0_n1(x, p01)
        n2 = n0_n2(x, p02) + n1_n2(n1, p12)
        n3 = n1_n3(n1, p13) + n0_n3(x, p03)
        if _absent(p_down2):
            return n2 + n3
        return down2(n2, p_down2) + down3(n3, p_down3)


class EaganDiscriminator(Searchable):
    """Fixed OptimizedDisBlock (3 -> df, down) -> 3 searched DisCells -> tail; above 32 px
    the extra down blocks come between the stem and the cells."""

    space_name = "eagan_d"

    def __init__(self, genotype: Genotype | None, *, width: int, resolution: int = 32) -> None:
        super().__init__(genotype)
        self.resolution = resolution
        self.stem = OptimizedDisBlock(3, width)
        self.cells = nn.ModuleList(
            EaganDisCell(genes, None if genotype is None else genotype.cells[i], width)
            for i, genes in enumerate(spaces.get(self.space_name).cells)
        )
        self.extra = extra_downsampling(width, discriminator_downsamples(resolution))
        self.tail = DisTail(width)

    def forward(self, x: torch.Tensor, arch: Arch = None) -> torch.Tensor:
        h = self.extra(self.stem(x))
        for cell, picks in zip(self.cells, self.picks(arch), strict=True):
            h = cell(h, picks)
        return self.tail(h)


class AdversarialNasDisCell(nn.Module):
    """Genes [e0, e1, e2, e3, e4, down0, down1]: node0 = e0(x); node1 = e1(x) + e3(node0);
    node2 = e2(x) + e4(node0); out = down0(node1) + down1(node2).

    The first cell reads the network's input (``c_input`` channels: the image's 3, or the
    extra down blocks' ``width`` above 32 px): its e0..e2 are convs without leading ReLU.
    """

    def __init__(
        self,
        index: int,
        genes: Sequence[Gene],
        chosen: Sequence[int] | None,
        width: int,
        c_input: int,
    ) -> None:
        super().__init__()
        reads_input = [p < 3 for p in range(len(genes))]
        c_in = [c_input if index == 0 and r else width for r in reads_input]
        relu = [index > 0 or not r for r in reads_input]
        sn = [True] * len(genes)
        self.edges = make_edges(genes, chosen, c_in, width, sn=sn, relu=relu)

    def forward(self, x: torch.Tensor, picks: Sequence[Pick]) -> torch.Tensor:
        e0, e1, e2, e3, e4, down0, down1 = self.edges.values()
        p0, p1, p2, p3, p4, p_down0, p_down1 = picks
        node0 = e0(x, p0)
        node1 = e1(x, p1) + e3(node0, p3)
        node2 = e2(x, p2) + e4(node0, p4)
        return down0(node1, p_down0) + down1(node2, p_down1)


class AdversarialNasDiscriminator(Searchable):
    """4 searched down-cells (32 -> 2 px at CIFAR-10) -> tail.

    Above 32 px the extra down blocks come first and read the image (the first an
    OptimizedDisBlock 3 -> df), so the first cell reads their df channels instead: its input
    edges stay the convs without leading ReLU that the genotype chose.
    """

    space_name = "adversarialnas_d"

    def __init__(self, genotype: Genotype | None, *, width: int, resolution: int = 32) -> None:
        super().__init__(genotype)
        self.resolution = resolution
        extra = discriminator_downsamples(resolution)
        c_input = width if extra else 3
        self.cells = nn.ModuleList(
            AdversarialNasDisCell(
                i, genes, None if genotype is None else genotype.cells[i], width, c_input
            )
            for i, genes in enumerate(spaces.get(self.space_name).cells)
        )
        self.extra = extra_downsampling(width, extra, reads_image=True)
        self.tail = DisTail(width)

    def forward(self, x: torch.Tensor, arch: Arch = None) -> torch.Tensor:
        h = self.extra(x)
        for cell, picks in zip(self.cells, self.picks(arch), strict=True):
            h = cell(h, picks)
        return self.tail(h)
