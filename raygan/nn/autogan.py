"""AutoGAN's generator space (``autogan``) and its fixed discriminator (``autogan_d``).

A cell has two 3x3 convs; the first upsamples x2. One choice set covers the cell: conv order
(``post``: up -> conv -> norm -> ReLU; ``pre``: norm -> ReLU -> up -> conv), norm, up mode,
a shortcut (1x1 conv on the upsampled cell input, added to the output) and, in cells 2 and 3,
a bitmask of earlier cells whose skip-out is added before the second conv (most significant
bit = earliest cell). A cell's skip-out is its first conv's output *after* its skip-ins.
The four-cell space ``autogan4`` (:class:`AutoGanGenerator4`) adds a cell 4 whose mask covers
cells 1 to 3.

In the supernet (AutoGAN's shared GAN) the weights are shared by all architectures within each
op choice: each conv order has its own convs, each up mode its own (transposed-conv) weights,
BatchNorm its own affine parameters; the shortcut and the skip-in convs exist once. The search is
single path (a genotype per forward); ``n_cells`` lets multi-level search generate from the first
one or two cells at 8 or 16 px: per forward in the supernet, or for good in a fixed network built
with ``n_cells`` (only those cells exist, so it inherits just their weights and ``resolution`` is
``bottom_width * 2**n_cells``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from raygan import spaces
from raygan.nn.arch import Arch, Searchable
from raygan.nn.blocks import DisBlock, DisTail, OptimizedDisBlock, extra_downsampling, to_rgb
from raygan.nn.choice import candidates
from raygan.nn.layers import batch_norm, conv2d, conv_transpose2d, linear
from raygan.nn.resolution import discriminator_downsamples
from raygan.spaces import Gene, Genotype


class Interpolate(nn.Module):
    """Parameter-free upsampling by ``scale``."""

    def __init__(self, mode: str, scale: int) -> None:
        super().__init__()
        self.mode = mode
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale, mode=self.mode)


def _interpolate(mode: str) -> Callable[[int, int], nn.Module]:
    return lambda channels, scale: Interpolate(mode, scale)


def _deconv(channels: int, scale: int) -> nn.Module:
    """Transposed convs (k 2, stride 2), one per doubling: x2 for a cell, x4 for a far skip-in."""
    steps = scale.bit_length() - 1
    return nn.Sequential(*(conv_transpose2d(channels, channels, 2) for _ in range(steps)))


RESIZES: dict[str, Callable[[int, int], nn.Module]] = {
    "bilinear": _interpolate("bilinear"),
    "nearest": _interpolate("nearest"),
    "deconv": _deconv,
}
"""Up modes by name: factory ``(channels, scale) -> module``."""

NORMS: dict[str, Callable[[int], nn.Module]] = {
    "none": lambda channels: nn.Identity(),
    "batch": batch_norm,
    "instance": partial(nn.InstanceNorm2d, affine=False),
}
"""Norms by name: factory ``(channels) -> module``."""


class GenConv(nn.Module):
    """One 3x3 conv of a cell with its norm candidates and, if it upsamples, its up candidates."""

    def __init__(self, width: int, norms: nn.ModuleDict, ups: nn.ModuleDict | None) -> None:
        super().__init__()
        self.norm = norms
        self.up = ups
        self.conv = conv2d(width, width, 3)

    def _up(self, x: torch.Tensor, up: str) -> torch.Tensor:
        return x if self.up is None else self.up[up](x)


class PostActivation(GenConv):
    def forward(self, x: torch.Tensor, norm: str, up: str) -> torch.Tensor:
        return F.relu(self.norm[norm](self.conv(self._up(x, up))))


class PreActivation(GenConv):
    def forward(self, x: torch.Tensor, norm: str, up: str) -> torch.Tensor:
        return self.conv(self._up(F.relu(self.norm[norm](x)), up))


CONV_ORDERS: dict[str, type[GenConv]] = {"post": PostActivation, "pre": PreActivation}


class Resized1x1(nn.Module):
    """Resize by the cell's up mode, then a 1x1 conv: the shortcut and every skip-in."""

    def __init__(self, width: int, ups: nn.ModuleDict) -> None:
        super().__init__()
        self.up = ups
        self.conv = conv2d(width, width, 1)

    def forward(self, x: torch.Tensor, up: str) -> torch.Tensor:
        return self.conv(self.up[up](x))


