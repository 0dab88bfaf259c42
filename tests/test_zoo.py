"""raygan.zoo: the published architectures, with exactly the authors' parameter counts."""

import pytest
import torch

from raygan import spaces, zoo
from raygan.nn import count_params

# Exact (G, D) counts of the authors' networks at the published widths. The papers round them
# to 4.41M / 1.05M (AutoGAN-A, AutoGAN-D), 8.85M (AdversarialNAS), 7.14M / 0.91M (EAGAN CIFAR-10)
# and 11.55M / 1.58M (EAGAN STL-10); AutoGAN-B and -C have no published count.
EXACT = {
    "autogan_cifar10_a": (4_405_251, 1_053_824),
    "autogan_cifar10_b": (4_471_043, 1_053_824),
    "autogan_cifar10_c": (4_406_275, 1_053_824),
    "adversarialnas_cifar10": (8_846_851, 1_053_824),
    "eagan_cifar10": (7_142_403, 906_240),
    "eagan_stl10": (11_550_723, 1_578_112),
}


def test_the_zoo_has_the_six_published_entries():
    assert set(zoo.ZOO) == set(EXACT)


@pytest.mark.parametrize("name", EXACT)
def test_parameter_counts_are_the_authors_exactly(name):
    entry = zoo.get(name)
    g_params, d_params = zoo.param_counts(name)
    assert (g_params, d_params) == EXACT[name]
    for count, reported in (
        (g_params, entry.reported_g_params),
        (d_params, entry.reported_d_params),
    ):
        if reported is not None:
            assert round(count / 1e6, 2) == reported


@pytest.mark.parametrize("name", EXACT)
def test_every_entry_trains_at_its_resolution_when_scaled_down(name):
    entry = zoo.get(name)
    g, d = zoo.build(name, width_scale=0.125)
    z = torch.randn(2, g.latent_dim, requires_grad=True)
    images = g(z)
    assert images.shape == (2, 3, entry.resolution, entry.resolution)
    assert images.abs().max() <= 1
    logits = d(images)
    assert logits.shape == (2, 1)
    logits.mean().backward()
    assert z.grad.abs().sum() > 0


def test_a_full_width_pair_runs_forward_and_backward():
    g, d = zoo.build("eagan_stl10")
    assert count_params(g) == EXACT["eagan_stl10"][0]
    images = g(torch.randn(2, g.latent_dim))
    assert images.shape == (2, 3, 48, 48) and images.abs().max() <= 1
    d(images).mean().backward()
    assert g.latent[0].weight.grad is not None


def test_eagan_g_keeps_the_authors_unused_up_op():
    """In EAGAN's G, cell 3's n0 feeds only `none` edges, yet the authors' network has its
    up op (a 1x1 conv: 65,792 parameters at gf 256), and 7.14M counts it. So does ours."""
    g, _ = zoo.build("eagan_cifar10")
    dead = g.cells[2].edges["up0"]
    assert count_params(dead) == 256 * 256 + 256
    g(torch.randn(2, g.latent_dim)).mean().backward()
    assert all(p.grad is None for p in dead.parameters())


def test_entries_are_valid_and_consistent():
    for entry in zoo.ZOO.values():
        spaces.validate(entry.g)
        spaces.validate(entry.d)
        assert entry.resolution == 8 * entry.bottom_width
        assert entry.resolution == (48 if entry.dataset == "stl10" else 32)
    assert zoo.get("adversarialnas_cifar10").d == spaces.Genotype.parse("autogan_d:")
    assert zoo.get("eagan_cifar10").reported_is_std == 0.10


def test_width_scale_rounds_to_multiples_of_eight():
    assert [zoo.scaled(256, s) for s in (1.0, 0.5, 0.1, 0.01)] == [256, 128, 24, 8]
    g, d = zoo.build("autogan_cifar10_a", width_scale=0.25)
    assert (g.width, d.tail.fc.in_features) == (64, 32)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(KeyError) as info:
        zoo.get("autogan_cifar100")
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith("unknown arch 'autogan_cifar100'; choose from: ")
    assert "eagan_stl10" in str(info.value)


def test_table_puts_built_counts_beside_reported_numbers():
    rows = zoo.table()
    assert [r["name"] for r in rows] == list(zoo.ZOO)
    row = rows[0]
    assert {
        "name",
        "dataset",
        "resolution",
        "g_params",
        "d_params",
        "reported_is",
        "reported_fid",
    } <= set(row)
    assert (row["g_params"], row["d_params"]) == EXACT["autogan_cifar10_a"]
    assert (row["reported_is"], row["reported_fid"]) == (8.55, 12.42)
