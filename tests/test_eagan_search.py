"""`raygan search eagan` as a user runs it: killed mid-generation, resumed, analysed."""

import argparse
import glob
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import pytest
import torch

from raygan import results, spaces
from raygan.analysis import hypervolume_by_generation
from raygan.cli import main
from raygan.spec import load_preset
from raygan.strategies.eagan import stage2_steps, supernet_run_name
from raygan.trainable import SAMPLES_FILE, STATE_FILE

P, GENERATIONS = 4, 2
TINY = [
    "--population",
    str(P),
    "--generations",
    str(GENERATIONS),
    "--gf",
    "16",
    "--df",
    "16",
    "--warmup-steps",
    "10",
    "--round-steps",
    "10",
    "--s2-steps",
    "4",
    "--g-batch",
    "16",
    "--d-batch",
    "16",
    "--eval-samples",
    "200",
    "--max-images",
    "500",
    "--workers",
    "2",
]


def finished_trials(out: str, experiment: str) -> int:
    """Trials of one Tune experiment that reached their final report."""
    count = 0
    for path in glob.glob(os.path.join(out, "tune", experiment, "*", "result.json")):
        with open(path) as f:
            count += any(json.loads(line).get("done") for line in f if line.strip())
    return count


def final_reports_per_trial(out: str) -> list[int]:
    counts = []
    for path in glob.glob(os.path.join(out, "tune", "*", "*", "result.json")):
        with open(path) as f:
            counts.append(sum(bool(json.loads(line).get("done")) for line in f if line.strip()))
    return counts


def test_killed_mid_generation_resumes_without_losing_or_repeating(tmp_path, capsys):
    """With --keep-weights last, so the resume also shows that pruning keeps what it needs."""
    out = str(tmp_path / "eagan")
    options = [*TINY, "--keep-weights", "last", "--out", out]
    cmd = [sys.executable, "-m", "raygan.cli", "search", "eagan", *options]
    log = open(tmp_path / "first-run.log", "w")  # noqa: SIM115 (closed with the process)
    # A Ray of its own (private RAY_TMPDIR, short: socket paths are limited), so that killing
    # it leaves the session's Ray and anything else on the machine alone.
    ray_tmp = tempfile.mkdtemp(prefix="rgk", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp}
    proc = subprocess.Popen(
        cmd, start_new_session=True, stdout=log, stderr=subprocess.STDOUT, env=env
    )
    deadline = time.time() + 420
    while finished_trials(out, "stage1-gen1") < 1 and proc.poll() is None:
        assert time.time() < deadline, "search made no progress"
        time.sleep(0.5)
    assert proc.poll() is None, f"the search exited early with code {proc.returncode}"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
    proc.wait()
    log.close()
    subprocess.run(["pkill", "-9", "-f", ray_tmp], capture_output=True)  # its Ray daemons
    before = results.load(out)
    assert set(before["generation"]) == {0}  # generation 1 was cut off mid-way

    assert main(["search", "eagan", *options, "--resume"]) == 0

    df = results.load(out)
    assert len(df) == P * GENERATIONS * 2
    assert df.groupby(["stage", "generation"]).size().eq(P).all()
    assert not df.duplicated(["stage", "generation", "individual"]).any()
    # rows written before the kill are still there, unchanged
    pd.testing.assert_frame_equal(
        df.iloc[: len(before)].reset_index(drop=True), before.reset_index(drop=True)
    )
    # no finished trial ran twice: every trial reached its final report exactly once
    assert final_reports_per_trial(out) and set(final_reports_per_trial(out)) == {1}
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
    # pruned: only each stage's last generation keeps its weights, every trial its samples,
    # and only the last supernet round is left
    for row in df.itertuples():
        kept = os.path.exists(os.path.join(row.checkpoint, STATE_FILE))
        assert kept == (row.generation == GENERATIONS - 1), (row.stage, row.generation)
        assert os.path.exists(os.path.join(row.checkpoint, SAMPLES_FILE))
    assert os.listdir(os.path.join(out, "supernet")) == [supernet_run_name(GENERATIONS - 1)]
    capsys.readouterr()
    assert main(["eval", df[df.generation == 0]["checkpoint"].iloc[0]]) == 2
    assert "pruned" in capsys.readouterr().err

    capsys.readouterr()
    assert main(["analyze", out]) == 0
    text = capsys.readouterr().out
    assert "EAGAN stage 1" in text and "Pareto front" in text and "hypervolume" in text
    names = ["pareto_stage1.png", "pareto_stage2.png", "hypervolume_stage1.png"]
    names += ["front_samples_stage1.png", "front_samples_stage2.png"]
    for name in names:
        assert os.path.getsize(os.path.join(out, name)) > 1000
        assert f"plot: {os.path.join(out, name)}" in text


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


def test_bad_spec_stops_before_ray_with_one_line(tmp_path, capsys):
    out = str(tmp_path / "x")
    assert main(["search", "eagan", "--population", "5", "--out", out]) == 2
    assert "--population must be even" in capsys.readouterr().err
    assert main(["search", "eagan", "--population", "200", "--out", out]) == 2
    assert "--s2-steps must be a whole number >= 1, got 0 (120 round" in capsys.readouterr().err
    assert main(["search", "eagan", "--out", out, "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert (
        main(["search", "eagan", "--dataset", "cifar10", "--data-root", "/nowhere", "--out", out])
        == 2
    )
    assert not os.path.exists(os.path.join(out, "trials.parquet"))


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
