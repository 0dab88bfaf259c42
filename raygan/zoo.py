"""The published architectures, with the numbers their papers report.

Each entry is what a paper trained and evaluated: generator and discriminator genotypes, the
final widths, and the reported Inception Score, FID and parameter counts (in millions, rounded
as the paper rounds them). :func:`build` makes the pair, optionally narrower for a laptop;
:func:`table` puts the parameter counts of the nets as built next to the reported ones.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from torch import nn

from raygan.nn import build_discriminator, build_generator, count_params
from raygan.spaces import Genotype

AUTOGAN = "Gong et al., AutoGAN: Neural Architecture Search for GANs, ICCV 2019"
ADVERSARIALNAS = (
    "Gao et al., AdversarialNAS: Adversarial Neural Architecture Search for GANs, CVPR 2020"
)
EAGAN = (
    "Ying et al., EAGAN: Efficient Two-stage Evolutionary Architecture Search for GANs, ECCV 2022"
)


@dataclass(frozen=True)
class ZooEntry:
    """One published architecture. Parameter counts are in millions; ``None``: not reported."""

    name: str
    dataset: str
    bottom_width: int
    g: Genotype
    d: Genotype
    gf: int
    df: int
    reported_is: float
    reported_is_std: float | None
    reported_fid: float
    reported_g_params: float | None
    reported_d_params: float | None
    source: str
    latent_chunks: int | None = None
    """``nas_cell_g`` only: how the latent is split (see :mod:`raygan.nn.nas_cell`)."""

    @property
    def resolution(self) -> int:
        return 8 * self.bottom_width

    def generator_options(self) -> dict[str, Any]:
        return {} if self.latent_chunks is None else {"latent_chunks": self.latent_chunks}


AUTOGAN_D = Genotype.parse("autogan_d:")
EAGAN_G = Genotype.parse("nas_cell_g:1,1,1,0,2,3,1/1,1,0,1,3,0,5/0,1,0,3,0,0,3")

_ENTRIES = [
    ZooEntry(
        name="autogan_cifar10_a",
        dataset="cifar10",
        bottom_width=4,
        g=Genotype.parse("autogan:1,0,1,1/1,0,0,1,1/1,0,1,0,3"),
        d=AUTOGAN_D,
        gf=256,
        df=128,
        reported_is=8.55,
        reported_is_std=0.10,
        reported_fid=12.42,
        reported_g_params=4.41,
        reported_d_params=1.05,
        source=AUTOGAN,
    ),
    ZooEntry(
        name="autogan_cifar10_b",
        dataset="cifar10",
        bottom_width=4,
        g=Genotype.parse("autogan:1,0,1,1/1,0,1,1,1/1,0,1,1,3"),
        d=AUTOGAN_D,
        gf=256,
        df=128,
        reported_is=8.42,
        reported_is_std=None,
        reported_fid=13.67,
        reported_g_params=None,
        reported_d_params=1.05,
        source=AUTOGAN,
    ),
    ZooEntry(
        name="autogan_cifar10_c",
        dataset="cifar10",
        bottom_width=4,
        g=Genotype.parse("autogan:1,1,1,1/1,0,0,1,1/1,0,1,0,3"),
        d=AUTOGAN_D,
        gf=256,
        df=128,
        reported_is=8.41,
        reported_is_std=None,
        reported_fid=13.87,
        reported_g_params=None,
        reported_d_params=1.05,
        source=AUTOGAN,
    ),
    ZooEntry(
        name="adversarialnas_cifar10",
        dataset="cifar10",
        bottom_width=4,
        g=Genotype.parse("nas_cell_g:1,1,1,0,3,3,1/1,1,0,1,3,3,3/0,1,0,3,3,0,3"),
        d=AUTOGAN_D,
        gf=256,
        df=128,
        reported_is=8.74,
        reported_is_std=None,
        reported_fid=10.87,
        reported_g_params=8.85,
        reported_d_params=1.05,
        source=ADVERSARIALNAS,
    ),
    ZooEntry(
        name="eagan_cifar10",
        dataset="cifar10",
        bottom_width=4,
        g=EAGAN_G,
        d=Genotype.parse("eagan_d:3,0,3,0,2,0,0/1,0,3,0,1,-1,-1/3,0,3,0,1,-1,-1"),
        gf=256,
        df=128,
        reported_is=8.81,
        reported_is_std=0.10,
        reported_fid=9.91,
        reported_g_params=7.14,
        reported_d_params=0.91,
        source=EAGAN,
    ),
    ZooEntry(
        name="eagan_stl10",
        dataset="stl10",
        bottom_width=6,
        g=EAGAN_G,
        d=Genotype.parse("eagan_d:3,0,3,0,2,0,0/4,0,4,0,1,-1,-1/3,0,3,0,1,-1,-1"),
        gf=256,
        df=128,
        reported_is=10.44,
        reported_is_std=None,
        reported_fid=22.18,
        reported_g_params=11.55,
        reported_d_params=1.58,
        source=EAGAN,
        latent_chunks=3,
    ),
]

ZOO: dict[str, ZooEntry] = {e.name: e for e in _ENTRIES}


class UnknownArch(KeyError, ValueError):
    """A zoo name that does not exist; caught as either KeyError or ValueError."""

    def __str__(self) -> str:
        return str(self.args[0])


def get(name: str) -> ZooEntry:
    try:
        return ZOO[name]
    except KeyError:
        raise UnknownArch(f"unknown arch {name!r}; choose from: {', '.join(ZOO)}") from None


def scaled(width: int, scale: float) -> int:
    """``width * scale`` rounded to a multiple of 8, at least 8."""
    return max(8, round(width * scale / 8) * 8)


def build(name: str, *, width_scale: float = 1.0) -> tuple[nn.Module, nn.Module]:
    """(G, D) of a zoo entry, at the published widths times ``width_scale``."""
    e = get(name)
    g = build_generator(
        e.g, width=scaled(e.gf, width_scale), bottom_width=e.bottom_width, **e.generator_options()
    )
    return g, build_discriminator(e.d, width=scaled(e.df, width_scale))


@functools.cache
def param_counts(name: str) -> tuple[int, int]:
    """Exact (G, D) parameter counts at the published widths."""
    g, d = build(name)
    return count_params(g), count_params(d)


def table() -> list[dict[str, Any]]:
    """One row per entry: built parameter counts beside the reported numbers."""
    rows = []
    for e in ZOO.values():
        g_params, d_params = param_counts(e.name)
        rows.append(
            {
                "name": e.name,
                "dataset": e.dataset,
                "resolution": e.resolution,
                "g_genotype": str(e.g),
                "d_genotype": str(e.d),
                "gf": e.gf,
                "df": e.df,
                "g_params": g_params,
                "d_params": d_params,
                "reported_g_params_m": e.reported_g_params,
                "reported_d_params_m": e.reported_d_params,
                "reported_is": e.reported_is,
                "reported_is_std": e.reported_is_std,
                "reported_fid": e.reported_fid,
                "source": e.source,
            }
        )
    return rows
