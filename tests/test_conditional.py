"""Class-conditional networks (raygan.nn.conditional): per-class BatchNorm and a class
embedding in every generator, a spectrally normalised projection in every discriminator,
fixed networks and supernets alike; unconditional builds untouched."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from raygan import nn, spaces, zoo
from raygan.nn.conditional import ConditionalBatchNorm2d

C = 4
GENERATORS = [zoo.EAGAN_G, spaces.Genotype.parse("autogan:1,0,1,1/1,0,0,1,1/1,0,1,0,3")]
DISCRIMINATORS = [
    zoo.AUTOGAN_D,
    spaces.Genotype.parse("eagan_d:3,0,3,0,2,0,0/1,0,3,0,1,-1,-1/3,0,3,0,1,-1,-1"),
]


def classes(*ys: int) -> torch.Tensor:
    return torch.tensor(ys)


@pytest.mark.parametrize("g", GENERATORS, ids=str)
def test_a_class_changes_the_generators_output(g):
    torch.manual_seed(0)
    G = nn.build_generator(g, width=8, num_classes=C).eval()
    z = torch.randn(1, G.latent_dim).repeat(2, 1)
    x = G(z, classes(0, 1))
    assert x.shape == (2, 3, 32, 32) and not torch.allclose(x[0], x[1])
    assert torch.allclose(G(z, classes(1, 1))[0], x[1], atol=1e-6)
    norms = [m for m in G.modules() if isinstance(m, ConditionalBatchNorm2d)]
    plain = [m for m in G.modules() if type(m) is torch.nn.BatchNorm2d and m.affine]
    assert norms and not plain  # every BatchNorm of the generator is per class
    with pytest.raises(ValueError, match=r"call it with its classes"):
        G(z)


def test_parameter_counts_include_the_embeddings():
    torch.manual_seed(0)
    plain = nn.build_generator(zoo.EAGAN_G, width=8)
    G = nn.build_generator(zoo.EAGAN_G, width=8, num_classes=C)
    bn = [m.num_features for m in plain.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    per_class_bn = sum(2 * C * ch - 2 * ch for ch in bn)  # gain and bias per class, not shared
    assert nn.count_params(G) - nn.count_params(plain) == C * G.latent_dim + per_class_bn
    D0, D = (nn.build_discriminator(zoo.AUTOGAN_D, width=8, num_classes=n) for n in (None, C))
    assert nn.count_params(D) - nn.count_params(D0) == C * 8


@pytest.mark.parametrize("d", DISCRIMINATORS, ids=str)
def test_the_projection_is_spectrally_normalised_and_a_class_changes_d(d):
    torch.manual_seed(0)
    D = nn.build_discriminator(d, width=8, num_classes=C)
    x = torch.randn(1, 3, 32, 32).repeat(2, 1, 1, 1)
    for _ in range(30):  # spectral norm's power iteration converges as D trains
        D(x, classes(0, 1))
    out = D.eval()(x, classes(0, 1))
    assert out.shape == (2, 1) and not torch.allclose(out[0], out[1])
    weight = D.tail.projection.embed.weight  # the normalised weight the forward uses
    assert torch.linalg.matrix_norm(weight, ord=2).item() == pytest.approx(1.0, abs=0.02)
    raw = D.tail.projection.embed.parametrizations.weight.original
    assert torch.linalg.matrix_norm(raw, ord=2).item() != pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize(("g_space", "d_space"), [("nas_cell_g", "adversarialnas_d"),
                                                  ("autogan", "eagan_d")])  # fmt: skip
def test_supernets_condition_pass_gradients_and_hand_weights_to_fixed_networks(g_space, d_space):
    torch.manual_seed(0)
    G = nn.build_supernet(g_space, width=8, num_classes=C)
    D = nn.build_supernet(d_space, width=8, num_classes=C)
    g, d = (spaces.get(s).sample(np.random.default_rng(1)) for s in (g_space, d_space))
    y = classes(0, 1, 2, 3)
    loss = D(G(torch.randn(4, G.latent_dim), y, g), y, d).mean()
    loss.backward()
    assert G.class_embedding.weight.grad.abs().sum() > 0
    assert D.tail.projection.embed.parametrizations.weight.original.grad.abs().sum() > 0
    fixed = nn.inherit(nn.build_generator(g, width=8, num_classes=C), G).eval()
    z = torch.randn(4, G.latent_dim)
    assert torch.allclose(fixed(z, y), G.eval()(z, y, g), atol=1e-5)


def test_a_copy_such_as_the_ema_generator_takes_its_own_classes():
    torch.manual_seed(0)
    G = nn.build_generator(zoo.EAGAN_G, width=8, num_classes=C).eval()
    ema = copy.deepcopy(G)
    z = torch.randn(2, G.latent_dim)
    assert torch.equal(ema(z, classes(2, 3)), G(z, classes(2, 3)))
    ema(z, classes(0, 0))
    assert torch.equal(G(z, classes(2, 3)), ema(z, classes(2, 3)))


def test_recalibration_draws_every_class():
    torch.manual_seed(0)
    G = nn.build_generator(zoo.EAGAN_G, width=8, num_classes=C)
    nn.recalibrate_batch_norm(G, batches=2, batch_size=8)
    norm = next(m for m in G.modules() if isinstance(m, ConditionalBatchNorm2d)).norm
    assert norm.num_batches_tracked.item() == 2
