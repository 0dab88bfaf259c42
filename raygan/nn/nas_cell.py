"""The ``nas_cell_g`` generator of AdversarialNAS and EAGAN.

The latent (120) is split into equal chunks; chunk i goes through a Linear to a map at
``bottom_width * 2**i``: the first is cell 1's input, the others are added to the inputs of
cells 2 and 3. A cell: n0 = up0(x), n1 = up1(x), n2 = op(n0) + op(n1) + a 1x1 conv of each
earlier cell's n2 resized to this size (cell 2 bilinear, cell 3 nearest); n3 = op(n0) + op(n1)
+ op(n2). The cell outputs n3; its skip-out is n2 (skip-ins included).

``latent_chunks``: AdversarialNAS uses three chunks of 40 on CIFAR-10 and two of 60 on STL-10
(bottom width 6), which is the default. EAGAN's released STL-10 generator keeps three chunks of
40 at bottom width 6 (maps at 6, 12, 24 px); only that structure has the 11.55M parameters the
EAGAN paper reports, so its zoo entry asks for ``latent_chunks=3``. Every other bottom width
(8 for 64 px) takes three chunks too, one per cell as on CIFAR-10.

``nas_cell_g4`` (:class:`NasCellGenerator4`) is the same generator with a fourth cell (64 px
from bottom width 4, 128 from 8). It takes the same default chunks, so its first three cells
get their noise as the three-cell generator's do and the fourth gets none: a fourth chunk
(``latent_chunks=4``, 30 each) would map 30 numbers to a (bottom_width x 8)^2 x width map, at
128 px a Linear of about 32M parameters at width 256, more than the rest of the network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from raygan import spaces
from raygan.nn.arch import Arch, Searchable
from raygan.nn.blocks import to_rgb
from raygan.nn.choice import Pick, make_edges
from raygan.nn.layers import conv2d, linear
from raygan.spaces import Gene, Genotype

SKIP_RESIZE = ("nearest", "bilinear", "nearest", "nearest")
"""Per receiving cell, how earlier cells' skip-outs are resized (cell 1 receives none).

The papers' three cells fix the first three; the fourth cell of ``nas_cell_g4`` resizes as
the papers' last cell does (nearest).
"""


class NasCell(nn.Module):
    def __init__(
        self, index: int, genes: Sequence[Gene], chosen: Sequence[int] | None, width: int
    ) -> None:
        super().__init__()
        self.skip_mode = SKIP_RESIZE[index]
        self.edges = make_edges(genes, chosen, [width] * len(genes), width)
        self.skip_in = nn.ModuleList(conv2d(width, width, 1) for _ in range(index))

    def forward(
        self, x: torch.Tensor, skips: Sequence[torch.Tensor], picks: Sequence[Pick]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (skip-out, output)."""
        up0, up1, n0_n2, n1_n2, n0_n3, n1_n3, n2_n3 = self.edges.values()
        p_up0, p_up1, p02, p12, p03, p13, p23 = picks
        n0 = up0(x, p_up0)
        n1 = up1(x, p_up1)
        n2 = n0_n2(n0, p02) + n1_n2(n1, p12)
        for conv, skip in zip(self.skip_in, skips, strict=True):
            n2 = n2 + conv(F.interpolate(skip, size=n2.shape[-2:], mode=self.skip_mode))
        n3 = n0_n3(n0, p03) + n1_n3(n1, p13) + n2_n3(n2, p23)
        return n2, n3


class NasCellGenerator(Searchable):
    space_name = "nas_cell_g"
    latent_dim = 120

    def __init__(
        self,
        genotype: Genotype | None,
        *,
        width: int,
        bottom_width: int = 4,
        latent_chunks: int | None = None,
    ) -> None:
        super().__init__(genotype)
        cell_genes = spaces.get(self.space_name).cells
        chunks = latent_chunks if latent_chunks is not None else 2 if bottom_width == 6 else 3
        if not 1 <= chunks <= len(cell_genes) or self.latent_dim % chunks:
            raise ValueError(
                f"latent_chunks must divide {self.latent_dim} and be 1..{len(cell_genes)}"
            )
        self.width = width
        self.bottom_width = bottom_width
        self.resolution = bottom_width * 2 ** len(cell_genes)
        self.latent = nn.ModuleList(
            linear(self.latent_dim // chunks, (bottom_width * 2**i) ** 2 * width)
            for i in range(chunks)
        )
        self.cells = nn.ModuleList(
            NasCell(i, genes, None if genotype is None else genotype.cells[i], width)
            for i, genes in enumerate(cell_genes)
        )
        self.head = to_rgb(width)

    def forward(self, z: torch.Tensor, arch: Arch = None) -> torch.Tensor:
        picks = self.picks(arch)
        parts = z.split(self.latent_dim // len(self.latent), dim=1)
        noise = [
            fc(part).view(-1, self.width, self.bottom_width * 2**i, self.bottom_width * 2**i)
            for i, (fc, part) in enumerate(zip(self.latent, parts, strict=True))
        ]
        h = noise[0]
        skips: list[torch.Tensor] = []
        for i, (cell, cell_picks) in enumerate(zip(self.cells, picks, strict=True)):
            if 0 < i < len(noise):
                h = h + noise[i]
            skip, h = cell(h, skips, cell_picks)
            skips.append(skip)
        return self.head(h)


class NasCellGenerator4(NasCellGenerator):
    """The ``nas_cell_g4`` space: four cells of ``nas_cell_g`` (see the module doc)."""

    space_name = "nas_cell_g4"
