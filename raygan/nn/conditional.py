"""Class conditioning, added to any generator or discriminator raygan builds.

- Generator: every BatchNorm becomes a :class:`ConditionalBatchNorm2d` (per-class gain and
  bias, as in SNGAN's and BigGAN's conditional generators), and a learned class embedding is
  added to the latent input (so the class reaches the first linear layers too, as BigGAN's
  shared embedding does; added, not concatenated, so the network's own layers keep their
  shapes and a conditional supernet's weights pass to a conditional fixed network as ever).
- Discriminator: a projection head (Miyato & Koyama, ICLR 2018): the output adds
  ``<embed(y), pooled features>``, the embedding spectrally normalised like the rest of D.

Both are called with the class next to their input, ``G(z, y, ...)`` and ``D(x, y, ...)``,
or with it as a keyword, ``G(z, arch, y=y)`` (what a trainer that passes the same options
to conditional and unconditional networks will find easiest). ``y`` is a LongTensor (N,)
of class indices, one per sample. A forward pre-hook, :func:`labels_hook`, which every
network carries, takes ``y``, hands it to the conditional layers of the module being run
(a deep copy, such as the EMA generator, has its own) and calls the network as before: the
classes reach every BatchNorm without every cell, edge and mixed op taking an argument it
has no use for, and ``torch.compile`` traces the hook with the forward. On an
unconditional network the hook only refuses classes. Without :func:`conditional_generator`
/ :func:`conditional_discriminator` no module changes and no random number is drawn here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm without its own affine, then a gain and a bias for each class.

    The gains start at 1 and the biases at 0 for every class, as the conditional BatchNorm
    of Miyato & Koyama's projection-GAN generator does (BigGAN's gain ``1 + W e(y)`` starts
    near 1 likewise): a fresh layer is the plain normalisation whatever the class, so a fresh
    conditional generator differs between classes only through its latent embedding, and
    the layer draws no random number.
    """

    def __init__(self, bn: nn.BatchNorm2d, num_classes: int) -> None:
        super().__init__()
        channels = bn.num_features
        self.norm = nn.BatchNorm2d(channels, eps=bn.eps, momentum=bn.momentum, affine=False)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)
        self.labels: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = given(self.labels)
        return self.norm(x) * self.gain(y)[:, :, None, None] + self.bias(y)[:, :, None, None]


class Projection(nn.Module):
    """The projection term ``<embed(y), h>`` of pooled features ``h`` (N, C): the class
    enters D as the inner product Miyato & Koyama (2018) derive from a log-linear model of
    p(y | x), with ``embed`` spectrally normalised as the rest of D is (their SNGAN
    projection discriminator does the same)."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        embedding = nn.Embedding(num_classes, channels)
        nn.init.xavier_uniform_(embedding.weight)  # as SNGAN's projection discriminator
        self.embed = spectral_norm(embedding)
        self.labels: torch.Tensor | None = None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return (self.embed(given(self.labels)) * h).sum(dim=1, keepdim=True)


def given(labels: torch.Tensor | None) -> torch.Tensor:
    """The labels a conditional layer was handed (it is run inside its network's forward)."""
    if labels is None:
        raise ValueError("a class-conditional network is called with its classes: G(z, y), D(x, y)")
    return labels


def not_conditional(name: str) -> ValueError:
    """The error of an unconditional network handed class labels."""
    return ValueError(
        f"{name} is not class-conditional (built without num_classes) and takes no classes; "
        "build it with num_classes=... to call it as G(z, y) or D(x, y)"
    )


def _split_labels(module: nn.Module, args: tuple, kwargs: dict) -> tuple[torch.Tensor, tuple, dict]:
    """``(x, y, *rest)`` or ``(x, *rest, y=y)`` -> ``(y, (x, *rest), kwargs without y)``."""
    kwargs = dict(kwargs)
    if "y" in kwargs:
        y, rest = kwargs.pop("y"), args
    elif len(args) >= 2 and isinstance(args[1], torch.Tensor):
        y, rest = args[1], (args[0], *args[2:])
    else:
        raise ValueError(
            f"{type(module).__name__} is class-conditional: call it with its classes, "
            "G(z, y) or D(x, y) (or y=...)"
        )
    x = rest[0]
    if y.dtype not in (torch.long, torch.int) or y.shape != (len(x),):
        raise ValueError(
            f"classes must be an integer tensor of shape ({len(x)},), one per sample; "
            f"got {y.dtype} of shape {tuple(y.shape)}"
        )
    return y, rest, kwargs


def labels_hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    """Forward pre-hook of every network (:class:`raygan.nn.arch.Searchable` registers it).

    Unconditional (``num_classes`` None): refuse class labels, and otherwise leave the call
    alone. Conditional: hand ``y`` to every conditional layer of ``module`` (and, for a
    generator, add its embedding to ``z``), then call the network without it.
    """
    if getattr(module, "num_classes", None) is None:
        if "y" in kwargs or any(isinstance(a, torch.Tensor) for a in args[1:]):
            raise not_conditional(f"this {type(module).__name__}")
        return None
    y, (x, *rest), kwargs = _split_labels(module, args, kwargs)
    for layer in module.modules():
        if isinstance(layer, ConditionalBatchNorm2d | Projection):
            layer.labels = y
    if hasattr(module, "class_embedding"):
        x = x + module.class_embedding(y)
    return (x, *rest), kwargs


def _swap_batch_norms(module: nn.Module, num_classes: int) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, ConditionalBatchNorm2d(child, num_classes))
        else:
            _swap_batch_norms(child, num_classes)


def conditional_generator(generator: nn.Module, num_classes: int) -> nn.Module:
    """``generator`` (a Searchable: it carries :func:`labels_hook`) made class-conditional,
    in place: its BatchNorms per class, a class
    embedding of the latent's size added to its latent input; called as ``G(z, y, ...)``.

    The embedding has ``latent_dim`` entries (120 for nas_cell_g, 128 for autogan) because
    it is added to ``z``: every latent chunk of nas_cell_g (each feeding a cell) then
    carries the class. It starts N(0, 1), like ``z`` itself (PyTorch's Embedding default).
    """
    _swap_batch_norms(generator, num_classes)
    generator.class_embedding = nn.Embedding(num_classes, generator.latent_dim)
    generator.num_classes = num_classes  # what labels_hook goes by
    return generator


def conditional_discriminator(discriminator: nn.Module, num_classes: int) -> nn.Module:
    """``discriminator`` (a Searchable) made a projection discriminator, in place (its tail
    gains the projection term); called as ``D(x, y, ...)``."""
    tail: Any = discriminator.tail
    tail.projection = Projection(tail.fc.in_features, num_classes)
    discriminator.num_classes = num_classes
    return discriminator
