"""`raygan search eagan` as a user runs it: killed mid-generation, resumed, analysed."""

import argparse
import contextlib
import glob
import io
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from test_golden import TINY as GOLDEN_TINY

from raygan import results, spaces
from raygan.analysis import hypervolume_by_generation
from raygan.cli import main
from raygan.spec import load_preset
from raygan.state import load as load_state
from raygan.state import save as save_state
from raygan.strategies.common import Driver
from raygan.strategies.eagan import stage2_steps, supernet_run_name
from raygan.trainable import SAMPLES_FILE, STATE_FILE

P, GENERATIONS = 4, 2
TINY = GOLDEN_TINY["eagan"][:-2]  # without --keep-weights last


def finished_trials(out: str, experiment: str) -> int:
    """Trials of one Tune experiment that reached their final report."""
    count = 0
    for path in glob.glob(os.path.join(out, "tune", experiment, "*", "result.json")):
        with open(path) as f:
            count += any(json.loads(line).get("done") for line in f if line.strip())
    return count


def final_reports_per_proposal(out: str) -> dict[tuple, int]:
    """How many final reports each proposal's trials made, over every Tune experiment of the
    search (a resumed boundary reruns its unfinished trials in an experiment of its own)."""
    counts: dict[tuple, int] = {}
    for path in glob.glob(os.path.join(out, "tune", "*", "*", "result.json")):
        with open(path) as f:
            for line in filter(str.strip, f):
                result = json.loads(line)
                trial = result["config"]["trial"]
                key = (trial["row"]["stage"], trial["proposal"])
                counts[key] = counts.get(key, 0) + bool(result.get("done"))
    return counts


def state_files(out: str) -> dict[str, bytes]:
    """The saved search state (its JSON and any tensors file beside it) and every file of the
    table (a folder of parquet parts), byte for byte."""
    stem = Path(Driver.STATE).stem
    files = [*Path(out).glob(f"{stem}*"), *Path(out, results.TABLE_NAME).rglob("*")]
    return {str(f): f.read_bytes() for f in sorted(files) if f.is_file()}


@pytest.fixture(scope="module")
def search(golden_search) -> SimpleNamespace:
    """The tiny EAGAN search of tests/test_golden.py (with --keep-weights last, so the kills and
    resumes also show that pruning keeps what they need), killed at fault points and resumed
    to its end."""
    out = golden_search("eagan")
    return SimpleNamespace(out=out, options=[*GOLDEN_TINY["eagan"], "--out", out])


def test_a_second_driver_stops_at_once_naming_the_first(tmp_path):
    """While a driver holds --out's lease, the same command (and the same with --resume) stops
    with one line naming its host and pid, before anything is written."""
    out = str(tmp_path / "eagan")
    hold = "import sys, time; from raygan import storage; storage.Lease.acquire(sys.argv[1]); "
    holder = subprocess.Popen([sys.executable, "-c", hold + "time.sleep(120)", out])
    try:
        deadline = time.time() + 60
        while not os.path.exists(os.path.join(out, "lease.json")):
            assert time.time() < deadline and holder.poll() is None, "the holder did not start"
            time.sleep(0.1)
        save_state(os.path.join(out, Driver.STATE), {"settings": {}})
        before = sorted(os.listdir(out))
        for extra in ([], ["--resume"]):
            with contextlib.redirect_stderr(io.StringIO()) as err:
                code = main(["search", "eagan", *TINY, "--out", out, *extra])
            message = err.getvalue()
            assert code == 2 and len(message.strip().splitlines()) == 1, message
            assert "is held by another driver" in message, message
            assert f"pid {holder.pid}," in message, message
        assert sorted(os.listdir(out)) == before
    finally:
        holder.kill()
        holder.wait()


