"""`raygan search autogan` end to end on a tiny budget: three MLAS stages, killed twice and
resumed, one dynamic reset, analysis, and bad input.

One search (a module fixture) serves the end-to-end and the resume tests: a tiny search costs
three Ray Train rounds and three Tune experiments, which dominate this file's time.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from raygan import results, spaces, supernet
from raygan.cli import main
from raygan.state import load as load_state
from raygan.strategies import autogan, common
from raygan.trainable import STATE_FILE

ITERATIONS, STEPS, BATCH, CANDIDATES, KEEP = 3, 1, 2, 3, 2
TINY = [
    "--gf", "8", "--df", "8", "--iterations", str(ITERATIONS), "--grow-at", "1,2",
    "--controller-steps", str(STEPS), "--controller-batch", str(BATCH), "--round-steps", "4",
    "--n-critic", "1", "--g-batch", "8", "--d-batch", "8", "--candidates", str(CANDIDATES),
    "--keep", str(KEEP), "--eval-samples", "40", "--max-images", "200", "--workers", "1",
    "--reset-window", "2", "--reset-var", "1e-12",
]  # fmt: skip
PER_ITERATION = STEPS * BATCH + CANDIDATES  # every iteration is its stage's last here
COLLAPSING = 1  # the iteration whose round is made to collapse


def read_state(out: str) -> dict[str, Any]:
    return load_state(os.path.join(out, common.Driver.STATE))


def same(a: Any, b: Any) -> bool:
    """Deep equality of plain state (dicts, lists, numpy arrays, numbers)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


@pytest.fixture(scope="module")
def search(ray_local, tmp_path_factory) -> SimpleNamespace:
    """The search, stopped after stage 0, then killed after iteration 1's trials ran but
    before its rows landed, then resumed to the end; with every round's spec and result."""
    out = str(tmp_path_factory.mktemp("autogan") / "search")
    argv = ["search", "autogan", *TINY, "--out", out]
    rounds: list[tuple[supernet.RoundSpec, supernet.RoundResult]] = []
    # the driver loop's hook points: Driver.train_round (every shared round) looks up
    # `supernet.train_round` on the module at call time; Driver.run calls `self.save()` and
    # `results.append_once`
    train_round, save, append_once = (
        supernet.train_round,
        common.Driver.save,
        results.append_once,
    )

    def recorded(spec: supernet.RoundSpec, **options: Any) -> supernet.RoundResult:
        if spec.n_cells == COLLAPSING + 1:  # any loss variance counts as a collapse
            spec = dataclasses.replace(spec, collapse_var=1e9)
        done = train_round(spec, **options)
        rounds.append((spec, done))
        return done

    def stop_after_stage_0(self: common.Driver) -> None:
        save(self)
        if self.state["iteration"] == 1 and self.state["round"] is None:
            raise KeyboardInterrupt

    def killed_before_the_rows_land(*args: Any) -> None:
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as m:
        m.setattr(supernet, "train_round", recorded)
        m.setattr(common.Driver, "save", stop_after_stage_0)
        assert main(argv) == 130
        after_stage_0 = read_state(out)
        m.setattr(common.Driver, "save", save)
        m.setattr(results, "append_once", killed_before_the_rows_land)
        assert main([*argv, "--resume"]) == 130
        killed = read_state(out)
        m.setattr(results, "append_once", append_once)
        assert main([*argv, "--resume"]) == 0
    df = results.load(out)
    df = df[df["kind"] == "trial"].reset_index(drop=True)
    return SimpleNamespace(
        out=out,
        argv=argv,
        df=df.join(results.extra(df)),
        rounds=rounds,
        after_stage_0=after_stage_0,
        killed=killed,
    )


def test_the_shared_ema_carries_over_rounds_and_restarts_after_a_reset(search):
    """A round's state.pt is its trainer's state: ``step`` (the EMA's step count) goes on from
    the round it continues (``init``) and starts from 0 after a reset."""
    ema_steps: dict[str, int] = {}
    for spec, done in search.rounds:
        state = torch.load(done.state, weights_only=True)
        assert {"G", "D", "G_ema", "opt_g", "opt_d", "step", "round_step"} <= state.keys()
        assert state["round_step"] == done.metrics["round_step"]
        expected = ema_steps.get(spec.init, 0) + done.metrics["round_step"]
        assert state["step"] == expected
        assert any(not torch.equal(state["G"][k], state["G_ema"][k]) for k in state["G"])
        ema_steps[done.state] = state["step"]
    assert [spec.init is None for spec, _ in search.rounds] == [True, False, True]


