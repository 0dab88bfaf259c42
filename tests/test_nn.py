"""raygan.nn: op registries, fixed networks, supernets and weight inheritance."""

import ast
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import raygan.nn
from raygan import spaces
from raygan.nn import (
    DOWN_OPS,
    NORMAL_OPS,
    OP_LISTS,
    UP_OPS,
    build_discriminator,
    build_generator,
    build_supernet,
    count_params,
    inherit,
)
from raygan.nn.autogan import CONV_ORDERS, NORMS, RESIZES, skip_sources
from raygan.spaces import Genotype

WIDTH = 16
G_SPACES = ["autogan", "nas_cell_g"]
D_SPACES = ["autogan_d", "eagan_d", "adversarialnas_d"]
SEEDS = range(3)


def sample(space: str, seed: int) -> Genotype:
    return spaces.get(space).sample(np.random.default_rng(seed))


def build(g: Genotype, width: int = WIDTH) -> torch.nn.Module:
    if spaces.get(g.space).role == "generator":
        return build_generator(g, width=width)
    return build_discriminator(g, width=width)


def net_input(net: torch.nn.Module, n: int = 2, resolution: int = 32) -> torch.Tensor:
    if hasattr(net, "latent_dim"):
        return torch.randn(n, net.latent_dim)
    return torch.randn(n, 3, resolution, resolution)


# ----- registries ---------------------------------------------------------------------------
def test_registries_follow_the_spaces_op_lists():
    genes = spaces.get("nas_cell_g").cells[0]
    assert tuple(UP_OPS) == genes[0].choices
    assert tuple(NORMAL_OPS) == genes[2].choices
    assert tuple(DOWN_OPS) == spaces.get("eagan_d").cells[0][5].choices
    conv, norm, up, _ = spaces.get("autogan").cells[0][:4]
    assert (tuple(CONV_ORDERS), tuple(NORMS), tuple(RESIZES)) == (
        conv.choices,
        norm.choices,
        up.choices,
    )


@pytest.mark.parametrize("sn", [False, True])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize(("registry", "scale"), [("normal", 1), ("down", 0.5)])
def test_every_normal_and_down_op_runs(registry, scale, sn, relu):
    x = torch.randn(2, 8, 8, 8)
    for name, make in OP_LISTS[registry].items():
        y = make(8, 8, sn=sn, relu=relu)(x)
        assert y.shape == (2, 8, int(8 * scale), int(8 * scale)), name


def test_every_up_op_doubles_and_narrows():
    x = torch.randn(2, 8, 4, 4)
    for name, make in UP_OPS.items():
        assert make(8, 4)(x).shape == (2, 4, 8, 8), name


def test_every_autogan_resize_and_norm_runs():
    x = torch.randn(2, 8, 4, 4)
    for name, make in RESIZES.items():
        assert make(8, 4)(x).shape == (2, 8, 16, 16), name
    for name, make in NORMS.items():
        assert make(8)(x).shape == x.shape, name


def test_parameter_free_ops_refuse_a_width_change():
    for make in (NORMAL_OPS["skip"], NORMAL_OPS["none"], DOWN_OPS["avg_pool"]):
        with pytest.raises(ValueError, match="keeps the channel count"):
            make(3, 8)


def test_conv_ops_drop_the_leading_relu_on_request():
    x = -torch.ones(1, 4, 4, 4)  # a leading ReLU zeroes it: only the bias comes out
    for relu in (True, False):
        op = NORMAL_OPS["conv1x1"](4, 4, relu=relu)
        bias_only = op.conv.bias.view(1, -1, 1, 1).expand_as(x)
        assert torch.allclose(op(x), bias_only) == relu


# ----- fixed networks -----------------------------------------------------------------------
def test_autogan_skip_bitmask_msb_is_the_earliest_cell():
    assert skip_sources(1, 1) == [0]
    assert skip_sources(2, 1) == [1]  # cell 3: 1 = from cell 2
    assert skip_sources(2, 2) == [0]  # 2 = from cell 1
    assert skip_sources(2, 3) == [0, 1]
    assert skip_sources(2, 0) == []


def test_exact_counts_beyond_the_zoo():
    a = Genotype.parse("autogan:1,0,1,1/1,0,0,1,1/1,0,1,0,3")
    # AutoGAN-A at bottom width 6 (STL-10): only the first Linear grows. Paper: about 5.07M.
    assert count_params(build_generator(a, width=256, bottom_width=6)) == 5_065_731
    # The AdversarialNAS G at STL-10's default two latent chunks of 60 (6 and 12 px maps).
    eagan = Genotype.parse("nas_cell_g:1,1,1,0,2,3,1/1,1,0,1,3,0,5/0,1,0,3,0,0,3")
    g = build_generator(eagan, width=256, bottom_width=6)
    assert [fc.in_features for fc in g.latent] == [60, 60]
    assert count_params(g) == 6_426_627


