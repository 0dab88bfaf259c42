"""Mixed-op search pieces (raygan.nn.mixed), pure torch: one-hot weights run the single path,
masks, Gumbel-softmax, derivation under the spaces' rules, entropy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from raygan import nn, spaces
from raygan.nn.arch import edge_specs

G_SPACE, D_SPACE = "nas_cell_g", "adversarialnas_d"


def one_hot_logits(alpha: nn.ArchLogits, genotype: spaces.Genotype) -> None:
    """Logits so peaked that the masked softmax is exactly one-hot on ``genotype``'s ops."""
    with torch.no_grad():
        for logits in alpha.logits.values():
            logits.zero_()
        for e in edge_specs(genotype.space):
            alpha.logits[e.group][e.cell, e.slot, genotype.cells[e.cell][e.gene]] = 1e4


# ----- mixed ops --------------------------------------------------------------------------------
@pytest.mark.parametrize("space", [G_SPACE, D_SPACE])
def test_one_hot_architecture_weights_run_the_single_path(space):
    torch.manual_seed(0)
    supernet = nn.build_supernet(space, width=8).eval()
    alpha = nn.ArchLogits(supernet)
    x = torch.randn(4, 120) if space == G_SPACE else torch.rand(4, 3, 32, 32) * 2 - 1
    for seed in range(3):
        genotype = spaces.get(space).sample(np.random.default_rng(seed))
        one_hot_logits(alpha, genotype)
        with torch.no_grad():
            mixed, single = supernet(x, alpha()), supernet(x, genotype)
        assert torch.allclose(mixed, single, atol=1e-6)


def test_mixed_generator_runs_the_supernet_with_fixed_weights():
    torch.manual_seed(0)
    supernet = nn.build_supernet(G_SPACE, width=8).eval()
    weights = nn.ArchLogits(supernet).probabilities()
    mixed = nn.MixedGenerator(supernet, weights)
    assert (mixed.latent_dim, mixed.resolution) == (supernet.latent_dim, supernet.resolution)
    z = torch.randn(2, supernet.latent_dim)
    with torch.no_grad():
        assert torch.equal(mixed(z), supernet(z, weights))


def test_masked_choices_get_no_weight_and_rows_sum_to_one():
    alpha = nn.ArchLogits(nn.build_supernet(D_SPACE, width=8))
    with torch.no_grad():
        alpha.logits["normal"][0, :3, :2] = 50.0  # none/skip of the first cell's input edges
    weights_by_kind = (
        alpha(),
        alpha(tau=0.5, noise=torch.Generator().manual_seed(0)),
        alpha.probabilities(),
    )
    for weights in weights_by_kind:
        assert torch.equal(weights["normal"][0, :3, :2], torch.zeros(3, 2))
        for w in weights.values():
            assert torch.allclose(w.sum(-1), torch.ones(w.shape[:-1]))
    assert nn.mean_entropy(alpha.probabilities()) > 0


def test_logits_are_one_parameter_per_group_and_masks_are_not_saved():
    supernet = nn.build_supernet(D_SPACE, width=8)
    alpha = nn.ArchLogits(supernet)
    shapes = supernet.arch_shapes()
    assert {g: tuple(p.shape) for g, p in alpha.logits.items()} == shapes
    assert sorted(alpha.state_dict()) == sorted(f"logits.{g}" for g in shapes)
    assert [b for b in alpha.buffers()] and all(b.dtype == torch.bool for b in alpha.buffers())


def test_gumbel_noise_is_added_to_logits():
    """Gumbel-max on the logits samples argmax with the softmax's probabilities."""
    alpha = nn.ArchLogits(nn.build_supernet(G_SPACE, width=8))
    target = torch.tensor([0.6, 0.3, 0.1])
    with torch.no_grad():
        alpha.logits["up"][:] = target.log()
    noise = torch.Generator().manual_seed(0)
    picks = torch.cat([alpha(tau=1.0, noise=noise)["up"].argmax(-1).flatten() for _ in range(500)])
    frequency = torch.bincount(picks, minlength=3).float() / len(picks)
    assert torch.allclose(frequency, target, atol=0.03)


def test_gumbel_samples_come_from_the_given_noise_and_sharpen_as_tau_falls():
    alpha = nn.ArchLogits(nn.build_supernet(G_SPACE, width=8))
    a = alpha(tau=1.0, noise=torch.Generator().manual_seed(5))
    b = alpha(tau=1.0, noise=torch.Generator().manual_seed(5))
    c = alpha(tau=1.0, noise=torch.Generator().manual_seed(6))
    assert all(torch.equal(a[g], b[g]) for g in a)
    assert not all(torch.equal(a[g], c[g]) for g in a)
    with torch.no_grad():
        hot = alpha(tau=1.0, noise=torch.Generator().manual_seed(7))
        cold = alpha(tau=0.05, noise=torch.Generator().manual_seed(7))
    assert nn.mean_entropy(cold) < nn.mean_entropy(hot)
    assert all(torch.equal(hot[g].argmax(-1), cold[g].argmax(-1)) for g in hot)  # same noise


