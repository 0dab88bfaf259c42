"""`raygan analyze` on small synthetic tables in the real schema, one per strategy (no Ray)."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest

from raygan import analysis, results, spaces
from raygan.cli import main

pytest.importorskip("matplotlib")


def png_bytes(seed: int) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    plt.imsave(buf, np.random.default_rng(seed).random((8, 8, 3)), format="png")
    return buf.getvalue()


def sample(space: str, seed: int) -> str:
    return str(spaces.get(space).sample(np.random.default_rng(seed)))


def eagan_rows(tmp_path) -> list[dict]:
    rows = []
    d0 = "autogan_d:"
    g_best = sample("nas_cell_g", 0)
    scores = {  # (generation, individual): (is, fid, params)
        (0, 0): (1.2, 90.0, 1000),
        (0, 1): (1.5, 80.0, 3000),
        (0, 2): (1.1, 95.0, 2000),  # dominated by (0, 0)
        (1, 3): (1.6, 70.0, 2500),
        (1, 4): (1.3, 85.0, 900),
        (1, 5): (None, None, 1500),  # failed
    }
    for stage in (1, 2):
        for (generation, individual), (is_, fid, params) in scores.items():
            checkpoint = tmp_path / "ckpt" / f"s{stage}-{individual}"
            if is_ is not None:
                checkpoint.mkdir(parents=True)
                (checkpoint / "samples.png").write_bytes(png_bytes(individual))
            rows.append(
                {
                    "experiment": "e",
                    "trial_id": f"t{stage}{individual}",
                    "strategy": "eagan",
                    "stage": stage,
                    "generation": generation,
                    "individual": individual,
                    "g_genotype": sample("nas_cell_g", individual) if stage == 1 else g_best,
                    "d_genotype": d0 if stage == 1 else sample("eagan_d", individual),
                    "is": is_,
                    "fid": fid,
                    "g_params": params if stage == 1 else 5000,
                    "d_params": 700 if stage == 1 else params,
                    "status": "ok" if is_ is not None else "failed",
                    "checkpoint": str(checkpoint),
                    "extractor": "shapes-net",
                }
            )
    return rows


def autogan_rows() -> list[dict]:
    rows = []
    step = 0
    for stage in (0, 1, 2):
        for generation in (0, 1):
            for k in range(2):
                reward = 1.0 + stage + 0.5 * generation + 0.1 * k
                rows.append(
                    {
                        "strategy": "autogan",
                        "trial_id": f"a{step}",
                        "stage": stage,
                        "generation": generation,
                        "step": step,
                        "g_genotype": sample("autogan", step),
                        "d_genotype": "autogan_d:",
                        "reward": reward,
                        "is": reward,
                        "fid": 100.0 - reward,
                        "phase": "search",
                        "reset": stage == 0 and generation == 1,
                    }
                )
                step += 1
        for kept in (1, 2):
            rows.append(
                {
                    "strategy": "autogan",
                    "trial_id": f"sel{stage}{kept}",
                    "stage": stage,
                    "generation": 1,
                    "step": step,
                    "g_genotype": sample("autogan", 100 + kept),
                    "d_genotype": "autogan_d:",
                    "reward": 3.0 - kept,
                    "is": 3.0 - kept,
                    "fid": 50.0,
                    "phase": "select",
                    "kept": kept,
                }
            )
    return rows


def adversarialnas_rows() -> list[dict]:
    g, d = sample("nas_cell_g", 0), sample("adversarialnas_d", 0)
    g2 = sample("nas_cell_g", 1)
    genotypes = [(g, d), (g, d), (g2, d)]
    return [
        {
            "strategy": "adversarialnas",
            "trial_id": f"search-{epoch}",
            "generation": epoch,
            "g_genotype": gg,
            "d_genotype": dd,
            "entropy": 1.5 - 0.1 * epoch,
            "g_entropy": 1.6 - 0.1 * epoch,
            "d_entropy": 1.4 - 0.1 * epoch,
            "is": 1.0 + epoch,
            "fid": 100.0 - epoch,
            "extractor": "shapes-net",
        }
        for epoch, (gg, dd) in enumerate(genotypes, 1)
    ]


def analyze(capsys, out: str) -> str:
    capsys.readouterr()
    assert main(["analyze", out]) == 0
    return capsys.readouterr().out


def assert_plots(text: str, out: str, names: list[str]) -> None:
    for name in names:
        path = os.path.join(out, name)
        assert os.path.getsize(path) > 1000, name
        assert f"plot: {path}" in text


def test_eagan_front_hypervolume_and_plots(tmp_path, capsys):
    out = str(tmp_path / "eagan")
    results.append(out, eagan_rows(tmp_path))
    text = analyze(capsys, out)
    assert "EAGAN stage 1: 6 trials, 2 generations, 1 failed" in text
    assert "Pareto front of generation 1 (is max, fid min, g_params min):" in text
    assert "Pareto front of generation 1 (is max, fid min, d_params min):" in text
    assert "hypervolume per generation (normalised objectives, ref 1.1):" in text
    df = results.load(out)
    hv = analysis.hypervolume_by_generation(df, 1)
    assert hv["generation"].tolist() == [0, 1] and hv["front_size"].tolist() == [2, 2]
    assert (hv["hypervolume"] > 0).all()
    front = df[(df.stage == 1) & (df.generation == 1) & (df.status == "ok")]
    assert len(analysis.front_samples(front, "g_genotype")) == 2
    names = [f"{kind}_stage{s}.png" for s in (1, 2) for kind in ("pareto", "hypervolume")]
    names += ["front_samples_stage1.png", "front_samples_stage2.png"]
    assert_plots(text, out, names)


def test_autogan_rewards_kept_and_plot(tmp_path, capsys):
    out = str(tmp_path / "autogan")
    results.append(out, autogan_rows())
    text = analyze(capsys, out)
    assert (
        "AutoGAN stage 0: 6 architectures scored over 2 iterations, 0 failed, "
        "dynamic reset after iteration(s) [2]"
    ) in text
    assert "mean search reward per iteration: 1: 1.050, 2: 1.550" in text
    assert "AutoGAN stage 2: 6 architectures scored over 2 iterations, 0 failed\n" in text
    assert text.count("kept prefixes (best first):") == 2
    assert text.count("final top-k (best first):") == 1
    assert_plots(text, out, ["reward_per_stage.png"])


def test_adversarialnas_epochs_and_plots(tmp_path, capsys):
    out = str(tmp_path / "anas")
    results.append(out, adversarialnas_rows())
    text = analyze(capsys, out)
    assert "AdversarialNAS: 3 epochs; IS/FID of the EMA supernet generator (shapes-net)" in text
    table = analysis.epochs_table(results.load(out))
    assert table["epoch"].tolist() == [1, 2, 3]
    assert table["changed"].tolist()[:2] == [0, 0] and table["changed"].iloc[2] > 0
    assert table["g_entropy"].tolist() == pytest.approx([1.5, 1.4, 1.3])
    assert f"derived after epoch 3: G {sample('nas_cell_g', 1)}" in text
    assert_plots(text, out, ["adversarialnas_curves.png", "adversarialnas_genotypes.png"])


def test_train_rows_and_mixed_tables_fall_back_to_the_table(tmp_path, capsys):
    out = str(tmp_path / "mixed")
    train = {"strategy": "train", "trial_id": "solo", "g_genotype": "autogan:", "is": 2.0}
    results.append(out, [train, {**train, "strategy": "someday", "trial_id": "later"}])
    results.append(out, adversarialnas_rows())
    text = analyze(capsys, out)
    assert text.index("solo") < text.index("later") < text.index("AdversarialNAS: 3 epochs")
    assert "trial_id" in text.splitlines()[0]
    assert analysis.analyzer("train") is analysis.table_summary
    assert set(analysis.ANALYZERS) == {"eagan", "autogan", "adversarialnas", "random", "tune"}


def test_import_brings_in_neither_ray_nor_torch():
    code = "import sys, raygan.analysis; print(sorted({'ray', 'torch'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
