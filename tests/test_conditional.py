"""Class-conditional networks (raygan.nn.conditional): per-class BatchNorm and a class
embedding in every generator, a spectrally normalised projection in every discriminator,
fixed networks and supernets alike; unconditional builds untouched."""

from __future__ import annotations

import copy
import hashlib

import numpy as np
import pytest
import torch

from raygan import nn, spaces, zoo
from raygan.nn.conditional import ConditionalBatchNorm2d
from raygan.train import init_weights

C = 4
W = 8  # width of every network here
P = spaces.Genotype.parse
AUTOGAN_A = P("autogan:1,0,1,1/1,0,0,1,1/1,0,1,0,3")  # no BatchNorm in its cells
AUTOGAN_BN = P("autogan:1,1,1,1/0,1,0,1,1/1,1,2,0,3")  # BatchNorm in every cell
EAGAN_D = P("eagan_d:3,0,3,0,2,0,0/1,0,3,0,1,-1,-1/3,0,3,0,1,-1,-1")
ADVNAS_D = spaces.get("adversarialnas_d").sample(np.random.default_rng(5))

# What each build gave before conditional networks existed (commit 66d5d3d^), seed 0, width 8,
# init_weights, then seed 1 for the input: state-dict key digest, parameters, the next
# torch.rand after building (any extra random draw moves it), sum and |sum| of the output.
# "s": the supernet on a genotype sampled from default_rng(3); "m": on ArchLogits' weights.
UNCONDITIONAL = {
    str(zoo.EAGAN_G): ("4f2f9554bef0671a", 114083, 0.29416448, 1040.2872, 5897.1025),
    str(AUTOGAN_A): ("52ad7faae22cb491", 20611, 0.53174388, 735.56384, 4931.7480),
    str(AUTOGAN_BN): ("d54db73a9ff1aa72", 21763, 0.84440416, 397.02359, 5852.3511),
    "s:nas_cell_g": ("490d0df86ea4146b", 179179, 0.45287293, 1605.6720, 5265.1484),
    "m:nas_cell_g": ("490d0df86ea4146b", 179179, 0.74730867, 228.36783, 5808.3159),
    "s:autogan": ("7136cd9ec7e82d35", 27811, 0.88373041, 111.90523, 5549.3018),
    "autogan_d:": ("061b54918c2a7bbb", 4424, 0.61926264, 181.71895, 181.71895),
    str(EAGAN_D): ("1721569c90d5c157", 3840, 0.31070232, 41.198959, 41.198959),
    "s:eagan_d": ("b43bf5c44d92d7f6", 93992, 0.57892549, 2.1137853, 2.1137853),
    "s:adversarialnas_d": ("d9497cc9cc6a2849", 115920, 0.40566915, -1.2367489, 1.2367489),
    "m:adversarialnas_d": ("d9497cc9cc6a2849", 115920, 0.67445028, -0.079163663, 0.079163663),
}  # fmt: skip


def classes(*ys: int) -> torch.Tensor:
    return torch.tensor(ys)


def build(case: str, num_classes: int | None = None, rng: int = 3):
    """A network of ``case`` (a genotype string, or ``s:``/``m:`` and a space), its arch."""
    kind, _, name = case.partition(":") if case[:2] in ("s:", "m:") else ("", "", case)
    if not kind:
        g = P(name)
        role = spaces.get(g.space).role
        builder = nn.build_generator if role == "generator" else nn.build_discriminator
        return builder(g, width=W, num_classes=num_classes), None
    net = nn.build_supernet(name, width=W, num_classes=num_classes)
    if kind == "s":
        return net, spaces.get(name).sample(np.random.default_rng(rng))
    return net, nn.ArchLogits(net)()


def is_generator(net: torch.nn.Module) -> bool:
    return spaces.get(net.space_name).role == "generator"


def inputs(net: torch.nn.Module, n: int = 4) -> torch.Tensor:
    return torch.randn(n, net.latent_dim) if is_generator(net) else torch.randn(n, 3, 32, 32)


