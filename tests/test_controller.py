"""AutoGAN's controller search: sampling, REINFORCE, MLAS, state, and a real Tune run."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch

from raygan import spaces
from raygan.searchers.controller import Controller, ControllerSearch, reinforce_loss
from raygan.spaces import Genotype
from raygan.state import dumps, loads

TARGET = Genotype.parse("autogan:1,0,1,1/1,0,0,1,1/1,0,1,0,3")


def matching(config: dict) -> float:
    """Synthetic reward: fraction of the searched genes that match ``TARGET``."""
    n = config["active_cells"]
    got = Genotype.parse(config["genotype"]).cells[:n]
    pairs = [
        (a, b)
        for cell, want in zip(got, TARGET.cells[:n], strict=True)
        for a, b in zip(cell, want, strict=True)
    ]
    return sum(a == b for a, b in pairs) / len(pairs)


def run_batch(search: ControllerSearch, score: Callable[[dict], dict | None]) -> list[dict]:
    """Ask until the search waits, then tell in reverse order (completion out of order)."""
    out = []
    while (s := search.ask()) is not None:
        out.append(s)
    for s in reversed(out):
        search.tell(s.key, score(s.config))
    return [s.config for s in out]


def is_of_matching(config: dict) -> dict:
    return {"is": matching(config)}


def test_controller_layout_follows_space() -> None:
    c = Controller.for_space(spaces.get("autogan"))
    assert c.cell_decisions == ((0, 1, 2, 3), (4, 5, 6, 7, 8), (9, 10, 11, 12, 13))
    assert [h.out_features for h in c.heads] == [2, 3, 3, 2, 2, 3, 3, 2, 2, 2, 3, 3, 2, 4]
    assert c.embedding.num_embeddings == 36 and c.offsets[4] == 10
    rollout = c.sample(torch.Generator().manual_seed(0))
    assert [len(a) for a in rollout.actions] == [4, 5, 5]
    again = c.evaluate(rollout.actions)
    assert torch.equal(again.log_prob.detach(), rollout.log_prob)
    assert torch.equal(again.entropy.detach(), rollout.entropy)


@pytest.mark.parametrize("mlas", [True, False])
def test_every_proposal_is_a_valid_genotype_in_every_stage(mlas: bool) -> None:
    search = ControllerSearch(mlas=mlas, steps=2, batch_size=3, candidates=4, keep=2, seed=1)
    configs = []
    while not search.finished:
        configs += run_batch(search, is_of_matching)
    assert len(configs) == search.total_trials
    for config in configs:
        g = Genotype.parse(config["genotype"])  # validates in the space
        assert g.space == "autogan" and math.isfinite(config["entropy"])
    stages = [c["mlas_stage"] for c in configs]
    assert stages == (sorted(stages) if mlas else [None] * len(configs))
    assert {c["active_cells"] for c in configs} == ({1, 2, 3} if mlas else {3})
    assert search.total_updates == (6 if mlas else 2) and search.ask() is None
    assert all(len(p.cells) == 3 for p in search.kept)


def test_unsearched_cells_take_the_filler() -> None:
    search = ControllerSearch(steps=1, seed=0)
    assert Genotype.parse(search.ask().config["genotype"]).cells[1:] == ((0,) * 5,) * 2
    filled = ControllerSearch(steps=1, seed=0, filler=TARGET)
    assert Genotype.parse(filled.ask().config["genotype"]).cells[1:] == TARGET.cells[1:]


@pytest.mark.parametrize("advantage", [1.0, -1.0])
def test_reinforce_moves_log_prob_with_the_advantage(advantage: float) -> None:
    torch.manual_seed(0)
    c = Controller.for_space(spaces.get("autogan"))
    opt = torch.optim.Adam(c.parameters(), lr=3.5e-4, betas=(0.0, 0.9))
    actions = c.sample(torch.Generator().manual_seed(0)).actions
    before = c.evaluate(actions).log_prob
    opt.zero_grad()
    reinforce_loss(before.unsqueeze(0), torch.tensor([advantage])).backward()
    opt.step()
    after = c.evaluate(actions).log_prob.detach()
    assert (after - before.detach()).item() * advantage > 1e-3


def test_baseline_is_an_ema_of_batch_mean_total_reward() -> None:
    search = ControllerSearch(mlas=False, steps=3, batch_size=2, seed=0)
    rewards = iter([3.0, 5.0, 8.0, 2.0])
    totals = []
    for _ in range(2):
        configs = run_batch(search, lambda c: {"is": next(rewards)})
        told = [3.0, 5.0] if not totals else [8.0, 2.0]
        # run_batch tells in reverse order: the last proposal got the first reward
        totals.append(
            [r + 1e-3 * c["entropy"] for r, c in zip(reversed(told), configs, strict=True)]
        )
    first, second = (sum(t) / 2 for t in totals)
    assert search.baseline == pytest.approx(0.9 * first + 0.1 * second, rel=1e-12)
    assert search.total_updates == 2


def test_failures_score_the_penalty_and_never_raise() -> None:
    search = ControllerSearch(mlas=False, steps=0, candidates=5, keep=5, seed=0)
    keys = [search.ask().key for _ in range(5)]
    results = [None, {"is": float("nan")}, {"fid": 3.0}, {"is": "oops"}, {"is": 4.0}]
    for key, result in zip(keys, results, strict=True):
        search.tell(key, result)
    assert search.finished
    assert [p.reward for p in search.kept] == [4.0, 0.0, 0.0, 0.0, 0.0]


def test_callable_reward_needs_metrics_and_penalty() -> None:
    with pytest.raises(ValueError, match="penalty"):
        ControllerSearch(reward=lambda r: r["is"] - 0.1 * r["fid"], metrics=["is", "fid"])
    with pytest.raises(ValueError, match="penalty"):
        ControllerSearch(reward="fid")
    search = ControllerSearch(
        reward=lambda r: r["is"] - 0.1 * r["fid"],
        metrics=["is", "fid"],
        penalty=-100.0,
        mlas=False,
        steps=0,
        candidates=2,
        keep=2,
    )
    assert search.metrics == ("is", "fid")
    a, b = search.ask(), search.ask()
    search.tell(a.key, {"is": 8.0, "fid": 20.0})
    search.tell(b.key, {"is": 8.0, "fid": float("inf")})
    assert [p.reward for p in search.kept] == [6.0, -100.0]


def test_update_does_not_depend_on_completion_order() -> None:
    def run(order: Callable[[list], list]) -> dict:
        search = ControllerSearch(mlas=False, steps=2, batch_size=4, seed=3)
        for _ in range(2):
            out = [search.ask() for _ in range(4)]
            for s in order(out):
                search.tell(s.key, is_of_matching(s.config))
        return search.controller.state_dict()

    forward, backward = run(list), run(lambda out: out[::-1])
    assert all(torch.equal(forward[k], backward[k]) for k in forward)


def test_mean_reward_rises_toward_a_known_best_architecture() -> None:
    search = ControllerSearch(steps=100, batch_size=2, seed=0)  # paper's lr, stage 0 (cell 1)
    rewards = []
    while search.phase == "search":
        rewards += [matching(c) for c in run_batch(search, is_of_matching)]
    chance = np.mean([1 / 2, 1 / 3, 1 / 3, 1 / 2])
    first, last = np.mean(rewards[:40]), np.mean(rewards[-40:])
    assert first < chance + 0.1 and last > first + 0.15 and last > chance + 0.2


def test_mlas_continues_from_kept_prefixes_and_their_state() -> None:
    search = ControllerSearch(steps=(3, 2, 1), batch_size=2, candidates=6, keep=3, seed=2)
    while search.stage == 0:
        stage0 = search.controller
        run_batch(search, is_of_matching)
    assert 1 <= len(search.kept) <= 3
    rewards = [p.reward for p in search.kept]
    assert rewards == sorted(rewards, reverse=True)
    assert len({p.cells for p in search.kept}) == len(search.kept)
    for p in search.kept:  # the kept state is stage 0's controller state after the prefix
        state = stage0.evaluate([p.cells[0]], cells=[0]).state
        assert all(torch.allclose(a, b) for a, b in zip(state, p.state, strict=True))
    fresh = search.controller
    assert fresh is not stage0 and search.step == 0 and search.baseline is None
    assert not torch.equal(fresh.heads[4].weight, stage0.heads[4].weight)

    prefixes = {p.cells[0]: p for p in search.kept}
    used = set()
    while search.stage == 1:
        for config in run_batch(search, is_of_matching):
            cells = Genotype.parse(config["genotype"]).cells
            assert cells[0] in prefixes and cells[2] == (0,) * 5
            used.add(cells[0])
            # the sampled cell's probability is computed from the prefix's carried state
            gene_actions = [list(cells[1])]
            from_prefix = fresh.evaluate(gene_actions, [1], prefixes[cells[0]].state)
            from_zero = fresh.evaluate(gene_actions, [1])
            assert not torch.allclose(from_prefix.log_prob, from_zero.log_prob)
    assert used and all(p.cells[:1] in {(c,) for c in prefixes} for p in search.kept)


def test_top_k_and_grow_by_hand() -> None:
    search = ControllerSearch(steps=0, candidates=4, keep=4, seed=5)
    out = [search.ask() for _ in range(4)]
    assert search.ask() is None
    for i, s in enumerate(out[:3]):
        search.tell(s.key, {"is": float(i)})
    best = search.top_k(2)
    assert [p.reward for p in best] == [2.0, 1.0]
    with pytest.raises(RuntimeError):
        search.grow(best)
    search.tell(out[3].key, {"is": 9.0})  # closes the stage: top-4 kept, stage 1 begins
    assert search.stage == 1 and search.kept[0].reward == 9.0
    with pytest.raises(KeyError):
        search.tell(out[3].key, {"is": 1.0})


def test_state_round_trip_gives_identical_continuation() -> None:
    options = dict(steps=(2, 2, 1), batch_size=3, candidates=4, keep=2, seed=7)
    search = ControllerSearch(**options)
    while search.stage == 0:
        run_batch(search, is_of_matching)
    run_batch(search, is_of_matching)
    pending = [search.ask() for _ in range(3)]
    search.tell(pending[1].key, is_of_matching(pending[1].config))  # one of three told

    saved = loads(*dumps(search.state_dict()))  # through the JSON + tensors format
    clone = ControllerSearch(**{**options, "seed": 99})
    clone.load_state_dict(saved)
    clone.load_state_dict(saved)  # loading leaves the given state untouched

    def finish(s: ControllerSearch) -> list[dict]:
        for p in (pending[0], pending[2]):
            s.tell(p.key, is_of_matching(p.config))
        configs = []
        while not s.finished:
            configs += run_batch(s, is_of_matching)
        return configs

    assert finish(search) == finish(clone)
    a, b = search.state_dict(), clone.state_dict()
    for key in a["controller"]:
        np.testing.assert_array_equal(a["controller"][key], b["controller"][key])
    assert a["baseline"] == b["baseline"] and [p.cells for p in search.kept] == [
        p.cells for p in clone.kept
    ]
