"""Any Tune searcher on raygan's spaces: the Tune form of a space and its repair, the searchers
as ask/tell with a replayable state, and ``raygan search tune`` end to end on a tiny budget."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from raygan import results, spaces
from raygan.cli import main
from raygan.searchers.tune_searcher import SEARCHERS, TuneSearch, tune_space


@pytest.mark.parametrize("name", ["nas_cell_g", "eagan_d", "adversarialnas_d", "autogan"])
def test_a_space_is_one_categorical_per_gene_and_every_proposal_is_repaired_into_it(name):
    space = spaces.get(name)
    domains = tune_space(space, "g_")
    assert len(domains) == sum(len(c) for c in space.cells)
    rng = np.random.default_rng(0)
    for _ in range(300):
        config = {k: rng.choice(d.categories) for k, d in domains.items()}
        g = space.from_tune(config, "g_")  # raises if the repair left it invalid
        if all(space.is_valid_cell(c) for c in spaces.Genotype(name, cells(space, config)).cells):
            assert space.to_config(g, "g_") == {k: int(v) for k, v in config.items()}
    sampled = space.sample(rng)
    assert space.from_tune(space.to_config(sampled, "g_"), "g_") == sampled


def cells(space: spaces.Space, config: dict) -> tuple:
    out = [[0] * len(genes) for genes in space.cells]
    for key, ci, p in space.gene_keys("g_"):
        out[ci][p] = int(config[key])
    return tuple(map(tuple, out))


def test_the_repair_is_the_documented_one():
    space = spaces.get("eagan_d")
    config = space.to_config(spaces.Genotype.parse(
        "eagan_d:3,0,3,0,2,0,0/1,0,3,0,1,-1,-1/3,0,3,0,1,-1,-1"), "d_")  # fmt: skip
    (down,) = [r.positions for r in space.rules if r.kind == "absent_together"][:1]
    config[f"d_c2_{down[0]}"], config[f"d_c3_{down[1]}"] = 2, 4  # first present, first absent
    g = space.from_tune(config, "d_")
    assert g.cells[1][down[0]] == 2 and g.cells[1][down[1]] != spaces.ABSENT
    assert g.cells[2][down[0]] == g.cells[2][down[1]] == spaces.ABSENT
    nones = {**config, **{f"d_c1_{p}": 0 for p in space.rules[0].positions}}
    first = space.rules[0].positions[0]
    assert space.from_tune(nones, "d_").cells[0][first] == space.cells[0][first].allow[1]


def score(genotype: str) -> dict[str, float]:
    flat = spaces.Genotype.parse(genotype).flat()
    return {"is": float(sum(flat)), "fid": float(sum(v != 0 for v in flat))}


def search(searcher: str) -> TuneSearch:
    return TuneSearch(
        {"g": spaces.get("nas_cell_g")},
        searcher=searcher,
        trials=10,
        batch=4,
        metrics=("is", "fid"),
        modes=("max", "min"),
        seed=3,
    )


@pytest.mark.parametrize("searcher", sorted(SEARCHERS))
def test_a_searcher_asks_a_batch_at_a_time_and_resumes_from_its_plain_state(searcher):
    """Saved after any tell and loaded into a new search (through JSON), it proposes what the
    one that only ever loads its own state does; a failed trial is told as one."""
    whole, proposals = search(searcher), []
    while not whole.finished:
        whole.load_state_dict(json.loads(json.dumps(whole.state_dict())))  # replays nothing
        batch = []
        while (s := whole.ask()) is not None:
            batch.append(s)
        assert len(batch) == min(4, 10 - len(proposals))
        assert {s.config["generation"] for s in batch} == {whole.generation}
        for key, config in batch:
            whole.tell(key, None if key == "t1" else score(config["g"]))
        proposals += [s.config["g"] for s in batch]
    assert whole.generation == 2 and len(proposals) == 10  # batches of 4, 4 and 2
    resumed, seen = search(searcher), []
    while not resumed.finished:
        state = json.loads(json.dumps(resumed.state_dict()))
        resumed = search(searcher)
        resumed.load_state_dict(state)
        batch = []
        while (s := resumed.ask()) is not None:
            batch.append(s)
        for key, config in batch:
            resumed.tell(key, None if key == "t1" else score(config["g"]))
        seen += [s.config["g"] for s in batch]
    assert seen == proposals
    other = {**resumed.state_dict(), "settings": {**resumed.settings(), "seed": 4}}
    with pytest.raises(ValueError, match="search state is for"):
        search(searcher).load_state_dict(other)


def test_a_searcher_that_does_not_replay_is_refused():
    s = search("random")
    s.ask()
    state = s.state_dict()
    state["log"][0][2] = {k: 0 for k in state["log"][0][2]}
    with pytest.raises(ValueError, match="does not replay"):
        search("random").load_state_dict(state)


TINY = [
    "--searcher", "optuna-tpe", "--trials", "4", "--batch", "2", "--trial-steps", "2",
    "--gf", "8", "--df", "8", "--g-batch", "8", "--d-batch", "8", "--n-critic", "1",
    "--eval-samples", "20", "--max-images", "64",
]  # fmt: skip


def test_tune_search_end_to_end(ray_local, tmp_path, capsys):
    out = str(tmp_path / "tune")
    assert main(["search", "tune", *TINY, "--out", out]) == 0
    df = results.load(out)
    df = df.join(results.extra(df))
    assert len(df) == 4 and (df["status"] == "ok").all() and (df["budget_steps"] == 2).all()
    assert list(df["generation"]) == [0, 0, 1, 1] and sorted(df["individual"]) == [0, 1, 2, 3]
    assert df["g_genotype"].is_unique and (df["d_genotype"] == "autogan_d:").all()
    assert (df["searcher"] == "optuna-tpe").all() and (df["searcher_settings.seed"] == 0).all()
    assert (df["searcher_settings.trials"] == 4).all()
    assert (df["train_flops"] > 0).all() and df["inherited_from"].isna().all()
    best = spaces.read_arch_file(os.path.join(out, "best.yaml"))
    assert str(best.g) == df.sort_values("fid")["g_genotype"].iloc[0]
    capsys.readouterr()
    assert main(["search", "tune", *TINY, "--out", out, "--resume"]) == 0  # nothing left
    assert len(results.load(out)) == 4
    assert main(["search", "tune", *TINY, "--seed", "1", "--out", out, "--resume"]) == 2
    assert "--seed was 0, now 1" in capsys.readouterr().err


SCRATCH = [
    "--from-scratch", "--asha", "--trials", "6", "--batch", "6", "--trial-steps", "8",
    "--gf", "8", "--df", "8", "--g-batch", "8", "--d-batch", "8", "--n-critic", "1",
    "--eval-samples", "20", "--max-images", "64",
]  # fmt: skip


def test_random_from_scratch_with_asha_stops_the_worst_at_its_rungs(ray_local, tmp_path, capsys):
    """``raygan search random --from-scratch --asha``: the Tune search's random searcher,
    with ASHA stopping trials at a quarter and a half of the budget on FID. A stopped trial
    keeps its rung's scores and its cost; the progress line counts every trial (not a
    terminal: one line per finished trial)."""
    out = str(tmp_path / "scratch")
    assert main(["search", "random", *SCRATCH, "--out", out]) == 0
    df = results.load(out)
    df = df.join(results.extra(df))
    assert (df["strategy"] == "tune").all() and (df["searcher"] == "random").all()
    assert (df["scheduler"] == "asha").all() and len(df) == 6
    stopped, ok = df[df["status"] == "stopped"], df[df["status"] == "ok"]
    assert len(stopped) + len(ok) == 6 and len(ok) >= 1
    # Six trials at two rungs: ASHA stops every trial worse than the median of those that
    # reached the rung before it; none stopped would need each to beat all before it.
    assert len(stopped) >= 1
    assert set(stopped["budget_steps"]) <= {2, 4} and (ok["budget_steps"] == 8).all()
    assert stopped[["is", "fid"]].notna().all().all()
    assert (df["device_s"] > 0).all() and (df["eval_s"] > 0).all()
    shown = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[batch0]")]
    assert len(shown) == 6 and shown[-1].startswith("[batch0] 6/6 done, 0 running, 0 pending")
    assert "best IS " in shown[-1] and "device-h" in shown[-1]
    assert main(["analyze", out]) == 0
    said = capsys.readouterr().out
    assert f"Tune search (random, scheduler asha): 6 architectures in 1 batch ({len(ok)} ok" in said
    assert f"{len(stopped)} stopped)" in said and os.path.isfile(
        os.path.join(out, "tune_trials.png")
    )


def test_asha_needs_a_budget_it_can_split(tmp_path, capsys):
    short = [*SCRATCH[:7], "2", *SCRATCH[8:]]
    assert main(["search", "random", *short, "--out", str(tmp_path / "o")]) == 2
    assert "--asha needs --trial-steps of 4 or more" in capsys.readouterr().err
