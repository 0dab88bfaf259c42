"""The candidate operations of the ``nas_cell`` spaces, as registries keyed by op name.

A registry maps the names of one op list in ``search_spaces/nas_cell.yaml`` (same names, same
order, so a genome's int indexes both) to a factory ``(c_in, c_out, **options) -> nn.Module``.
Normal and down factories take ``sn`` (spectral norm on the conv; discriminators set it) and
``relu`` (the leading ReLU, dropped where METHODS.md says an edge has none); pools and the
parameter-free normal ops ignore both. Up factories take no options: they live only in
generators, never spectrally normalised, always with their ReLU.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from raygan.nn.layers import conv2d, conv_transpose2d

OpFactory = Callable[..., nn.Module]


def _same_width(c_in: int, c_out: int, op: str) -> None:
    if c_in != c_out:
        raise ValueError(f"op {op!r} keeps the channel count; got {c_in} -> {c_out}")


class Zero(nn.Module):
    """The ``none`` op: contributes nothing to the node it feeds (an all-zero map)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


class ConvOp(nn.Module):
    """ReLU -> conv, or conv alone where the edge has no leading activation."""

    def __init__(self, conv: nn.Module, relu: bool) -> None:
        super().__init__()
        self.relu = relu
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.relu(x) if self.relu else x)


class InterpolateUp(nn.Module):
    """Interpolate x2 -> ReLU -> 1x1 conv (the ``nearest`` and ``bilinear`` up ops)."""

    def __init__(self, c_in: int, c_out: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.conv = conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.relu(F.interpolate(x, scale_factor=2, mode=self.mode)))


class DeconvUp(nn.Module):
    """ReLU -> depthwise 3x3 transposed conv, stride 2 -> 1x1 conv; neither has a bias."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.deconv = conv_transpose2d(
            c_in, c_in, 3, padding=1, output_padding=1, groups=c_in, bias=False
        )
        self.conv = conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.deconv(F.relu(x)))


def _none(c_in: int, c_out: int, **_: bool) -> nn.Module:
    _same_width(c_in, c_out, "none")
    return Zero()


def _skip(c_in: int, c_out: int, **_: bool) -> nn.Module:
    _same_width(c_in, c_out, "skip")
    return nn.Identity()


def _conv(
    c_in: int,
    c_out: int,
    *,
    kernel: int,
    dilation: int = 1,
    stride: int = 1,
    sn: bool = False,
    relu: bool = True,
) -> nn.Module:
    return ConvOp(conv2d(c_in, c_out, kernel, stride=stride, dilation=dilation, sn=sn), relu)


def _pool(pool: type[nn.Module], c_in: int, c_out: int, **_: bool) -> nn.Module:
    _same_width(c_in, c_out, pool.__name__)
    return pool(kernel_size=2, stride=2)


NORMAL_OPS: dict[str, OpFactory] = {
    "none": _none,
    "skip": _skip,
    "conv1x1": partial(_conv, kernel=1),
    "conv3x3": partial(_conv, kernel=3),
    "conv5x5": partial(_conv, kernel=5),
    "dil_conv3x3": partial(_conv, kernel=3, dilation=2),
    "dil_conv5x5": partial(_conv, kernel=5, dilation=2),
}
"""Shape-preserving ops of generator and discriminator cells."""

UP_OPS: dict[str, OpFactory] = {
    "nearest": partial(InterpolateUp, mode="nearest"),
    "bilinear": partial(InterpolateUp, mode="bilinear"),
    "deconv": DeconvUp,
}
"""x2 upsampling ops of generator cells."""

DOWN_OPS: dict[str, OpFactory] = {
    "avg_pool": partial(_pool, nn.AvgPool2d),
    "max_pool": partial(_pool, nn.MaxPool2d),
    "conv3x3": partial(_conv, kernel=3, stride=2),
    "conv5x5": partial(_conv, kernel=5, stride=2),
    "dil_conv3x3": partial(_conv, kernel=3, dilation=2, stride=2),
    "dil_conv5x5": partial(_conv, kernel=5, dilation=2, stride=2),
}
"""/2 downsampling ops of discriminator cells."""

OP_LISTS: Mapping[str, Mapping[str, OpFactory]] = {
    "normal": NORMAL_OPS,
    "up": UP_OPS,
    "down": DOWN_OPS,
}
"""Every registry by the name of its op list in ``nas_cell.yaml``."""


def op_list_of(choices: tuple[str, ...]) -> str | None:
    """The name of the op list whose names are exactly ``choices`` (in order), if any."""
    return next((name for name, ops in OP_LISTS.items() if tuple(ops) == choices), None)