def test_weights_carry_gradients_to_the_logits():
    alpha = nn.ArchLogits(nn.build_supernet(D_SPACE, width=8))
    for weights in (alpha(), alpha(tau=0.5, noise=torch.Generator().manual_seed(0))):
        alpha.zero_grad()
        sum(w[..., -1].sum() for w in weights.values()).backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in alpha.parameters())
    assert not alpha.probabilities()["normal"].requires_grad


# ----- derivation -------------------------------------------------------------------------------
def probabilities(space: str, fill: dict[tuple[int, int], list[float]]) -> dict:
    """Uniform weights, except ``fill[(cell, gene)]`` (normalised over the edge)."""
    shapes = nn.build_supernet(space, width=4).arch_shapes()
    probs = {g: torch.full(s, 1.0 / s[-1]) for g, s in shapes.items()}
    specs = {(e.cell, e.gene): e for e in edge_specs(space)}
    for key, values in fill.items():
        e = specs[key]
        probs[e.group][e.cell, e.slot] = torch.tensor(values) / sum(values)
    return probs


def test_generator_derivation_keeps_one_input_per_node():
    none_first = {  # cell 1: every input of n2 and of n3 prefers `none`
        (0, 0): [1, 5, 2],
        (0, 2): [9, 1, 1, 1, 1, 1, 1],  # n0->n2: none 0.6
        (0, 3): [6, 1, 1, 1, 3, 1, 1],  # n1->n2: none 0.43, best op conv5x5 (4)
        (0, 4): [8, 1, 1, 1, 1, 2, 1],  # n0->n3: none 0.53
        (0, 5): [5, 1, 1, 1, 1, 1, 4],  # n1->n3: none 0.36, best op dil_conv5x5 (6)
        (0, 6): [7, 1, 1, 1, 1, 1, 1],  # n2->n3: none 0.54
        (1, 2): [1, 1, 1, 9, 1, 1, 1],  # cell 2: a plain argmax stays
    }
    g = nn.derive(G_SPACE, probabilities(G_SPACE, none_first))
    assert g.space == G_SPACE
    assert g.cells[0] == (1, 0, 0, 4, 0, 6, 0)
    assert g.cells[1][2] == 3


def test_discriminator_derivation_follows_its_node_rules():
    fill = {
        (0, 0): [50, 50, 1, 1, 2, 1, 1],  # first cell: none and skip are not allowed
        (1, 0): [5, 1, 1, 1, 1, 2, 1],  # node0 = e0 alone: takes its best op
        (1, 1): [6, 1, 1, 1, 1, 1, 1],  # node1 = e1 + e3, both none
        (1, 3): [4, 1, 1, 3, 1, 1, 1],  # ... e3's none is lower: it takes conv3x3
        (1, 5): [1, 1, 1, 1, 7, 1],  # down0: plain argmax
    }
    d = nn.derive(D_SPACE, probabilities(D_SPACE, fill))
    assert d.space == D_SPACE
    assert d.cells[0][0] == 4
    assert d.cells[1][0] == 5 and d.cells[1][1] == 0 and d.cells[1][3] == 3
    assert d.cells[1][5] == 4


@pytest.mark.parametrize("space", [G_SPACE, D_SPACE])
def test_derived_genotypes_are_always_valid(space):
    alpha = nn.ArchLogits(nn.build_supernet(space, width=4))
    rule_positions = [r.positions for r in spaces.get(space).rules]
    for seed in range(50):
        torch.manual_seed(seed)
        with torch.no_grad():
            for logits in alpha.logits.values():
                logits.copy_(torch.randn_like(logits))
            alpha.logits["normal"][..., 0] += 2.0  # `none` often wins
        genotype = nn.derive(space, alpha.probabilities())  # validated by the space
        assert spaces.Genotype.parse(str(genotype)) == genotype
        for cell in genotype.cells:
            assert all(any(cell[p] != 0 for p in rule) for rule in rule_positions)


@pytest.mark.parametrize("space", [G_SPACE, D_SPACE])
def test_derivation_of_one_hot_logits_gives_back_the_genotype(space):
    alpha = nn.ArchLogits(nn.build_supernet(space, width=4))
    for seed in range(5):
        genotype = spaces.get(space).sample(np.random.default_rng(seed))
        one_hot_logits(alpha, genotype)
        assert nn.derive(space, alpha.probabilities()) == genotype


def test_entropy_of_uniform_weights_is_log_of_the_choices():
    probs = {"up": torch.full((3, 2, 3), 1 / 3), "normal": torch.full((3, 5, 7), 1 / 7)}
    expected = (6 * math.log(3) + 15 * math.log(7)) / 21
    assert nn.mean_entropy(probs) == pytest.approx(expected)


def test_entropy_counts_masked_zeros_as_nothing():
    one_hot = {"normal": torch.tensor([[[0.0, 1.0, 0.0], [0.5, 0.5, 0.0]]])}
    assert nn.mean_entropy(one_hot) == pytest.approx(math.log(2) / 2)