def test_killed_and_resumed_search_ends_as_the_method_says(search):
    out = search.out
    df = results.load(out)
    df = df[df["kind"] == "trial"]
    final = load_state(os.path.join(out, Driver.STATE))
    s1_gen1 = df[(df.stage == 1) & (df.generation == 1)]
    assert s1_gen1["inherited_from"].eq(final["supernet"]).all()  # the last round's weights
    assert len(df) == P * GENERATIONS * 2
    assert df.groupby(["stage", "generation"]).size().eq(P).all()
    assert not df.duplicated(["stage", "generation", "individual"]).any()
    # no trial whose outcome the driver recorded ran again: every proposal reached its final
    # report once, but stage-1 "0-1", whose rerun was killed as it reported its checkpoint
    counts = final_reports_per_proposal(out)
    assert {k: c for k, c in counts.items() if c != 1} in ({}, {(1, "0-1"): 2})
    # a proposal with no final report on file finished in the run killed at trial-done (the
    # SIGKILL can come before Tune copies its result.json to storage), and was not run again:
    # each rerun experiment of that boundary ran one trial, 0-1's
    keys = {(int(r.stage), f"{int(r.generation)}-{int(r.individual)}") for r in df.itertuples()}
    assert {k[1] for k in keys - counts.keys()} <= {"0-0", "0-2", "0-3"}
    reruns = glob.glob(os.path.join(out, "tune", "stage1-gen0-r*"))
    assert reruns and all(len(glob.glob(os.path.join(r, "trial-*"))) == 1 for r in reruns)
    assert (df["status"] == "ok").all()
    for column in ("is", "fid", "g_params", "d_params", "rank", "crowding"):
        assert df[column].notna().all(), column
    assert all(math.isfinite(v) for v in df["fid"])
    s1, s2 = df[df.stage == 1], df[df.stage == 2]
    assert s1["g_genotype"].nunique() > 1 and s1["d_genotype"].eq("autogan_d:").all()
    assert s2["g_genotype"].nunique() == 1 and s2["d_genotype"].nunique() > 1
    assert s2["g_genotype"].iloc[0] == spaces.read_arch_file(f"{out}/stage1_best.yaml").g.__str__()
    best = spaces.read_arch_file(f"{out}/best.yaml")
    assert best.d.space == "eagan_d" and best.gf == 256 and best.df == 128
    # generation 1 children name their parents; rank and crowding were recorded at selection
    assert s1[s1.generation == 1]["parents"].map(len).gt(0).any()
    assert (df["rank"] >= 0).all()
    for stage in (1, 2):
        hv = hypervolume_by_generation(df, stage)
        assert list(hv["generation"]) == [0, 1] and (hv["hypervolume"] > 0).all()


def test_keep_weights_last_prunes_only_what_nothing_reads(search, capsys):
    """Only each stage's last generation keeps its weights, every trial its samples, and only
    the last supernet round is left."""
    out, df = search.out, results.load(search.out)
    df = df[df["kind"] == "trial"]
    for row in df.itertuples():
        kept = os.path.exists(os.path.join(row.checkpoint, STATE_FILE))
        assert kept == (row.generation == GENERATIONS - 1), (row.stage, row.generation)
        assert os.path.exists(os.path.join(row.checkpoint, SAMPLES_FILE))
    assert os.listdir(os.path.join(out, "supernet")) == [supernet_run_name(GENERATIONS - 1)]
    capsys.readouterr()
    assert main(["eval", df[df.generation == 0]["checkpoint"].iloc[0]]) == 2
    assert "pruned" in capsys.readouterr().err


def test_analysis_shows_both_stages(search, capsys):
    out = search.out
    capsys.readouterr()
    assert main(["analyze", out]) == 0
    text = capsys.readouterr().out
    assert "EAGAN stage 1" in text and "Pareto front" in text and "hypervolume" in text
    assert "EAGAN stage 1: 8 trials" in text  # the shared rounds' rows are not trials
    hours = re.search(r"cost: ([0-9.e-]+) device-hours on cpu", text)
    assert hours and float(hours[1]) == pytest.approx(
        results.load(out)["device_s"].sum() / 3600, rel=1e-3
    )
    assert "set-up and orchestration" in text and "TFLOP/s per CPU core" in text
    names = ["pareto_stage1.png", "pareto_stage2.png", "hypervolume_stage1.png"]
    names += ["front_samples_stage1.png", "front_samples_stage2.png"]
    for name in names:
        assert os.path.getsize(os.path.join(out, name)) > 1000
        assert f"plot: {os.path.join(out, name)}" in text


