"""Class conditioning, added to any generator or discriminator raygan builds.

- Generator: every BatchNorm becomes a :class:`ConditionalBatchNorm2d` (per-class gain and
  bias, as in SNGAN's and BigGAN's conditional generators), and a learned class embedding is
  added to the latent input (so the class reaches the first linear layers too, as BigGAN's
  shared embedding does; added, not concatenated, so the network's own layers keep their
  shapes and a conditional supernet's weights pass to a conditional fixed network as ever).
- Discriminator: a projection head (Miyato & Koyama, ICLR 2018): the output adds
  ``<embed(y), pooled features>``, the embedding spectrally normalised like the rest of D.

Both are called with the class next to their input, ``G(z, y, ...)`` and ``D(x, y, ...)``:
a forward pre-hook takes ``y``, hands it to the conditional layers of the module being run
(a deep copy, such as the EMA generator, has its own) and calls the network as before. The
networks' own classes do not change, and without :func:`conditional_generator` /
:func:`conditional_discriminator` nothing here runs or draws a random number.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm without its own affine, then a gain and a bias for each class (initialised
    as raygan initialises BatchNorm: gain N(1, 0.02), bias 0)."""

    def __init__(self, bn: nn.BatchNorm2d, num_classes: int) -> None:
        super().__init__()
        channels = bn.num_features
        self.norm = nn.BatchNorm2d(channels, eps=bn.eps, momentum=bn.momentum, affine=False)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.normal_(self.gain.weight, 1.0, 0.02)
        nn.init.zeros_(self.bias.weight)
        self.labels: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = given(self.labels)
        return self.norm(x) * self.gain(y)[:, :, None, None] + self.bias(y)[:, :, None, None]


class Projection(nn.Module):
    """The projection term ``<embed(y), h>`` of pooled features ``h`` (N, C)."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        embedding = nn.Embedding(num_classes, channels)
        nn.init.xavier_uniform_(embedding.weight)  # as SNGAN's projection discriminator
        self.embed = spectral_norm(embedding)
        self.labels: torch.Tensor | None = None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return (self.embed(given(self.labels)) * h).sum(dim=1, keepdim=True)


def given(labels: torch.Tensor | None) -> torch.Tensor:
    if labels is None:
        raise ValueError("a class-conditional network is called with its classes: G(z, y), D(x, y)")
    return labels


def _take_labels(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Forward pre-hook: ``(input, y, *rest)`` -> ``(input, *rest)``, ``y`` handed to every
    conditional layer of ``module`` (and, for a generator, its embedding added to ``z``)."""
    if len(args) < 2 or not isinstance(args[1], torch.Tensor):
        raise ValueError(
            f"{type(module).__name__} is class-conditional: call it with its classes, "
            "G(z, y) or D(x, y)"
        )
    x, y, *rest = args
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
    """``generator`` made class-conditional, in place: its BatchNorms per class, a class
    embedding (N(0, 1), like ``z``) added to its latent input; called as ``G(z, y, ...)``."""
    _swap_batch_norms(generator, num_classes)
    generator.class_embedding = nn.Embedding(num_classes, generator.latent_dim)
    generator.num_classes = num_classes
    generator.register_forward_pre_hook(_take_labels, with_kwargs=True)
    return generator


def conditional_discriminator(discriminator: nn.Module, num_classes: int) -> nn.Module:
    """``discriminator`` made a projection discriminator, in place (its tail gains the
    projection term); called as ``D(x, y, ...)``."""
    tail: Any = discriminator.tail
    tail.projection = Projection(tail.fc.in_features, num_classes)
    discriminator.num_classes = num_classes
    discriminator.register_forward_pre_hook(_take_labels, with_kwargs=True)
    return discriminator
