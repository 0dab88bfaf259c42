"""How each image size is reached: a generator's cells and bottom width, a discriminator's
extra downsampling.

The papers run CIFAR-10 at 32 px (bottom width 4) and STL-10 at 48 px (bottom width 6) with the
same three generator cells, each doubling the size, and discriminators whose searched cells
downsample 32 px to 8 (or 2) px. Above that raygan keeps the published structure and adds
only what the size needs:

- Generator: three cells reach 32, 48 and 64 px from bottom width ``r / 8`` (4, 6, 8: a wider
  start, as the papers reach 48 from 6); 128 px takes a fourth cell from bottom width 8 (the
  four-cell spaces ``nas_cell_g4`` and ``autogan4``), since a 16 px start would put a
  16^2 x gf map behind the first Linear (8.4M parameters in AutoGAN's at gf 256) and ask
  three cells' depth to fill four times the pixels. Four cells also reach 64 px from bottom
  width 4, on request (``cells=4``).
- Discriminator: one fixed, spectrally normalised residual downsampling block per doubling
  above 32 px (none at 48 px, as the papers run STL-10), so that every searched or published
  layer after them sees the sizes it sees at 32 px and the last features are as large as at
  32 px (:func:`raygan.nn.blocks.extra_downsampling`). They follow the block that reads the
  image in AutoGAN-D and EAGAN's D, and come first in AdversarialNAS's D, whose first
  searched cell reads the image.

Genotypes do not change with the resolution: a three-cell genotype builds at 32, 48 or 64 px,
the same discriminator genotype at every size. The functions here are pure (sizes and space
names in, sizes and space names out), so a command-line option can check a resolution before
anything is built.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from raygan import spaces


@dataclass(frozen=True)
class Reach:
    """How one resolution is reached."""

    cells: tuple[int, ...]
    """Generator cell counts that reach it, the default first (bottom width r / 2^cells)."""
    d_downsamples: int
    """Extra x1/2 blocks a discriminator adds before its searched cells."""


RESOLUTIONS: dict[int, Reach] = {
    32: Reach(cells=(3,), d_downsamples=0),
    48: Reach(cells=(3,), d_downsamples=0),
    64: Reach(cells=(3, 4), d_downsamples=1),
    128: Reach(cells=(4,), d_downsamples=2),
}
"""Every resolution (px) a layout reaches, for generators and discriminators alike."""

GENERATOR_FAMILIES: dict[str, tuple[str, ...]] = {
    "nas_cell_g": ("nas_cell_g", "nas_cell_g4"),
    "autogan": ("autogan", "autogan4"),
}
"""Generator spaces that differ only in their number of cells, by family name."""


class GeneratorLayout(NamedTuple):
    """What to build for a resolution: ``build_generator``/``build_supernet`` of ``space``
    at ``bottom_width``."""

    space: str
    bottom_width: int


def generator_layout(space: str, resolution: int, *, cells: int | None = None) -> GeneratorLayout:
    """The generator space and bottom width that make ``resolution`` px images.

    ``space`` is any generator space of a family (``nas_cell_g`` or ``nas_cell_g4``,
    ``autogan`` or ``autogan4``): it names the family, and the answer may be its other member
    (``generator_layout("nas_cell_g", 128) == ("nas_cell_g4", 8)``). ``cells`` asks for a
    cell count (``cells=4`` at 64 px gives bottom width 4); ``None`` takes the resolution's
    default, three cells up to 64 px and four at 128. A fixed genotype's cells are given, so
    pass ``cells=len(genotype.cells)`` to build it: a three-cell genotype reaches 32, 48 and
    64 px, a four-cell one 64 and 128.

    Raises ``ValueError`` (one line naming the allowed sizes) for a resolution no layout
    reaches, a cell count that does not reach it, or a space that is no generator family's.
    """
    members = _family(space)
    counts = {len(spaces.get(m).cells): m for m in members}
    reach = _reach(resolution)
    chosen = reach.cells[0] if cells is None else cells
    if chosen not in reach.cells or chosen not in counts:
        reached = [r for r, rr in RESOLUTIONS.items() if chosen in rr.cells]
        raise ValueError(
            f"resolution {resolution} px is not reached with {chosen} generator cells; "
            f"{chosen} cells reach {_sizes(reached) or 'no resolution'}"
        )
    return GeneratorLayout(counts[chosen], resolution // 2**chosen)


def generator_resolution(space: str, bottom_width: int) -> int:
    """The size a generator of ``space`` makes from ``bottom_width``: each cell doubles it.
    What its discriminator is built for (a multi-level stage that runs fewer cells still
    trains the discriminator of the whole generator)."""
    return bottom_width * 2 ** len(spaces.get(space).cells)


def discriminator_downsamples(resolution: int) -> int:
    """How many extra x1/2 blocks a discriminator for ``resolution`` px images needs: one per
    doubling above 32 px, none at 48. ``ValueError`` as :func:`generator_layout`."""
    return _reach(resolution).d_downsamples


def _reach(resolution: int) -> Reach:
    try:
        return RESOLUTIONS[resolution]
    except KeyError:
        raise ValueError(
            f"resolution {resolution!r} px is not reached by any layout; allowed: "
            f"{_sizes(RESOLUTIONS)}"
        ) from None


def _family(space: str) -> tuple[str, ...]:
    """The spaces of ``space``'s family (``space`` itself among them)."""
    family = next((f for f in GENERATOR_FAMILIES.values() if space in f), None)
    if family is None:
        known = sorted(m for f in GENERATOR_FAMILIES.values() for m in f)
        raise ValueError(
            f"no resolution layout for space {space!r}; generator spaces: {', '.join(known)}"
        )
    return family


def _sizes(resolutions: Iterable[int]) -> str:
    return ", ".join(str(r) for r in resolutions)
