"""Fixed building blocks shared by several networks: the generator head, the residual
discriminator blocks of SNGAN/AutoGAN-D, and the discriminator tail."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from raygan.nn.layers import batch_norm, conv2d, linear


def to_rgb(channels: int) -> nn.Sequential:
    """Every generator's head: BN -> ReLU -> conv3x3 -> tanh, so images lie in [-1, 1]."""
    return nn.Sequential(batch_norm(channels), nn.ReLU(), conv2d(channels, 3, 3), nn.Tanh())


class OptimizedDisBlock(nn.Module):
    """First discriminator block: conv -> ReLU -> conv -> avg-pool, plus a pooled 1x1 shortcut.

    It has no leading ReLU (its input is the image). Spectral norm on every conv.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.c1 = conv2d(c_in, c_out, 3, sn=True)
        self.c2 = conv2d(c_out, c_out, 3, sn=True)
        self.c_sc = conv2d(c_in, c_out, 1, sn=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool2d(self.c2(F.relu(self.c1(x))), 2)
        return h + self.c_sc(F.avg_pool2d(x, 2))


class DisBlock(nn.Module):
    """Residual block: ReLU -> conv -> ReLU -> conv [-> avg-pool], plus a shortcut.

    The shortcut is a (pooled) 1x1 conv when the block downsamples or changes width, the
    identity otherwise, as in SNGAN and AutoGAN-D. Spectral norm on every conv.
    """

    def __init__(self, c_in: int, c_out: int, *, downsample: bool) -> None:
        super().__init__()
        self.downsample = downsample
        self.c1 = conv2d(c_in, c_in, 3, sn=True)
        self.c2 = conv2d(c_in, c_out, 3, sn=True)
        self.c_sc = conv2d(c_in, c_out, 1, sn=True) if downsample or c_in != c_out else None

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, 2) if self.downsample else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self._pool(self.c2(F.relu(self.c1(F.relu(x)))))
        shortcut = x if self.c_sc is None else self._pool(self.c_sc(x))
        return h + shortcut


def extra_downsampling(width: int, count: int, *, reads_image: bool = False) -> nn.Sequential:
    """``count`` fixed residual blocks of ``width`` channels, each halving the size: what a
    discriminator adds per doubling of resolution above 32 px, so that the layers after them
    see the sizes they see at 32 px (:mod:`raygan.nn.resolution`).

    Fixed and spectrally normalised like AutoGAN-D's own blocks (SNGAN and BigGAN grow their
    discriminators to 64 and 128 px the same way, with one more residual down block per
    doubling). With ``reads_image`` the first block is an :class:`OptimizedDisBlock` from 3
    channels, for a network whose own first layer would otherwise read the image. ``count``
    0 gives an empty Sequential: no parameters, no state-dict keys, no random draws, so a
    32 px network is exactly what it was before resolutions existed.
    """
    first = [OptimizedDisBlock(3, width)] if reads_image and count else []
    rest = [DisBlock(width, width, downsample=True) for _ in range(count - len(first))]
    return nn.Sequential(*first, *rest)


class DisTail(nn.Module):
    """Every discriminator's tail: ReLU -> global *sum* pool -> spectral-norm Linear(ch, 1),
    plus a projection discriminator's class term where it has one
    (:func:`raygan.nn.conditional.conditional_discriminator`)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = linear(channels, 1, bias=False, sn=True)
        self.projection: nn.Module | None = None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        pooled = F.relu(h).sum(dim=(2, 3))
        out = self.fc(pooled)
        return out if self.projection is None else out + self.projection(pooled)