def call(net, x, y=None, arch=None):
    args = (x,) + (() if y is None else (y,)) + (() if arch is None else (arch,))
    return net(*args)


ALL = list(UNCONDITIONAL)


@pytest.mark.parametrize("case", ALL)
def test_unconditional_builds_are_unchanged(case):
    torch.manual_seed(0)
    net, arch = build(case)
    init_weights(net)
    after = torch.rand(1).item()
    torch.manual_seed(1)
    out = call(net, inputs(net), arch=arch)
    keys = hashlib.sha256("\n".join(net.state_dict()).encode()).hexdigest()[:16]
    want_keys, want_params, want_after, want_sum, want_abs = UNCONDITIONAL[case]
    assert (keys, nn.count_params(net), net.num_classes) == (want_keys, want_params, None)
    assert after == pytest.approx(want_after, abs=1e-7)
    assert out.sum().item() == pytest.approx(want_sum, rel=1e-4, abs=1e-4)
    assert out.abs().sum().item() == pytest.approx(want_abs, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("case", ALL)
def test_an_unconditional_network_refuses_classes(case):
    net, arch = build(case)
    with pytest.raises(ValueError, match="not class-conditional"):
        call(net, inputs(net), classes(0, 1, 2, 3), arch)


@pytest.mark.parametrize("case", ALL)
def test_every_family_builds_conditional_and_trains(case):
    """Fixed and supernet, G and D: the class embeddings and per-class affines get gradients,
    and the network refuses to run without its classes."""
    torch.manual_seed(0)
    net, arch = build(case, num_classes=C)
    x, y = inputs(net), classes(0, 1, 2, 3)
    out = call(net, x, y, arch)
    assert out.shape == ((4, 3, 32, 32) if is_generator(net) else (4, 1))
    out.square().mean().backward()
    if is_generator(net):
        norms = [m for m in net.modules() if isinstance(m, ConditionalBatchNorm2d)]
        assert net.class_embedding.weight.grad.abs().sum() > 0
        assert all(m.gain.weight.grad is not None for m in norms[-1:])  # the head's runs always
    else:
        assert net.tail.projection.embed.parametrizations.weight.original.grad.abs().sum() > 0
    assert net.num_classes == C
    with pytest.raises(ValueError, match="call it with its classes"):
        call(net, x, arch=arch)


@pytest.mark.parametrize("g", [zoo.EAGAN_G, AUTOGAN_A, AUTOGAN_BN], ids=str)
def test_a_class_changes_the_generators_output(g):
    torch.manual_seed(0)
    G = nn.build_generator(g, width=W, num_classes=C).eval()
    z = torch.randn(1, G.latent_dim).repeat(2, 1)
    x = G(z, classes(0, 1))
    assert x.shape == (2, 3, 32, 32) and not torch.allclose(x[0], x[1])
    assert torch.allclose(G(z, classes(1, 1))[0], x[1], atol=1e-6)
    norms = [m for m in G.modules() if isinstance(m, ConditionalBatchNorm2d)]
    plain = [m for m in G.modules() if type(m) is torch.nn.BatchNorm2d and m.affine]
    assert norms and not plain  # every BatchNorm of the generator is per class


def test_a_conditional_batch_norm_starts_as_a_plain_normalisation():
    torch.manual_seed(0)
    G = nn.build_generator(AUTOGAN_BN, width=W, num_classes=C)
    init_weights(G)  # walks the modules as a trial does: the per-class affines stay 1 and 0
    norm = next(m for m in G.modules() if isinstance(m, ConditionalBatchNorm2d))
    x = torch.randn(4, W, 5, 5)
    plain = torch.nn.BatchNorm2d(W, affine=False)
    norm.labels = classes(0, 1, 2, 3)
    assert torch.allclose(norm(x), plain(x), atol=1e-6)


@pytest.mark.parametrize("g", [zoo.EAGAN_G, AUTOGAN_BN], ids=str)
def test_a_fresh_conditional_generator_is_the_unconditional_one(g):
    """Same seed, same base weights (the conditional parts are drawn after them); with the
    class embedding at 0 and the plain BatchNorms' gains at 1, every class gives the
    unconditional generator's images."""
    torch.manual_seed(0)
    plain = nn.build_generator(g, width=W)
    torch.manual_seed(0)
    G = nn.build_generator(g, width=W, num_classes=C)
    norms = [name for name, m in plain.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    own = {k: v for k, v in plain.state_dict().items() if k.rpartition(".")[0] not in norms}
    cond = G.state_dict()
    assert all(torch.equal(v, cond[k]) for k, v in own.items())  # all but the BatchNorms'
    for m in plain.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(m.weight)
    torch.nn.init.zeros_(G.class_embedding.weight)
    z = torch.randn(4, G.latent_dim)
    assert torch.allclose(G(z, classes(0, 1, 2, 3)), plain(z), atol=1e-6)


@pytest.mark.parametrize(
    ("case", "extra"),
    [
        # class embedding C x latent; per BatchNorm of W channels 2*C*W instead of 2*W
        (str(zoo.EAGAN_G), 4 * 120 + 1 * (2 * 4 * 8 - 2 * 8)),  # head only
        (str(AUTOGAN_A), 4 * 128 + 1 * (2 * 4 * 8 - 2 * 8)),  # head only
        (str(AUTOGAN_BN), 4 * 128 + 7 * (2 * 4 * 8 - 2 * 8)),  # 3 cells x 2 + head
        ("s:nas_cell_g", 4 * 120 + 1 * (2 * 4 * 8 - 2 * 8)),
        ("s:autogan", 4 * 128 + 13 * (2 * 4 * 8 - 2 * 8)),  # 3 cells x 2 convs x 2 orders + head
        # the projection: C x W
        ("autogan_d:", 4 * 8),
        (str(EAGAN_D), 4 * 8),
        ("s:eagan_d", 4 * 8),
        (str(ADVNAS_D), 4 * 8),
        ("s:adversarialnas_d", 4 * 8),
    ],
)
def test_parameter_counts_include_the_embeddings(case, extra):
    plain, _ = build(case)
    net, _ = build(case, num_classes=C)
    assert nn.count_params(net) - nn.count_params(plain) == extra


D_CASES = ["autogan_d:", str(EAGAN_D), str(ADVNAS_D)]
D_CASES += ["s:eagan_d", "s:adversarialnas_d", "m:adversarialnas_d"]


@pytest.mark.parametrize("case", D_CASES)
def test_the_projection_is_spectrally_normalised_and_a_class_changes_d(case):
    torch.manual_seed(0)
    D, arch = build(case, num_classes=C)
    x = torch.randn(1, 3, 32, 32).repeat(2, 1, 1, 1)
    with torch.no_grad():
        for _ in range(30):  # spectral norm's power iteration converges as D trains
            call(D, x, classes(0, 1), arch)
        out = call(D.eval(), x, classes(0, 1), arch)
    assert out.shape == (2, 1) and not torch.allclose(out[0], out[1])
    weight = D.tail.projection.embed.weight  # the normalised weight the forward uses
    assert torch.linalg.matrix_norm(weight, ord=2).item() == pytest.approx(1.0, abs=0.02)
    raw = D.tail.projection.embed.parametrizations.weight.original
    assert torch.linalg.matrix_norm(raw, ord=2).item() != pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize(("g_space", "d_space"), [("nas_cell_g", "adversarialnas_d"),
                                                  ("autogan", "eagan_d")])  # fmt: skip
def test_a_conditional_supernet_pair_hands_its_weights_to_fixed_networks(g_space, d_space):
    torch.manual_seed(0)
    G = nn.build_supernet(g_space, width=W, num_classes=C)
    D = nn.build_supernet(d_space, width=W, num_classes=C)
    g, d = (spaces.get(s).sample(np.random.default_rng(1)) for s in (g_space, d_space))
    y = classes(0, 1, 2, 3)
    D(G(torch.randn(4, G.latent_dim), y, g), y, d).mean().backward()  # trains both a little
    fixed_g = nn.inherit(nn.build_generator(g, width=W, num_classes=C), G).eval()
    fixed_d = nn.inherit(nn.build_discriminator(d, width=W, num_classes=C), D).eval()
    z, x = torch.randn(4, G.latent_dim), torch.randn(4, 3, 32, 32)
    assert torch.allclose(fixed_g(z, y), G.eval()(z, y, g), atol=1e-5)
    assert torch.allclose(fixed_d(x, y), D.eval()(x, y, d), atol=1e-5)
    with pytest.raises(KeyError, match="lacks"):  # an unconditional supernet has no embeddings
        nn.inherit(
            nn.build_generator(g, width=W, num_classes=C), nn.build_supernet(g_space, width=W)
        )


def test_mixed_op_search_runs_conditional():
    """AdversarialNAS's supernets on mixed-op weights, and the MixedGenerator scored each epoch."""
    torch.manual_seed(0)
    G = nn.build_supernet("nas_cell_g", width=W, num_classes=C).eval()
    weights = nn.ArchLogits(G)()
    mixed = nn.MixedGenerator(G, weights)
    z, y = torch.randn(4, G.latent_dim), classes(3, 2, 1, 0)
    assert mixed.num_classes == C
    assert torch.equal(mixed(z, y), G(z, y, weights))
    with pytest.raises(ValueError, match="call it with its classes"):
        mixed(z)
    plain = nn.build_supernet("nas_cell_g", width=W)
    with pytest.raises(ValueError, match="not class-conditional"):
        nn.MixedGenerator(plain, nn.ArchLogits(plain)())(z, y)


def test_classes_go_positionally_or_as_a_keyword_with_the_other_options():
    torch.manual_seed(0)
    G = nn.build_supernet("autogan", width=W, num_classes=C).eval()
    z, y = torch.randn(3, G.latent_dim), classes(0, 1, 3)
    assert torch.equal(G(z, AUTOGAN_BN, y=y), G(z, y, AUTOGAN_BN))
    small = G(z, AUTOGAN_BN, y=y, n_cells=1)  # multi-level search's options pass through
    assert small.shape == (3, 3, 8, 8) and torch.equal(small, G(z, y, AUTOGAN_BN, n_cells=1))


@pytest.mark.parametrize(
    "y", [classes(0, 1), torch.tensor([0.0, 1.0, 2.0]), torch.zeros(3, 1, dtype=torch.long)]
)
def test_classes_are_one_integer_per_sample(y):
    G = nn.build_generator(zoo.EAGAN_G, width=W, num_classes=C)
    with pytest.raises(ValueError, match=r"integer tensor of shape \(3,\)"):
        G(torch.randn(3, G.latent_dim), y)


def test_a_copy_such_as_the_ema_generator_takes_its_own_classes():
    torch.manual_seed(0)
    G = nn.build_generator(zoo.EAGAN_G, width=W, num_classes=C).eval()
    ema = copy.deepcopy(G)
    z = torch.randn(2, G.latent_dim)
    assert torch.equal(ema(z, classes(2, 3)), G(z, classes(2, 3)))
    ema(z, classes(0, 0))
    assert torch.equal(G(z, classes(2, 3)), ema(z, classes(2, 3)))


def test_recalibration_draws_every_class():
    torch.manual_seed(0)
    G = nn.build_generator(zoo.EAGAN_G, width=W, num_classes=C)
    nn.recalibrate_batch_norm(G, batches=2, batch_size=8)
    norm = next(m for m in G.modules() if isinstance(m, ConditionalBatchNorm2d)).norm
    assert norm.num_batches_tracked.item() == 2
