"""AdversarialNAS: mixed ops, update order, derivation, DDP replicas, recovery, the command."""

from __future__ import annotations

import glob
import json
import math
import os

import numpy as np
import pytest
import torch

from raygan import cli, data, nn, results, spaces
from raygan.nn.arch import edge_specs
from raygan.strategies import adversarialnas as an

TINY = dict(gf=8, df=8, batch=8, epochs=1, n_critic=2, max_images=64, eval_samples=20)


def tiny_search(**overrides) -> an.AdversarialSearch:
    spec = an.SearchSpec(out="unused", experiment="unused", **{**TINY, **overrides})
    return an.AdversarialSearch(spec, torch.device("cpu"), total_iterations=10)


def real_batch(n: int = 8, seed: int = 0) -> torch.Tensor:
    return data.DeviceBatches(data.load("shapes", max_images=32, seed=seed), seed=seed).sample(n)


def flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


def one_hot_logits(alpha: an.ArchLogits, genotype: spaces.Genotype) -> None:
    """Logits so peaked that the masked softmax is exactly one-hot on ``genotype``'s ops."""
    with torch.no_grad():
        for logits in alpha.logits.values():
            logits.zero_()
        for e in edge_specs(genotype.space):
            alpha.logits[e.group][e.cell, e.slot, genotype.cells[e.cell][e.gene]] = 1e4


# ----- mixed ops --------------------------------------------------------------------------------
@pytest.mark.parametrize("space", [an.G_SPACE, an.D_SPACE])
def test_one_hot_architecture_weights_run_the_single_path(space):
    torch.manual_seed(0)
    supernet = nn.build_supernet(space, width=8).eval()
    alpha = an.ArchLogits(supernet)
    x = torch.randn(4, 120) if space == an.G_SPACE else torch.rand(4, 3, 32, 32) * 2 - 1
    for seed in range(3):
        genotype = spaces.get(space).sample(np.random.default_rng(seed))
        one_hot_logits(alpha, genotype)
        with torch.no_grad():
            mixed, single = supernet(x, alpha()), supernet(x, genotype)
        assert torch.allclose(mixed, single, atol=1e-6)


def test_masked_choices_get_no_weight_and_rows_sum_to_one():
    alpha = an.ArchLogits(nn.build_supernet(an.D_SPACE, width=8))
    with torch.no_grad():
        alpha.logits["normal"][0, :3, :2] = 50.0  # none/skip of the first cell's input edges
    for weights in (alpha(), alpha(tau=0.5, noise=torch.Generator().manual_seed(0))):
        assert torch.equal(weights["normal"][0, :3, :2], torch.zeros(3, 2))
        for w in weights.values():
            assert torch.allclose(w.sum(-1), torch.ones(w.shape[:-1]))
    assert an.mean_entropy(alpha.probabilities()) > 0


def test_gumbel_noise_is_added_to_logits():
    """Gumbel-max on the logits samples argmax with the softmax's probabilities."""
    alpha = an.ArchLogits(nn.build_supernet(an.G_SPACE, width=8))
    target = torch.tensor([0.6, 0.3, 0.1])
    with torch.no_grad():
        alpha.logits["up"][:] = target.log()
    noise = torch.Generator().manual_seed(0)
    picks = torch.cat([alpha(tau=1.0, noise=noise)["up"].argmax(-1).flatten() for _ in range(500)])
    frequency = torch.bincount(picks, minlength=3).float() / len(picks)
    assert torch.allclose(frequency, target, atol=0.03)


def test_temperature_anneals_from_start_to_end():
    search = tiny_search(gumbel=True, tau_start=2.0, tau_end=0.5)
    assert search.tau() == pytest.approx(2.0)
    search.iterations = 5
    assert search.tau() == pytest.approx(1.0)
    search.iterations = 10
    assert search.tau() == pytest.approx(0.5)
    assert tiny_search().tau() is None


