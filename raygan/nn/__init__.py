"""Torch modules for the three methods' search spaces: fixed networks and supernets alike.

A network is found by its space's name. Built from a :class:`~raygan.spaces.Genotype` it is the
fixed network of that architecture, with exactly its parameters; built from a space name it is
the space's supernet, holding every candidate, whose forward takes a genotype (single path) or
mixed-op weights (see :mod:`raygan.nn.arch`). A fixed network's state-dict keys are a subset of
its supernet's, so :func:`inherit` hands a candidate the supernet's trained weights.

Every generator has ``latent_dim`` and ``resolution`` (bottom width x 2^cells: 8 x bottom width
for three cells) attributes and maps ``z`` of shape (N, latent_dim) to images in [-1, 1] of
shape (N, 3, resolution, resolution). Every discriminator, built for a ``resolution`` (32 px
unless told), maps images of that size to logits of shape (N, 1). :func:`generator_layout`
says which space and bottom width make a resolution (three cells up to 64 px, four at 128);
:mod:`raygan.nn.resolution` has the rules. Built with ``num_classes`` (any
builder below), a network is class-conditional (:mod:`raygan.nn.conditional`): it takes the
classes ``y`` (LongTensor (N,)) next to its input, ``G(z, y, arch)``, ``D(x, y, arch)``, or as
``y=``; its ``num_classes`` says how many (None when unconditional).

This package imports torch only (no Ray), so it runs anywhere the models do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from raygan import spaces
from raygan.nn import conditional
from raygan.nn.arch import Arch, EdgeSpec, Searchable
from raygan.nn.autogan import AutoGanDiscriminator, AutoGanGenerator, AutoGanGenerator4
from raygan.nn.mixed import ArchLogits, MixedGenerator, derive, mean_entropy
from raygan.nn.nas_cell import NasCellGenerator, NasCellGenerator4
from raygan.nn.nas_cell_d import AdversarialNasDiscriminator, EaganDiscriminator
from raygan.nn.ops import DOWN_OPS, NORMAL_OPS, OP_LISTS, UP_OPS
from raygan.nn.resolution import (
    RESOLUTIONS,
    GeneratorLayout,
    discriminator_downsamples,
    generator_layout,
    generator_resolution,
)
from raygan.spaces import Genotype

__all__ = [
    "DISCRIMINATORS",
    "DOWN_OPS",
    "GENERATORS",
    "NORMAL_OPS",
    "OP_LISTS",
    "RESOLUTIONS",
    "UP_OPS",
    "Arch",
    "ArchLogits",
    "EdgeSpec",
    "GeneratorLayout",
    "MixedGenerator",
    "Searchable",
    "build_discriminator",
    "build_generator",
    "build_supernet",
    "count_params",
    "derive",
    "discriminator_downsamples",
    "generator_layout",
    "generator_resolution",
    "inherit",
    "mean_entropy",
    "recalibrate_batch_norm",
]

GENERATORS: dict[str, type[Searchable]] = {
    "autogan": AutoGanGenerator,
    "autogan4": AutoGanGenerator4,
    "nas_cell_g": NasCellGenerator,
    "nas_cell_g4": NasCellGenerator4,
}
"""Generator classes by space name: ``cls(genotype_or_None, *, width, bottom_width, **options)``."""

DISCRIMINATORS: dict[str, type[Searchable]] = {
    "autogan_d": AutoGanDiscriminator,
    "eagan_d": EaganDiscriminator,
    "adversarialnas_d": AdversarialNasDiscriminator,
}
"""Discriminator classes by space name: ``cls(genotype_or_None, *, width, resolution)``."""


def _lookup(registry: dict[str, type[Searchable]], space: str, role: str) -> type[Searchable]:
    try:
        return registry[space]
    except KeyError:
        raise ValueError(
            f"no {role} for space {space!r}; {role} spaces: {', '.join(sorted(registry))}"
        ) from None


def build_generator(
    g: Genotype,
    *,
    width: int,
    bottom_width: int = 4,
    resolution: int | None = None,
    num_classes: int | None = None,
    **options: Any,
) -> Searchable:
    """The fixed generator of ``g`` with ``width`` channels throughout; class-conditional
    with ``num_classes`` (:mod:`raygan.nn.conditional`: called as ``G(z, y)``).

    ``options`` go to the space's class (``nas_cell_g``: ``latent_chunks``). ``resolution``,
    if given, must be the one ``bottom_width`` and the genotype's cells make, as in
    :func:`build_supernet`.
    """
    cls = _lookup(GENERATORS, g.space, "generator")
    net = cls(g, width=width, bottom_width=bottom_width, **options)
    _check_resolution(net, resolution)
    return _conditioned(net, num_classes)


def build_discriminator(
    d: Genotype, *, width: int, resolution: int = 32, num_classes: int | None = None
) -> Searchable:
    """The fixed discriminator of ``d`` (``Genotype.parse("autogan_d:")`` for AutoGAN-D) for
    ``resolution`` px images (one extra down block per doubling above 32 px; ``ValueError``
    for a size :data:`RESOLUTIONS` lacks); a projection discriminator with ``num_classes``
    (called as ``D(x, y)``)."""
    cls = _lookup(DISCRIMINATORS, d.space, "discriminator")
    return _conditioned(cls(d, width=width, resolution=resolution), num_classes)


def _conditioned(net: Searchable, num_classes: int | None) -> Searchable:
    """``net`` as it is, or class-conditional (its role decides how)."""
    if num_classes is None:
        return net
    if spaces.get(net.space_name).role == "generator":
        return conditional.conditional_generator(net, num_classes)
    return conditional.conditional_discriminator(net, num_classes)


def build_supernet(
    space_name: str,
    *,
    width: int,
    bottom_width: int = 4,
    resolution: int | None = None,
    num_classes: int | None = None,
    **options: Any,
) -> Searchable:
    """The supernet of a space: every candidate of every edge; class-conditional with
    ``num_classes``, as :func:`build_generator`.

    ``bottom_width`` is for generators, ``resolution`` for discriminators (32 px when
    ``None``, as :func:`build_discriminator`). A generator's resolution follows from its
    bottom width and cells; given one, it must be that one (``ValueError`` otherwise), so a
    caller may pass the same ``resolution`` to both players.
    """
    role = spaces.get(space_name).role
    if role == "generator":
        cls = _lookup(GENERATORS, space_name, role)
        net = cls(None, width=width, bottom_width=bottom_width, **options)
        _check_resolution(net, resolution)
    else:
        cls = _lookup(DISCRIMINATORS, space_name, role)
        net = cls(None, width=width, resolution=32 if resolution is None else resolution, **options)
    return _conditioned(net, num_classes)


def _check_resolution(generator: Searchable, resolution: int | None) -> None:
    """Refuse a resolution the generator as built does not make (it would fail only later,
    against a discriminator or the data), naming the layout that makes it."""
    if resolution is not None and resolution != generator.resolution:
        raise ValueError(
            f"a {generator.space_name} generator of bottom width {generator.bottom_width} "
            f"makes {generator.resolution} px, not {resolution}; "
            f"nn.generator_layout({generator.space_name!r}, {resolution}) says what does"
        )


def count_params(module: nn.Module) -> int:
    """Trainable parameters, as the papers count them (spectral-norm vectors are buffers)."""
    return sum(p.numel() for p in module.parameters())


def inherit(fixed: nn.Module, supernet: nn.Module | Mapping[str, torch.Tensor]) -> nn.Module:
    """Load ``fixed`` with the supernet's weights (and buffers) for every one of its keys.

    ``supernet`` is the module or its state dict (as a checkpoint file holds it); another
    fixed network of the same genotype works too (weight resetting between trials).

    Raises ``KeyError`` naming keys the supernet lacks, ``ValueError`` on a shape mismatch:
    either means the two were not built from the same space and widths.
    """
    source = supernet.state_dict() if isinstance(supernet, nn.Module) else supernet
    target = fixed.state_dict()
    missing = [k for k in target if k not in source]
    if missing:
        raise KeyError(f"supernet lacks {len(missing)} keys of the fixed network: {missing[:5]}")
    wrong = [k for k in target if source[k].shape != target[k].shape]
    if wrong:
        raise ValueError(f"shapes differ between fixed network and supernet for {wrong[:5]}")
    fixed.load_state_dict({k: source[k] for k in target})
    return fixed


@torch.no_grad()
def recalibrate_batch_norm(
    generator: nn.Module, *, batches: int = 20, batch_size: int = 64, seed: int = 0
) -> nn.Module:
    """Recompute every BatchNorm's running statistics from this generator's own outputs.

    A path inherited from a supernet carries running statistics that whichever paths trained
    last accumulated (every path shares them), so scoring it in eval mode normalises its
    features with another architecture's statistics. Single-path one-shot NAS recalibrates
    them per candidate before evaluation for this reason (Guo et al., 2020). Here the
    statistics become the plain average over ``batches`` seeded noise batches (momentum
    ``None``); the generator is left in eval mode, momenta as they were.
    """
    norms = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return generator.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    device = next(generator.parameters()).device
    noise = torch.Generator().manual_seed(seed)
    generator.train()
    classes = getattr(generator, "num_classes", None)  # a conditional one: every class alike
    for _ in range(batches):
        z = torch.randn(batch_size, generator.latent_dim, generator=noise).to(device)
        if classes is None:
            generator(z)
        else:
            generator(z, torch.arange(batch_size, device=device) % classes)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    return generator.eval()
