"""Parameterised layers, made in one place so that every network is initialised alike.

METHODS.md fixes the initialisation shared by the three papers: conv weights ``xavier_uniform``,
BatchNorm weight N(1, 0.02) and bias 0 (linear layers keep PyTorch's default, as the authors'
code does). Initialising here, when a layer is made and *before* spectral norm wraps it, keeps
spectral norm's power-iteration vectors consistent with the weight they normalise; re-initialising
a finished network (the authors' ``apply(weights_init)``) would leave them stale.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def _finish(layer: nn.Module, sn: bool) -> nn.Module:
    return spectral_norm(layer) if sn else layer


def conv2d(
    c_in: int,
    c_out: int,
    kernel: int,
    *,
    stride: int = 1,
    dilation: int = 1,
    groups: int = 1,
    bias: bool = True,
    sn: bool = False,
) -> nn.Module:
    """A "same"-padded convolution (output size = input size / stride), xavier-initialised."""
    conv = nn.Conv2d(
        c_in,
        c_out,
        kernel,
        stride=stride,
        padding=dilation * (kernel - 1) // 2,
        dilation=dilation,
        groups=groups,
        bias=bias,
    )
    nn.init.xavier_uniform_(conv.weight)
    return _finish(conv, sn)


def conv_transpose2d(
    c_in: int,
    c_out: int,
    kernel: int,
    *,
    padding: int = 0,
    output_padding: int = 0,
    groups: int = 1,
    bias: bool = True,
) -> nn.Module:
    """A stride-2 transposed convolution (exact x2 upsampling), xavier-initialised."""
    deconv = nn.ConvTranspose2d(
        c_in,
        c_out,
        kernel,
        stride=2,
        padding=padding,
        output_padding=output_padding,
        groups=groups,
        bias=bias,
    )
    nn.init.xavier_uniform_(deconv.weight)
    return deconv


def linear(c_in: int, c_out: int, *, bias: bool = True, sn: bool = False) -> nn.Module:
    return _finish(nn.Linear(c_in, c_out, bias=bias), sn)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels)
    nn.init.normal_(bn.weight, 1.0, 0.02)
    nn.init.zeros_(bn.bias)
    return bn