# ----- update order -----------------------------------------------------------------------------
def test_each_step_changes_only_its_own_parameters():
    search = tiny_search()
    groups = {
        "g": search.g,
        "d": search.d,
        "g_arch": search.alpha_g,
        "d_arch": search.alpha_d,
        "g_ema": search.g_ema,
    }
    real = real_batch(4)
    steps = [
        ("d_arch", lambda: search.d_arch_step(real), {"d_arch"}),
        ("d", lambda: search.d_weight_step(real), {"d"}),
        ("g_arch", search.g_arch_step, {"g_arch"}),
        ("g", search.g_weight_step, {"g", "g_ema"}),
    ]
    for _ in range(2):  # the second round runs with grads left over from the first
        for name, step, changes in steps:
            before = {k: flat(m) for k, m in groups.items()}
            step()
            changed = {k for k, m in groups.items() if not torch.equal(before[k], flat(m))}
            assert changed == changes, name


def test_iteration_order_and_batch_halves():
    search = tiny_search(n_critic=3)
    calls = []
    for name in ("d_arch_step", "d_weight_step"):
        setattr(search, name, lambda real, n=name: calls.append((n, real)) or 0.0)
    for name in ("g_arch_step", "g_weight_step"):
        setattr(search, name, lambda n=name: calls.append((n, None)) or 0.0)
    real = torch.arange(8.0)
    losses = [search.iteration(real) for _ in range(6)]
    d_pair = ["d_arch_step", "d_weight_step"]
    g_pair = ["g_arch_step", "g_weight_step"]
    assert [n for n, _ in calls] == (d_pair * 3 + g_pair) * 2
    assert torch.equal(calls[0][1], real[:4]) and torch.equal(calls[1][1], real[4:])
    assert [sorted(x) for x in losses[2::3]] == [["d", "d_arch", "g", "g_arch"]] * 2


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
    g = an.derive(an.G_SPACE, probabilities(an.G_SPACE, none_first))
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
    d = an.derive(an.D_SPACE, probabilities(an.D_SPACE, fill))
    assert d.cells[0][0] == 4
    assert d.cells[1][0] == 5 and d.cells[1][1] == 0 and d.cells[1][3] == 3
    assert d.cells[1][5] == 4


@pytest.mark.parametrize("space", [an.G_SPACE, an.D_SPACE])
def test_derived_genotypes_are_always_valid(space):
    alpha = an.ArchLogits(nn.build_supernet(space, width=4))
    rule_positions = [r.positions for r in spaces.get(space).rules]
    for seed in range(50):
        torch.manual_seed(seed)
        with torch.no_grad():
            for logits in alpha.logits.values():
                logits.copy_(torch.randn_like(logits))
            alpha.logits["normal"][..., 0] += 2.0  # `none` often wins
        genotype = an.derive(space, alpha.probabilities())  # validated by the space
        for cell in genotype.cells:
            assert all(any(cell[p] != 0 for p in rule) for rule in rule_positions)


def test_entropy_of_uniform_weights_is_log_of_the_choices():
    probs = {"up": torch.full((3, 2, 3), 1 / 3), "normal": torch.full((3, 5, 7), 1 / 7)}
    expected = (6 * math.log(3) + 15 * math.log(7)) / 21
    assert an.mean_entropy(probs) == pytest.approx(expected)


# ----- options ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options, message",
    [
        (["--batch", "6"], "multiple of 2 x --workers"),
        (["--epochs", "0"], "--epochs must be"),
        (["--max-images", "8"], "less than one --batch"),
        (["--tau-start", "0.1", "--tau-end", "1"], "--tau-end"),
        (["--workers", "1000", "--batch", "2000", "--max-images", "4000"], "CPUs"),
    ],
)
def test_bad_options_stop_before_ray(options, message, tmp_path, capsys):
    code = cli.main(["search", "adversarialnas", "--out", str(tmp_path / "x"), *options])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