def test_search_runs_three_stages_and_writes_the_top_k(search, capsys):
    df, out = search.df, search.out
    assert len(df) == ITERATIONS * PER_ITERATION and df["trial_id"].is_unique
    assert list(df.groupby("stage").size()) == [PER_ITERATION] * 3
    assert (df["stage"] == df["generation"]).all()  # one iteration per stage
    assert (df["status"] == "ok").all()
    assert all(math.isfinite(r) and r >= 1 for r in df["reward"])  # IS of a working G
    assert np.allclose(df["reward"], df["is"])
    # each stage scores at its own resolution, with only its active cells built
    assert list(df.groupby("stage")["resolution"].unique().map(list)) == [[8], [16], [32]]
    assert (df["active_cells"] == df["stage"] + 1).all()
    assert df.groupby("stage")["g_params"].min().is_monotonic_increasing
    searched = df[df["phase"] == "search"]
    assert searched["baseline"].notna().all() and searched["entropy"].gt(0).all()
    assert (df["d_genotype"] == "autogan_d:").all()
    # every reward is a zero-step trial on its iteration's shared weights: its checkpoint keeps
    # only the generator it scored, and it has no D of its own (d_params stays None)
    assert (df["budget_steps"] == 0).all() and df["d_params"].isna().all()
    shared = [done.state for _, done in search.rounds]
    assert list(df["inherited_from"]) == [shared[i] for i in df["generation"]]
    assert df["checkpoint"].notna().all()
    for checkpoint in df["checkpoint"]:
        state = torch.load(os.path.join(checkpoint, STATE_FILE), weights_only=True)
        assert state.keys() == {"G_ema", "step"} and state["step"] == 0
    # a stage's proposals, and its round's architectures, continue from the kept prefixes
    for stage in (1, 2):
        kept = df[(df["stage"] == stage - 1) & df["kept"].notna()]
        prefixes = {spaces.Genotype.parse(g).cells[:stage] for g in kept["g_genotype"]}
        assert len(prefixes) == len(kept) <= KEEP
        later = df[df["stage"] == stage]["g_genotype"].map(spaces.Genotype.parse)
        assert all(g.cells[:stage] in prefixes for g in later)
        spec = search.rounds[stage][0]
        assert all(spaces.Genotype.parse(p).cells[:stage] in prefixes for p in spec.paths)
    # the final top-k: ranked rows and genotype files `raygan train` accepts
    top = df[(df["stage"] == 2) & df["kept"].notna()].sort_values("kept")
    assert len(top) == KEEP and list(top["kept"]) == list(range(1, KEEP + 1))
    for rank, row in enumerate(top.itertuples(), 1):
        arch = spaces.read_arch_file(os.path.join(out, f"top{rank}.yaml"))
        assert str(arch.g) == row.g_genotype and str(arch.d) == "autogan_d:"
        assert (arch.gf, arch.df, arch.bottom_width) == (256, 128, 4)
    best, top1 = (spaces.read_arch_file(os.path.join(out, f)) for f in ("best.yaml", "top1.yaml"))
    assert best == top1

    capsys.readouterr()
    assert main(["analyze", out]) == 0
    text = capsys.readouterr().out
    assert "AutoGAN stage 2" in text and "final top-k" in text and "dynamic reset" in text
    assert os.path.getsize(os.path.join(out, "reward_per_stage.png")) > 1000