@pytest.mark.parametrize(
    ("changed", "messages"),
    [
        (["--population", "6"], ["--population was 4, now 6"]),
        (["--round-steps", "20"], ["--round-steps was 6, now 20"]),
        (["--s2-steps", "5"], ["--s2-steps was 3, now 5"]),
        (["--keep-weights", "all"], ["--keep-weights was 'last', now 'all'"]),
        (["--stages", "1"], ["--stages was '1,2', now '1'"]),
        (
            ["--seed", "3", "--eval-samples", "100"],
            ["--eval-samples was 40, now 100", "--seed was 0, now 3"],
        ),
    ],
)
def test_resume_refuses_changed_options(search, capsys, changed, messages):
    """An option that shapes results must be the one the search started with: one line
    naming each changed option's old and new value; nothing is written."""
    before = state_files(search.out)
    capsys.readouterr()
    assert main(["search", "eagan", *search.options, "--resume", *changed]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(m in err for m in messages), err
    assert state_files(search.out) == before


def test_resume_accepts_a_run_only_option(search, capsys):
    """``--concurrency`` changes how fast, not what: a finished search resumed with it ends
    at once, adding nothing (the fixture's resume changed it mid-search)."""
    before = state_files(search.out)
    capsys.readouterr()
    assert main(["search", "eagan", *search.options, "--resume", "--concurrency", "1"]) == 0
    assert "done" in capsys.readouterr().out
    assert state_files(search.out) == before


def test_front_samples_show_each_member_with_a_checkpoint(tmp_path):
    """One captioned panel per front member whose trial saved samples; gone ones left out."""
    import torch

    from raygan import nn
    from raygan.analysis import front_samples
    from raygan.trainable import save_samples

    kept = tmp_path / "trial-a" / "checkpoint_000000"
    kept.mkdir(parents=True)
    genotype = spaces.get("nas_cell_g").sample(np.random.default_rng(0))
    torch.manual_seed(0)
    save_samples(nn.build_generator(genotype, width=8), str(kept / SAMPLES_FILE), n=4)
    front = pd.DataFrame(
        {
            "is": [1.5, 1.2, 1.1],
            "fid": [80.0, 90.0, 95.0],
            "g_genotype": [str(genotype)] * 3,
            "checkpoint": [str(kept), str(tmp_path / "trial-b" / "gone"), None],
        }
    )
    panels = front_samples(front, "g_genotype")
    assert len(panels) == 1
    png, caption = panels[0]
    assert png == (kept / SAMPLES_FILE).read_bytes() and png.startswith(b"\x89PNG")
    assert "FID 80.0" in caption and "IS 1.50" in caption and str(genotype).split(":")[1] in caption


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--population", "5"], "--population must be even and at least 4, got 5"),
        (["--population", "2"], "--population must be a whole number >= 4, got 2"),
        (["--population", "200"], "--s2-steps must be a whole number >= 1, got 0 (120 round"),
        (["--eval-samples", "5"], "--eval-samples must be a whole number >= 10, got 5"),
        (["--s2-lr", "0"], "--s2-lr must be a number above 0, got 0.0"),
        (["--resume"], "nothing to resume"),
        (["--dataset", "cifar10", "--data-root", "/nowhere"], "CIFAR-10 not found"),
    ],
)
def test_bad_spec_stops_before_ray_with_one_line(tmp_path, capsys, options, message):
    """Exit 2 with one line; nothing is written (``--out`` at most created, empty)."""
    out = tmp_path / "x"
    assert main(["search", "eagan", "--out", str(out), *options]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    "gpus_here, options, message",
    [
        (0, ["--gpus", "0.5"], "--gpus given but this machine has no CUDA GPU"),
        (1, ["--gpus", "2"], "--gpus 2 per trial, but this machine has 1 GPU(s)"),
        (1, ["--gpus", "0.25"], "--workers 2 takes one GPU per worker"),  # the quick preset's
        (1, ["--gpus", "0.25", "--workers", "1", "--cpus", "1000"], "needs 1000 CPUs"),
    ],
)
def test_resources_this_machine_lacks_stop_before_ray(
    gpus_here, options, message, tmp_path, capsys, monkeypatch
):
    """Ray would wait forever for them; the GPU count is the only thing faked here."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus_here)
    assert main(["search", "eagan", "--out", str(tmp_path / "x"), *options]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_paper_preset_budgets_are_the_papers_epochs():
    """METHODS.md: warm-up 50 epochs and rounds of 10 (n_critic 1); a stage-2 round is 10
    epochs at n_critic 5 whose batches are shared among all P pairs, whatever P is."""
    p = load_preset("eagan", "paper")

    def epoch(n_critic: int) -> int:  # G steps per pass over CIFAR-10's 50,000 images
        return 50_000 // (p["d_batch"] * n_critic)

    assert (p["population"], p["generations"], p["dataset"]) == (32, 18, "cifar10")
    assert p["warmup_steps"] == 50 * epoch(p["s1_n_critic"])
    assert p["round_steps"] == 10 * epoch(p["s1_n_critic"])
    assert p["s2_round_steps"] == 10 * epoch(p["s2_n_critic"])
    for population, per_pair in ((32, 48), (16, 97)):
        args = argparse.Namespace(**{**p, "population": population, "s2_steps": None})
        assert stage2_steps(args) == per_pair == p["s2_round_steps"] // population
    assert stage2_steps(argparse.Namespace(**{**p, "s2_steps": 7})) == 7


def test_the_estimate_matches_the_flops_the_search_trained(search, capsys):
    """``--estimate`` of the search's options, against the FLOPs its rows recorded. The
    estimate counts each stage's first population (here, all of it); later generations
    train other members, so the two agree only closely."""
    capsys.readouterr()
    assert main(["search", "eagan", *search.options, "--estimate", "--tflops", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    estimated = {int(line.split()[1]): float(line.split()[4]) for line in lines[1:3]}
    df = results.load(search.out)
    measured = df.groupby("stage")["train_flops"].sum() / 1e15
    for stage in (1, 2):
        assert estimated[stage] == pytest.approx(measured[stage], rel=0.05), stage