@pytest.mark.parametrize("space", G_SPACES + D_SPACES)
@pytest.mark.parametrize("seed", SEEDS)
def test_sampled_genotypes_build_run_and_backprop(space, seed):
    net = build(sample(space, seed))
    x = net_input(net).requires_grad_()
    y = net(x)
    if hasattr(net, "latent_dim"):
        assert y.shape == (2, 3, net.resolution, net.resolution)
        assert y.abs().max() <= 1
    else:
        assert y.shape == (2, 1)
    y.mean().backward()
    assert x.grad.abs().sum() > 0  # differentiable end to end


@pytest.mark.parametrize("space", G_SPACES)
def test_generators_at_stl10_resolution(space):
    net = build_generator(sample(space, 0), width=8, bottom_width=6)
    assert net.resolution == 48
    assert net(net_input(net)).shape == (2, 3, 48, 48)


@pytest.mark.parametrize("space", ["eagan_d", "adversarialnas_d"])
def test_discriminators_at_stl10_resolution(space):
    assert build(sample(space, 0), width=8)(torch.randn(2, 3, 48, 48)).shape == (2, 1)


def test_autogan_stops_early_for_multi_level_search():
    net = build_supernet("autogan", width=8)
    z = torch.randn(2, 128)
    g = sample("autogan", 0)
    assert [net(z, g, n_cells=n).shape[-1] for n in (1, 2, 3)] == [8, 16, 32]


def test_autogan_discriminator_grows_with_the_multi_level_stage():
    """Stage s runs the first s + 1 of D's first three blocks, then its last block (the first
    two blocks halve the size); the full D is stage 2."""
    torch.manual_seed(0)
    d = build_discriminator(Genotype.parse("autogan_d:"), width=8).eval()
    seen = []
    for block in d.blocks:
        block.register_forward_hook(lambda m, i, o: seen.append((m, o.shape[-1])))
    for n, px, sizes in ((1, 8, [4, 4]), (2, 16, [8, 4, 4]), (3, 32, [16, 8, 8, 8])):
        seen.clear()
        assert d(torch.rand(2, 3, px, px) * 2 - 1, n_blocks=n).shape == (2, 1)
        assert [m for m, _ in seen] == [*d.blocks[:n], d.blocks[3]]
        assert [size for _, size in seen] == sizes
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(d(x, n_blocks=3), d(x))
    with pytest.raises(ValueError, match="n_blocks"):
        d(x, n_blocks=4)


def test_initialisation_follows_methods():
    net = build_generator(sample("autogan", 1), width=64)
    bn = net.head[0]
    assert torch.all(bn.bias == 0) and (bn.weight - 1).abs().max() < 0.1
    conv = net.head[2]
    bound = (6 / ((64 + 3) * 9)) ** 0.5  # xavier_uniform for a 64 -> 3 conv3x3
    assert conv.weight.abs().max() <= bound


def test_a_fixed_network_runs_only_its_own_genotype():
    g, other = sample("nas_cell_g", 0), sample("nas_cell_g", 1)
    net = build(g)
    z = net_input(net)
    assert torch.equal(net.eval()(z), net(z, g))
    with pytest.raises(ValueError, match="cannot run"):
        net(z, other)
    with pytest.raises(ValueError, match="need a supernet"):
        net(z, {"normal": torch.ones(3, 5, 7), "up": torch.ones(3, 2, 3)})


def test_genotype_of_the_wrong_space_is_refused():
    with pytest.raises(ValueError, match="no generator for space 'eagan_d'"):
        build_generator(sample("eagan_d", 0), width=8)
    with pytest.raises(spaces.InvalidGenotype):
        build_supernet("nas_cell_g", width=8)(torch.randn(1, 120), sample("autogan", 0))