def test_shared_rounds_grow_carry_weights_over_and_reset_on_collapse(search):
    specs = [spec for spec, _ in search.rounds]
    assert [(s.n_cells, s.resolution) for s in specs] == [(1, 8), (2, 16), (3, 32)]
    assert all(s.order == "sequential" and len(s.paths) == s.steps == 4 for s in specs)
    # weights carry over from stage 0 into stage 1; the collapsed round's do not
    assert specs[0].init is None and specs[1].init == search.rounds[0][1].state
    assert specs[2].init is None
    collapsed = [done.metrics["collapsed"] for _, done in search.rounds]
    assert collapsed == [False, True, False]
    assert search.rounds[1][1].metrics["round_step"] == 2  # stopped once its window filled
    assert search.df.groupby("generation")["reset"].all().tolist() == [False, True, False]
    assert search.df["round_g_loss_var"].notna().all()
    assert read_state(search.out)["resets"] == [COLLAPSING]


def test_interrupted_search_resumes_with_the_saved_controller(search):
    df = search.df
    assert search.after_stage_0["iteration"] == 1
    # killed after iteration 1's round and trials: its controller was never told anything
    assert same(search.killed["controller"], search.after_stage_0["controller"])
    assert search.killed["round"] is not None  # the round stays trained
    assert len(search.rounds) == ITERATIONS  # so no round ran twice
    # no proposal lost or scored twice
    assert sorted(df["proposal"], key=lambda k: int(k[1:])) == [
        f"p{i}" for i in range(ITERATIONS * PER_ITERATION)
    ]
    # the resumed controller is the saved one: it proposes what the saved state proposes
    options = SimpleNamespace(
        iterations=ITERATIONS, grow_at="1,2", controller_steps=STEPS, controller_batch=BATCH,
        candidates=CANDIDATES, keep=KEEP, seed=0, reward="is",
    )  # fmt: skip
    saved = autogan.new_controller(options)
    saved.load_state_dict(search.after_stage_0["controller"])
    expected = [saved.ask().config["genotype"] for _ in range(BATCH)]
    first = df[(df["stage"] == 1) & (df["step"] == 0) & (df["phase"] == "search")]
    order = first["proposal"].str[1:].astype(int).sort_values().index
    assert list(first.loc[order, "g_genotype"]) == expected


def state_files(out: str) -> dict[str, bytes]:
    """The saved search state (its JSON and any tensors file beside it) and every file of the
    table (a folder of parquet parts), byte for byte."""
    stem = Path(common.Driver.STATE).stem
    files = [*Path(out).glob(f"{stem}*"), *Path(out, results.TABLE_NAME).rglob("*")]
    return {str(f): f.read_bytes() for f in sorted(files) if f.is_file()}


@pytest.mark.parametrize(
    ("extra", "messages"),
    [
        (["--controller-steps", "2"], ["--controller-steps was 1, now 2"]),
        (["--seed", "1"], ["--seed was 0, now 1"]),
        (["--grow-at", "1,2", "--keep", "1"], ["--keep was 2, now 1"]),
        (
            ["--reset-var", "0.5", "--eval-samples", "50"],
            ["--eval-samples was 40, now 50", "--reset-var was 1e-12, now 0.5"],
        ),
    ],
)
def test_resume_refuses_other_options(search, capsys, extra, messages):
    before = state_files(search.out)
    assert main([*search.argv, "--resume", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(m in err for m in messages), err
    assert state_files(search.out) == before


def test_resume_accepts_a_run_only_option(search, capsys):
    """``--concurrency`` changes how fast, not what: a finished search resumed with it ends
    at once, adding nothing."""
    before = state_files(search.out)
    capsys.readouterr()
    assert main([*search.argv, "--resume", "--concurrency", "1"]) == 0
    assert "done" in capsys.readouterr().out
    assert state_files(search.out) == before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--grow-at", "2,1"], "--grow-at must be two iterations"),
        (["--iterations", "2"], "--iterations must be a whole number >= 3, got 2"),
        (["--keep", "4", "--candidates", "3"], "--keep (4) cannot exceed --candidates"),
        (["--eval-samples", "5"], "--eval-samples must be a whole number >= 10, got 5"),
        (["--reset-var", "0"], "--reset-var must be a number above 0"),
        (["--gf", "0"], "--gf must be a whole number >= 1"),
        (["--resume"], "nothing to resume"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, extra, message):
    out = tmp_path / "x"
    assert main(["search", "autogan", "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())