def skip_sources(cell: int, mask: int) -> list[int]:
    """Earlier cells (0-based) whose skip-out cell ``cell`` adds; MSB of ``mask`` = cell 0."""
    return [j for j in range(cell) if mask >> (cell - 1 - j) & 1]


class AutoGanCell(nn.Module):
    """Cell ``index`` (0-based): its convs per conv order, a shortcut, a skip-in per earlier cell.

    A fixed cell (``chosen`` given) has only its chosen conv order, norm and up mode, and only
    the shortcut and skip-ins its genes switch on.
    """

    def __init__(
        self, index: int, genes: Sequence[Gene], chosen: Sequence[int] | None, width: int
    ) -> None:
        super().__init__()
        self.index = index
        self.genes = tuple(genes)
        conv_g, norm_g, up_g, shortcut_g = genes[:4]
        conv, norm, up, shortcut, *skip = chosen or [None] * len(genes)

        def up_candidates(scale: int) -> nn.ModuleDict:
            return candidates(up_g, up, lambda mode: RESIZES[mode](width, scale))

        def convs(upsample: bool) -> nn.ModuleDict:
            return candidates(
                conv_g,
                conv,
                lambda order: CONV_ORDERS[order](
                    width,
                    candidates(norm_g, norm, lambda name: NORMS[name](width)),
                    up_candidates(2) if upsample else None,
                ),
            )

        self.conv1 = convs(upsample=True)
        self.conv2 = convs(upsample=False)
        has_shortcut = shortcut is None or shortcut_g.choices[shortcut] == "yes"
        self.shortcut = Resized1x1(width, up_candidates(2)) if has_shortcut else None
        sources = range(index) if chosen is None else skip_sources(index, skip[0] if skip else 0)
        self.skip_in = nn.ModuleDict(
            {f"cell{j + 1}": Resized1x1(width, up_candidates(2 ** (index - j))) for j in sources}
        )

    def forward(
        self, x: torch.Tensor, skips: Sequence[torch.Tensor], genes: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (skip-out, output)."""
        conv, norm, up, shortcut = (
            g.choices[v] for g, v in zip(self.genes[:4], genes[:4], strict=True)
        )
        h = self.conv1[conv](x, norm, up)
        for j in skip_sources(self.index, genes[4] if self.index else 0):
            h = h + self.skip_in[f"cell{j + 1}"](skips[j], up)
        out = self.conv2[conv](h, norm, up)
        if shortcut == "yes":
            out = out + self.shortcut(x, up)
        return h, out


class AutoGanGenerator(Searchable):
    """Linear(latent -> bottom_width^2 x width) -> 3 cells -> BN/ReLU/conv3x3/tanh head.

    ``n_cells`` below the space's cells builds only the first cells (a multi-level search
    stage's candidate); ``None``: all of them.
    """

    space_name = "autogan"
    mixable = False
    latent_dim = 128

    def __init__(
        self,
        genotype: Genotype | None,
        *,
        width: int,
        bottom_width: int = 4,
        n_cells: int | None = None,
    ) -> None:
        super().__init__(genotype)
        cell_genes = spaces.get(self.space_name).cells
        n_cells = len(cell_genes) if n_cells is None else n_cells
        if not 1 <= n_cells <= len(cell_genes):
            raise ValueError(f"n_cells must be 1 to {len(cell_genes)}, got {n_cells}")
        self.width = width
        self.bottom_width = bottom_width
        self.resolution = bottom_width * 2**n_cells
        self.l1 = linear(self.latent_dim, bottom_width**2 * width)
        self.cells = nn.ModuleList(
            AutoGanCell(i, genes, None if genotype is None else genotype.cells[i], width)
            for i, genes in enumerate(cell_genes[:n_cells])
        )
        self.head = to_rgb(width)

    def forward(
        self, z: torch.Tensor, arch: Arch = None, *, n_cells: int | None = None
    ) -> torch.Tensor:
        """Images in [-1, 1]; ``n_cells`` below the cells built stops early (8 or 16 px at
        bottom width 4) for multi-level search, and the genes of the cells not run are ignored."""
        n_cells = len(self.cells) if n_cells is None else n_cells
        if not 1 <= n_cells <= len(self.cells):
            raise ValueError(f"n_cells must be 1 to {len(self.cells)} (cells built), got {n_cells}")
        picks = self.picks(arch)
        h = self.l1(z).view(-1, self.width, self.bottom_width, self.bottom_width)
        skips: list[torch.Tensor] = []
        for cell, genes in zip(self.cells[:n_cells], picks[:n_cells], strict=True):
            skip, h = cell(h, skips, genes)
            skips.append(skip)
        return self.head(h)


class AutoGanGenerator4(AutoGanGenerator):
    """The ``autogan4`` space: four cells (64 px from bottom width 4, 128 from 8).

    Cell 4 may add the skip-outs of any of cells 1 to 3 (its ``skip4`` mask, 8 choices), as
    each AutoGAN cell may add those of every earlier cell: the paper's rule carried one cell
    further rather than a window of the nearest cells, so the four-cell space holds every
    three-cell architecture as its first cells. :func:`skip_sources` reads the mask as for
    cell 3 (most significant bit = earliest cell); a skip-in from cell 1 is resized x8 by the
    cell's up mode (three transposed convs for ``deconv``).
    """

    space_name = "autogan4"


class AutoGanDiscriminator(Searchable):
    """AutoGAN-D: OptimizedDisBlock (down) -> DisBlock (down) -> 2 DisBlocks -> tail.

    Above 32 px (``resolution``), fixed residual down blocks (``extra``) follow the first
    block, one per doubling (:mod:`raygan.nn.resolution`): the first block still reads the
    image, and the published blocks after it see the sizes they see at 32 px.
    """

    space_name = "autogan_d"

    def __init__(
        self, genotype: Genotype | None = None, *, width: int, resolution: int = 32
    ) -> None:
        super().__init__(genotype or Genotype(self.space_name, ()))
        self.resolution = resolution
        self.blocks = nn.Sequential(
            OptimizedDisBlock(3, width),
            DisBlock(width, width, downsample=True),
            DisBlock(width, width, downsample=False),
            DisBlock(width, width, downsample=False),
        )
        self.extra = extra_downsampling(width, discriminator_downsamples(resolution))
        self.tail = DisTail(width)

    def forward(
        self, x: torch.Tensor, arch: Arch = None, *, n_blocks: int | None = None
    ) -> torch.Tensor:
        """Logits; ``n_blocks`` (1 to 3) runs only the first ``n_blocks`` of the first three
        blocks, then the last one: AutoGAN's multi-level search grows D with the stage
        (stage 0 at 8 px: block 1 then block 4), each block keeping its weights as it joins.
        The extra blocks of a larger resolution always run, right after block 1."""
        self.picks(arch)  # validates: the space has one architecture
        n_blocks = 3 if n_blocks is None else n_blocks
        if not 1 <= n_blocks <= 3:
            raise ValueError(f"n_blocks must be 1 to 3, got {n_blocks}")
        first, *middle, last = self.blocks
        for block in [first, self.extra, *middle[: n_blocks - 1], last]:
            x = block(x)
        return self.tail(x)