def imported_packages(module: str, seen: set[str]) -> set[str]:
    """Top-level packages a raygan module imports, following raygan's own imports."""
    spec = importlib.util.find_spec(module)
    seen.add(module)
    tree = ast.parse(Path(spec.origin).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    found = set()
    for name in names:
        if name.split(".")[0] != "raygan":
            found.add(name.split(".")[0])
        elif name not in seen:
            found |= imported_packages(name, seen)
    return found


def test_raygan_nn_and_zoo_do_not_import_ray():
    modules = [f"raygan.nn.{p.stem}" for p in Path(raygan.nn.__file__).parent.glob("*.py")]
    seen: set[str] = set()
    packages = set().union(*(imported_packages(m, seen) for m in [*modules, "raygan.zoo"]))
    assert "ray" not in packages
    assert "torch" in packages


# ----- supernets ----------------------------------------------------------------------------
def test_supernet_lists_its_edges_in_genome_order():
    g = build_supernet("nas_cell_g", width=8)
    assert g.arch_shapes() == {"up": (3, 2, 3), "normal": (3, 5, 7)}
    assert [e.name for e in g.edges()[:7]] == [
        "up0", "up1", "n0_n2", "n1_n2", "n0_n3", "n1_n3", "n2_n3"
    ]  # fmt: skip
    d = build_supernet("adversarialnas_d", width=8)
    assert d.arch_shapes() == {"normal": (4, 5, 7), "down": (4, 2, 6)}
    mask = d.arch_masks()["normal"]
    assert mask[0, :3].tolist() == [[False, False, True, True, True, True, True]] * 3
    assert mask[0, 3:].all() and mask[1:].all()


def test_supernet_holds_every_candidate_and_needs_an_architecture():
    sup = build_supernet("nas_cell_g", width=8)
    assert set(sup.cells[0].edges["n0_n2"].ops) == set(NORMAL_OPS)
    assert set(sup.cells[0].edges["up0"].ops) == set(UP_OPS)
    with pytest.raises(ValueError, match="needs an architecture"):
        sup(torch.randn(1, 120))
    with pytest.raises(TypeError, match="single-path"):
        build_supernet("autogan", width=8)(torch.randn(1, 128), {"conv": torch.ones(3, 1, 2)})


@pytest.mark.parametrize("space", G_SPACES + D_SPACES)
@pytest.mark.parametrize("seed", SEEDS)
def test_single_path_equals_the_inherited_fixed_network(space, seed):
    torch.manual_seed(seed)
    g = sample(space, seed)
    sup = build_supernet(space, width=WIDTH).eval()
    fixed = inherit(build(g), sup).eval()
    assert set(fixed.state_dict()) <= set(sup.state_dict())
    assert count_params(fixed) < count_params(sup) or not spaces.get(space).cells
    x = net_input(fixed)
    with torch.no_grad():
        torch.testing.assert_close(sup(x, g), fixed(x), rtol=0, atol=0)


def one_hot(net, g: Genotype) -> dict[str, torch.Tensor]:
    weights = {k: torch.zeros(shape) for k, shape in net.arch_shapes().items()}
    for e in net.edges():
        weights[e.group][e.cell, e.slot, g.cells[e.cell][e.gene]] = 1.0
    return weights


@pytest.mark.parametrize("space", ["nas_cell_g", "adversarialnas_d"])
@pytest.mark.parametrize("seed", SEEDS)
def test_mixed_op_with_one_hot_weights_equals_the_single_path(space, seed):
    g = sample(space, seed)
    sup = build_supernet(space, width=WIDTH).eval()
    x = net_input(sup)
    with torch.no_grad():
        torch.testing.assert_close(sup(x, one_hot(sup, g)), sup(x, g))


def test_mixed_op_weights_receive_gradients():
    sup = build_supernet("adversarialnas_d", width=8)
    logits = {k: torch.zeros(s, requires_grad=True) for k, s in sup.arch_shapes().items()}
    masks = sup.arch_masks()
    weights = {
        k: torch.softmax(v.masked_fill(~masks[k], float("-inf")), dim=-1) for k, v in logits.items()
    }
    sup(torch.randn(2, 3, 32, 32), weights).mean().backward()
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in logits.values())
    with pytest.raises(ValueError, match="expected"):
        sup(torch.randn(2, 3, 32, 32), {"normal": weights["normal"]})


def test_inherit_names_what_is_missing():
    sup = build_supernet("nas_cell_g", width=8)
    with pytest.raises(KeyError, match="lacks"):
        inherit(build(sample("autogan", 0), width=8), sup)
    with pytest.raises(ValueError, match="shapes differ"):
        inherit(build(sample("nas_cell_g", 0), width=16), sup)


def test_recalibrated_batch_norm_matches_the_generators_own_batch_statistics():
    g = build(sample("nas_cell_g", 0)).eval()
    norms = [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms
    for m in norms:  # statistics some other path left behind
        m.running_mean.fill_(3.0)
        m.running_var.fill_(50.0)
    z = torch.randn(1280, g.latent_dim, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        own = g.train()(z)  # normalised by this batch's own statistics
        before = g.eval()(z)
        raygan.nn.recalibrate_batch_norm(g, batches=20, batch_size=64, seed=1)
        after = g(z)
    assert not g.training and all(m.momentum == 0.1 for m in norms)
    assert (before - own).abs().mean() > 0.1
    assert (after - own).abs().mean() < 0.01