# ----- on Ray Train -----------------------------------------------------------------------------
def test_search_command_survives_a_killed_worker(ray_local, tmp_path, monkeypatch):
    """``raygan search adversarialnas`` end to end on 2 gloo workers, one of them killed.

    Rank 1's process dies once, as epoch 2 ends; FailureConfig restarts the worker group from
    epoch 1's checkpoint. Every worker's reports (with a digest of its weights and logits) are
    recorded to files: the replicas must agree after every epoch, although each trained on its
    own shard of the data. One Ray Train run covers all of this, to keep the suite fast.
    """
    out, marker = str(tmp_path / "search"), str(tmp_path / "crashed")

    def crash_once(config):
        import ray.train

        from raygan.strategies import adversarialnas  # the worker's own, unpatched

        real_report = ray.train.report
        rank = ray.train.get_context().get_world_rank()

        def report(metrics, checkpoint=None, **kwargs):
            if metrics["epoch"] == 2 and rank == 1 and not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)  # a killed worker process, not a Python exception
            name = f"rank{rank}-epoch{metrics['epoch']}-{os.getpid()}.json"
            with open(os.path.join(tmp_path, name), "w") as f:
                json.dump(metrics, f)
            real_report(metrics, checkpoint=checkpoint, **kwargs)

        ray.train.report = report
        adversarialnas.train_loop_per_worker(config)

    monkeypatch.setattr(an, "train_loop_per_worker", crash_once)
    args = ["search", "adversarialnas", "--out", out, "--workers", "2", "--epochs", "3"]
    args += ["--batch", "16", "--gf", "8", "--df", "8", "--n-critic", "2", "--max-images", "48"]
    args += ["--eval-samples", "20", "--max-failures", "1"]
    assert cli.main(args) == 0
    assert os.path.exists(marker)

    table = results.load(out)
    assert table["generation"].tolist() == [1, 2, 3]  # one row per epoch, none twice
    assert (table["strategy"] == "adversarialnas").all()
    assert np.isfinite(table["is"]).all() and np.isfinite(table["fid"]).all()
    resumed = results.extra(table)["resumed_from_epoch"]
    assert resumed.iloc[0] == 0 and resumed.iloc[-1] == 1
    for g, d in zip(table["g_genotype"], table["d_genotype"], strict=True):
        spaces.Genotype.parse(g), spaces.Genotype.parse(d)
    arch = spaces.read_arch_file(os.path.join(out, "best.yaml"))
    assert str(arch.g) == table["g_genotype"].iloc[-1]
    assert str(arch.d) == "autogan_d:" and (arch.gf, arch.df) == (256, 128)

    digests: dict[tuple[int, int], dict[int, str]] = {}  # (epoch, attempt's start) -> by rank
    for path in glob.glob(str(tmp_path / "rank*-epoch*.json")):
        with open(path) as f:
            metrics = json.load(f)
        rank = int(os.path.basename(path)[len("rank")])
        key = (metrics["epoch"], metrics["resumed_from_epoch"])
        digests.setdefault(key, {})[rank] = metrics["replica_digest"]
    both = {key: by_rank for key, by_rank in digests.items() if len(by_rank) == 2}
    assert {(1, 0), (2, 1), (3, 1)} <= both.keys()
    for key, by_rank in both.items():
        assert by_rank[0] == by_rank[1], f"replicas differ after epoch {key[0]}"
    assert both[1, 0][0] != both[3, 1][0]  # and they did train

    assert cli.main([*args, "--resume"]) == 0  # a finished search: nothing more to do
    assert len(results.load(out)) == 3
    assert cli.main(args) == 2  # without --resume, an existing search is not overwritten
    assert cli.main([*args, "--resume", "--gf", "16"]) == 2  # not the networks it holds

    text = an.analyze(table, str(tmp_path / "plots"))
    assert "AdversarialNAS: 3 epochs" in text
    assert sorted(os.listdir(tmp_path / "plots")) == [
        "adversarialnas_curves.png",
        "adversarialnas_genotypes.png",
    ]
