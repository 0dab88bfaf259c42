"""The command line as a user runs it: zoo, train (a real Tune trial), eval, bad input."""

import json
import math
import os

import pytest

from raygan import results, spaces
from raygan.cli import main

TINY = [
    "--width-scale",
    "0.0625",
    "--steps",
    "6",
    "--n-critic",
    "1",
    "--g-batch",
    "16",
    "--d-batch",
    "16",
    "--eval-samples",
    "200",
    "--max-images",
    "500",
]


def test_zoo_json_lists_exact_counts(capsys):
    assert main(["zoo", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["eagan_cifar10"]["g_params"] == 7_142_403
    assert rows["autogan_cifar10_a"]["d_params"] == 1_053_824
    assert main(["zoo"]) == 0
    assert "adversarialnas_cifar10" in capsys.readouterr().out


def test_train_writes_a_row_samples_and_a_resumable_checkpoint(ray_local, tmp_path, capsys):
    out = str(tmp_path / "exp")
    assert main(["train", "--arch", "eagan_cifar10", *TINY, "--out", out]) == 0
    df = results.load(out)
    assert len(df) == 1
    row = df.iloc[0]
    assert row["status"] == "ok" and row["strategy"] == "train"
    assert math.isfinite(row["is"]) and row["is"] >= 1 and math.isfinite(row["fid"])
    assert row["eval_samples"] == 200 and row["extractor"] == "raygan-shapes-v1"
    assert row["g_genotype"] == "nas_cell_g:1,1,1,0,2,3,1/1,1,0,1,3,0,5/0,1,0,3,0,0,3"
    assert row["gf"] == 16 and row["df"] == 8 and row["budget_steps"] == 6
    for name in ("state.pt", "config.json", "samples.png"):
        assert os.path.isfile(os.path.join(row["checkpoint"], name))
    capsys.readouterr()
    assert main(["eval", row["checkpoint"], "--eval-samples", "200"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["num_samples"] == 200 and math.isfinite(scores["fid"])

    # a second run into the same experiment appends; nothing is overwritten
    arch = spaces.Arch(
        spaces.Genotype.parse(row["g_genotype"]), spaces.Genotype.parse("autogan_d:"), 128, 128
    )
    path = str(tmp_path / "arch.yaml")
    spaces.write_arch_file(path, arch)
    assert main(["train", "--genotype-file", path, *TINY, "--out", out]) == 0
    df = results.load(out)
    # its own trial, not the first run's Tune experiment restored and its row appended again
    assert len(df) == 2 and df["trial_id"].is_unique, df["trial_id"].tolist()
    assert df.iloc[1]["d_genotype"] == "autogan_d:"
    assert df.iloc[1]["gf"] == 8 and df.iloc[1]["checkpoint"] != row["checkpoint"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--arch", "nope"], "unknown arch 'nope'; choose from: autogan_cifar10_a"),
        (["train"], "give exactly one of --arch NAME or --genotype-file PATH"),
        (
            ["train", "--genotype-file", "/no/such.yaml"],
            "--genotype-file /no/such.yaml: cannot read",
        ),
        (
            ["train", "--arch", "eagan_cifar10", "--dataset", "cifar10", "--data-root", "/nowhere"],
            "CIFAR-10 not found: expected /nowhere/cifar-10-batches-py/",
        ),
        (["eval", "/nowhere"], "/nowhere is not a raygan checkpoint"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--arch", "eagan_cifar10", "--steps", "0"],
        ["train", "--arch", "eagan_cifar10", "--gpus", "-1"],
        ["train", "--arch", "eagan_cifar10", "--dataset", "imagenet"],
    ],
)
def test_bad_option_values_exit_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err and len(err.strip().splitlines()) == 1  # no usage block


def test_bad_genotype_file_names_the_gene(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text('g: "nas_cell_g:1,1,0,0,3,3,1/1,1,0,1,3,3,3/0,1,0,3,3,0,3"\nd: "autogan_d:"\n')
    assert main(["train", "--genotype-file", str(path)]) == 2
    err = capsys.readouterr().err
    assert "cell 1: genes 2 (n0_n2), 3 (n1_n2) are all 'none'" in err
