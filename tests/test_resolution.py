"""64 px and up (issue 24): the four-cell generator spaces, the layout rules of
raygan.nn.resolution, every G and D family at 32, 48, 64 and 128 px, the zoo at 64 px,
inheritance from four-cell supernets, class-conditional networks at 64 px."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from raygan import nn, spaces, zoo
from raygan.nn.autogan import skip_sources
from raygan.spaces import Genotype

W = 8  # width of every network here
SIZES = (32, 48, 64, 128)
FAMILIES = ("nas_cell_g", "autogan")
D_SPACES = ("autogan_d", "eagan_d", "adversarialnas_d")
P = Genotype.parse


def sample(space: str, seed: int = 0) -> Genotype:
    return spaces.get(space).sample(np.random.default_rng(seed))


def d_genotype(space: str, seed: int = 0) -> Genotype:
    """A discriminator genotype of ``space`` (AutoGAN-D has only one)."""
    return P("autogan_d:") if space == "autogan_d" else sample(space, seed)


def last_features(d: torch.nn.Module, x: torch.Tensor, *args: object, **options: object):
    """The spatial size of the features D's tail pools (what its last layer sees) when D runs
    on ``x`` with ``args`` and ``options``."""
    seen: list[tuple[int, ...]] = []
    hook = d.tail.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape[-2:])))
    try:
        assert d(x, *args, **options).shape == (len(x), 1)
    finally:
        hook.remove()
    return seen[0]


# ----- the four-cell spaces ------------------------------------------------------------------
def _nas_cell_settings() -> int:
    """Settings of one nas_cell generator cell, counted from METHODS.md directly: 3 x 3 up
    ops, five edges of 7 normal ops (0 = none), n2's two inputs not both none, n3's three
    inputs not all none."""
    normal = range(7)
    return 9 * sum(
        1
        for a, b, c, d, e in itertools.product(normal, repeat=5)
        if (a, b) != (0, 0) and (c, d, e) != (0, 0, 0)
    )


def test_four_cell_nas_space_is_counted_exactly():
    per_cell = _nas_cell_settings()
    assert per_cell == 147_744
    space = spaces.get("nas_cell_g4")
    assert [space.cell_size(i) for i in range(4)] == [per_cell] * 4
    assert space.size() == per_cell**4 == 476_474_224_067_447_095_296


def test_four_cell_autogan_space_is_counted_exactly():
    # conv order 2 x norm 3 x up 3 x shortcut 2, times a skip mask over the earlier cells
    per_cell = [len(list(itertools.product(range(2), range(3), range(3), range(2))))] * 4
    per_cell = [n * 2**i for i, n in enumerate(per_cell)]
    space = spaces.get("autogan4")
    assert per_cell == [36, 72, 144, 288]
    assert [space.cell_size(i) for i in range(4)] == per_cell
    assert space.size() == 36 * 72 * 144 * 288 == 107_495_424


@pytest.mark.parametrize(
    ("three", "four"), [("nas_cell_g", "nas_cell_g4"), ("autogan", "autogan4")]
)
def test_a_four_cell_space_extends_its_three_cell_space(three, four):
    small, big = spaces.get(three), spaces.get(four)
    assert big.role == small.role == "generator"
    assert len(big.cells) == 4 and big.cells[:3] == small.cells
    assert big.rules == small.rules


def test_the_fourth_autogan_cell_may_add_any_earlier_cells_skip():
    """Its mask's choice names say the cells :func:`skip_sources` reads from it, and bit b is
    the cell b + 1 steps back, in cell 4 as in cell 3."""
    gene = spaces.get("autogan4").cells[3][4]
    assert len(gene.choices) == 8
    for mask, name in enumerate(gene.choices):
        named = {"none": [], "all": [0, 1, 2]}.get(name)
        if named is None:
            named = [int(part[-1]) - 1 for part in name.split("_")]
        assert skip_sources(3, mask) == named
    assert skip_sources(3, 3) == [1, 2] and skip_sources(2, 3) == [0, 1]  # the 2 cells before


# ----- the layout rules ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("space", "resolution", "cells", "expected"),
    [
        ("nas_cell_g", 32, None, ("nas_cell_g", 4)),
        ("nas_cell_g", 48, None, ("nas_cell_g", 6)),
        ("nas_cell_g", 64, None, ("nas_cell_g", 8)),
        ("nas_cell_g", 128, None, ("nas_cell_g4", 8)),
        ("nas_cell_g", 64, 4, ("nas_cell_g4", 4)),
        ("nas_cell_g4", 64, 4, ("nas_cell_g4", 4)),
        ("nas_cell_g4", 32, 3, ("nas_cell_g", 4)),
        ("autogan", 128, None, ("autogan4", 8)),
        ("autogan4", 64, 3, ("autogan", 8)),
        ("autogan", 64, 4, ("autogan4", 4)),
    ],
)
def test_generator_layout(space, resolution, cells, expected):
    layout = nn.generator_layout(space, resolution, cells=cells)
    assert layout == expected
    name, bottom_width = layout
    assert bottom_width * 2 ** len(spaces.get(name).cells) == resolution


@pytest.mark.parametrize("resolution", [40, 96, 256, 16, 0])
def test_a_resolution_no_layout_reaches_is_refused_in_one_line(resolution):
    for call in (
        lambda: nn.generator_layout("nas_cell_g", resolution),
        lambda: nn.discriminator_downsamples(resolution),
        lambda: nn.build_discriminator(P("autogan_d:"), width=W, resolution=resolution),
        lambda: nn.build_supernet("eagan_d", width=W, resolution=resolution),
    ):
        with pytest.raises(ValueError, match=r"allowed: 32, 48, 64, 128$") as err:
            call()
        assert f"resolution {resolution} px" in str(err.value)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize(("resolution", "cells"), [(32, 4), (48, 4), (128, 3), (64, 5)])
def test_a_cell_count_that_does_not_reach_the_resolution_is_refused(resolution, cells):
    with pytest.raises(ValueError, match=f"not reached with {cells} generator cells"):
        nn.generator_layout("autogan", resolution, cells=cells)


def test_only_generator_families_have_layouts():
    with pytest.raises(ValueError, match="generator spaces: autogan, autogan4, nas_cell_g"):
        nn.generator_layout("eagan_d", 32)


def test_discriminators_downsample_once_per_doubling_above_32_px():
    assert [nn.discriminator_downsamples(r) for r in SIZES] == [0, 0, 1, 2]


def test_a_generator_refuses_a_resolution_it_does_not_make():
    assert nn.build_supernet("nas_cell_g", width=W, bottom_width=8, resolution=64).resolution == 64
    four = sample("autogan4")
    assert nn.build_generator(four, width=W, bottom_width=4, resolution=64).resolution == 64
    with pytest.raises(ValueError, match=r"makes 32 px, not 64; nn.generator_layout"):
        nn.build_supernet("nas_cell_g", width=W, resolution=64)
    with pytest.raises(ValueError, match=r"autogan4 generator of bottom width 8 makes 128 px"):
        nn.build_generator(four, width=W, bottom_width=8, resolution=64)


# ----- every family at every size --------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("resolution", SIZES)
def test_every_generator_family_makes_every_size(family, resolution):
    space, bottom_width = nn.generator_layout(family, resolution)
    g = sample(space, resolution)
    fixed = nn.build_generator(g, width=W, bottom_width=bottom_width)
    supernet = nn.build_supernet(space, width=W, bottom_width=bottom_width)
    z = torch.randn(2, fixed.latent_dim)
    for net, args in ((fixed, ()), (supernet, (g,))):
        assert net.resolution == resolution
        images = net(z, *args)
        assert images.shape == (2, 3, resolution, resolution)
        assert images.abs().max() <= 1


@pytest.mark.parametrize("family", FAMILIES)
def test_four_cells_make_64_px_from_bottom_width_4(family):
    space, bottom_width = nn.generator_layout(family, 64, cells=4)
    g = nn.build_generator(sample(space, 1), width=W, bottom_width=bottom_width)
    assert g(torch.randn(2, g.latent_dim)).shape == (2, 3, 64, 64)


@pytest.mark.parametrize("space", D_SPACES)
def test_every_discriminator_ends_at_its_32_px_feature_size(space):
    d_g = d_genotype(space)
    sizes = {}
    for r in SIZES:
        torch.manual_seed(0)
        fixed = nn.build_discriminator(d_g, width=W, resolution=r)
        supernet = nn.build_supernet(space, width=W, resolution=r)
        assert fixed.resolution == supernet.resolution == r
        x = torch.randn(2, 3, r, r)
        sizes[r] = last_features(fixed, x)
        assert last_features(supernet, x, d_g) == sizes[r]
    assert sizes[64] == sizes[128] == sizes[32]
    assert sizes[48] == tuple(s * 3 // 2 for s in sizes[32])  # no extra block at 48 px


@pytest.mark.parametrize("space", D_SPACES)
def test_extra_blocks_only_above_48_px_and_spectrally_normalised(space):
    def params(r: int) -> int:
        return nn.count_params(nn.build_discriminator(d_genotype(space), width=W, resolution=r))

    assert params(32) == params(48) < params(64) < params(128)
    d = nn.build_discriminator(d_genotype(space), width=W, resolution=128)
    convs = [m for m in d.extra.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(d.extra) == 2 and convs
    assert all(hasattr(m, "parametrizations") for m in convs)  # spectral norm on each


def test_autogan_d_runs_its_extra_blocks_at_every_multi_level_stage():
    """At 64 px (bottom width 8) AutoGAN's stages generate 16, 32 and 64 px; D's features end
    at the sizes they end at in the 32 px search's stages (8, 16 and 32 px)."""

    def stage_ends(resolution: int) -> list[tuple[int, int]]:
        d = nn.build_discriminator(P("autogan_d:"), width=W, resolution=resolution)
        pixels = [resolution // 4, resolution // 2, resolution]
        return [
            last_features(d, torch.randn(2, 3, px, px), n_blocks=n)
            for n, px in enumerate(pixels, start=1)
        ]

    assert stage_ends(64) == stage_ends(32) == [(4, 4), (4, 4), (8, 8)]


# ----- the zoo at 64 px --------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_every_published_pair_builds_at_64_px_from_bottom_width_8(name):
    entry = zoo.get(name)
    space, bottom_width = nn.generator_layout(entry.g.space, 64, cells=len(entry.g.cells))
    assert (space, bottom_width) == (entry.g.space, 8)
    g = nn.build_generator(entry.g, width=W, bottom_width=bottom_width, **entry.generator_options())
    d = nn.build_discriminator(entry.d, width=W, resolution=64)
    z = torch.randn(2, g.latent_dim, requires_grad=True)
    images = g(z)
    assert images.shape == (2, 3, 64, 64)
    d(images).mean().backward()
    assert z.grad.abs().sum() > 0


def test_only_the_latent_linears_grow_from_32_to_64_px():
    """Bottom width 8 instead of 4 changes nothing but the maps the latent is mapped to: for
    nas_cell_g three chunks of 40 (the default at bottom width 8) to 8, 16 and 32 px maps."""
    eagan = zoo.EAGAN_G
    g32 = nn.build_generator(eagan, width=W, bottom_width=4)
    g64 = nn.build_generator(eagan, width=W, bottom_width=8)
    assert [fc.in_features for fc in g64.latent] == [40, 40, 40]
    assert [fc.out_features for fc in g64.latent] == [W * s * s for s in (8, 16, 32)]
    grown = sum(41 * W * ((8 * 2**i) ** 2 - (4 * 2**i) ** 2) for i in range(3))
    assert nn.count_params(g64) - nn.count_params(g32) == grown
    autogan = zoo.get("autogan_cifar10_a").g
    a32, a64 = (nn.build_generator(autogan, width=W, bottom_width=b) for b in (4, 8))
    assert nn.count_params(a64) - nn.count_params(a32) == 129 * W * (64 - 16)


def test_four_cell_nas_generator_takes_three_latent_chunks_unless_told():
    g = nn.build_supernet("nas_cell_g4", width=W, bottom_width=4)
    assert [fc.in_features for fc in g.latent] == [40, 40, 40]
    four = nn.build_supernet("nas_cell_g4", width=W, bottom_width=4, latent_chunks=4)
    assert [fc.out_features for fc in four.latent] == [W * s * s for s in (4, 8, 16, 32)]
    assert four(torch.randn(2, 120), sample("nas_cell_g4")).shape == (2, 3, 64, 64)
    with pytest.raises(ValueError, match=r"be 1\.\.4"):
        nn.build_supernet("nas_cell_g4", width=W, latent_chunks=5)


# ----- inheritance and mixed ops ------------------------------------------------------------------
@pytest.mark.parametrize(("space", "bottom_width"), [("nas_cell_g4", 4), ("autogan4", 8)])
@pytest.mark.parametrize("seed", range(2))
def test_a_four_cell_supernet_hands_its_weights_to_a_fixed_network(space, bottom_width, seed):
    torch.manual_seed(seed)
    g = sample(space, seed)
    sup = nn.build_supernet(space, width=W, bottom_width=bottom_width).eval()
    fixed = nn.build_generator(g, width=W, bottom_width=bottom_width)
    before = fixed.state_dict()["head.2.weight"].clone()
    fixed = nn.inherit(fixed, sup).eval()
    assert set(fixed.state_dict()) <= set(sup.state_dict())
    assert nn.count_params(fixed) < nn.count_params(sup)
    assert not torch.equal(before, fixed.state_dict()["head.2.weight"])
    z = torch.randn(2, fixed.latent_dim)
    with torch.no_grad():
        torch.testing.assert_close(sup(z, g), fixed(z), rtol=0, atol=0)


@pytest.mark.parametrize("space", D_SPACES)
def test_a_discriminator_supernet_hands_its_extra_blocks_on_at_128_px(space):
    torch.manual_seed(0)
    d_g = d_genotype(space, 2)
    sup = nn.build_supernet(space, width=W, resolution=128)
    fixed = nn.inherit(nn.build_discriminator(d_g, width=W, resolution=128), sup)
    assert any(k.startswith("extra.1.") for k in fixed.state_dict())
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(sup(x, d_g), fixed(x), rtol=0, atol=0)
    smaller = nn.build_supernet(space, width=W, resolution=64)  # one extra block fewer
    with pytest.raises(KeyError, match="lacks"):
        nn.inherit(nn.build_discriminator(d_g, width=W, resolution=128), smaller)


def one_hot(net: torch.nn.Module, g: Genotype) -> dict[str, torch.Tensor]:
    weights = {k: torch.zeros(shape) for k, shape in net.arch_shapes().items()}
    for e in net.edges():
        weights[e.group][e.cell, e.slot, g.cells[e.cell][e.gene]] = 1.0
    return weights


def test_the_four_cell_nas_supernet_searches_with_mixed_ops():
    sup = nn.build_supernet("nas_cell_g4", width=W, bottom_width=4).eval()
    assert sup.arch_shapes() == {"up": (4, 2, 3), "normal": (4, 5, 7)}
    g = sample("nas_cell_g4", 3)
    z = torch.randn(2, 120)
    with torch.no_grad():
        torch.testing.assert_close(sup(z, one_hot(sup, g)), sup(z, g))
    logits = nn.ArchLogits(sup)
    assert nn.derive("nas_cell_g4", one_hot(sup, g)) == g
    assert nn.derive("nas_cell_g4", logits.probabilities()).space == "nas_cell_g4"
    sup.train()(z, logits()).mean().backward()
    assert all(p.grad is not None for p in logits.parameters())


def test_the_adversarialnas_d_supernet_mixes_at_64_px():
    sup = nn.build_supernet("adversarialnas_d", width=W, resolution=64).eval()
    d_g = sample("adversarialnas_d", 4)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(sup(x, one_hot(sup, d_g)), sup(x, d_g))


def test_autogan4_is_searched_single_path_only():
    sup = nn.build_supernet("autogan4", width=W)
    with pytest.raises(TypeError, match="single-path"):
        sup(torch.randn(1, 128), {"conv": torch.ones(4, 1, 2)})


# ----- class-conditional at 64 px -----------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("cells", [3, 4])
def test_a_conditional_generator_at_64_px(family, cells):
    space, bottom_width = nn.generator_layout(family, 64, cells=cells)
    g = nn.build_generator(sample(space, 5), width=W, bottom_width=bottom_width, num_classes=3)
    z = torch.randn(2, g.latent_dim)
    images = g(z, torch.tensor([0, 2]))
    assert images.shape == (2, 3, 64, 64)
    assert not torch.equal(images, g(z, torch.tensor([1, 1])))


@pytest.mark.parametrize("space", D_SPACES)
def test_a_conditional_discriminator_at_64_px(space):
    torch.manual_seed(0)
    d = nn.build_discriminator(d_genotype(space), width=W, resolution=64, num_classes=3)
    x = torch.randn(2, 3, 64, 64)
    assert last_features(d, x, torch.tensor([0, 1])) == last_features(
        nn.build_discriminator(d_genotype(space), width=W), torch.randn(2, 3, 32, 32)
    )
    assert not torch.equal(d(x, torch.tensor([0, 0])), d(x, torch.tensor([2, 2])))
    sup = nn.build_supernet(space, width=W, resolution=64, num_classes=3)
    assert sup(x, torch.tensor([0, 1]), d_genotype(space)).shape == (2, 1)
