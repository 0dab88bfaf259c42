"""Class-conditional training and search: the one trainer feeds D the real labels and the
classes fakes were drawn for, the one scorer adds intra-FID and class accuracy, the table
records them, and every search's options refuse conditional scores they would not have."""

from __future__ import annotations

import argparse
import math

import pandas as pd
import pytest
import torch

from raygan import data, metrics, nn, results, zoo
from raygan.cli import main
from raygan.errors import UsageError
from raygan.spec import build_spec
from raygan.strategies import autogan, eagan, options, selection
from raygan.train import ArchConfig, Architect, GANTrainer, TrainConfig

SHAPES = len(data.SHAPE_CLASSES)
CFG = TrainConfig(n_critic=1, g_batch=6, d_batch=6, collapse_window=0)


def pair(num_classes: int | None, cfg: TrainConfig = CFG) -> GANTrainer:
    torch.manual_seed(0)
    g = nn.build_generator(zoo.EAGAN_G, width=8, num_classes=num_classes)
    d = nn.build_discriminator(zoo.get("eagan_cifar10").d, width=8, num_classes=num_classes)
    return GANTrainer(g, d, cfg, "cpu", noise_seed=3)


def labelled(n: int = 24) -> data.DeviceBatches:
    found = data.load_labelled("shapes", resolution=32, max_images=n)
    return data.DeviceBatches(found.images, "cpu", seed=1, labels=found.labels)


def test_the_real_labels_reach_d():
    """The same real images scored with other labels give another D loss (same noise)."""
    real, labels = labelled().sample_labelled(6)
    losses = []
    for y in (labels, (labels + 1) % SHAPES):
        trainer = pair(SHAPES)
        losses.append(float(trainer.d_loss(real, None, None, y).detach()))
    assert losses[0] != pytest.approx(losses[1], rel=1e-6)


def test_fakes_are_drawn_for_uniform_classes_from_the_trainers_noise():
    trainer = pair(SHAPES)
    state = trainer.noise.get_state()
    drawn = trainer.classes(4000)["y"]
    counts = torch.bincount(drawn, minlength=SHAPES).float() / len(drawn)
    assert drawn.min() >= 0 and drawn.max() < SHAPES
    assert torch.allclose(counts, torch.full((SHAPES,), 1 / SHAPES), atol=0.03)
    trainer.noise.set_state(state)
    assert torch.equal(trainer.classes(4000)["y"], drawn)  # reproducible from the seed
    assert pair(None).classes(4) == {}  # unconditional: nothing drawn


@pytest.mark.parametrize("joint", [False, True])
def test_a_conditional_pair_trains_and_its_class_parameters_learn(joint):
    trainer = pair(SHAPES, TrainConfig(**{**CFG.to_dict(), "d_joint_batch": joint}))
    before = trainer.D.tail.projection.state_dict()["embed.parametrizations.weight.original"]
    before, gain = before.clone(), trainer.G.class_embedding.weight.clone()
    out = trainer.run(labelled(), 2)
    assert math.isfinite(out["g_loss"]) and math.isfinite(out["d_loss"])
    after = trainer.D.tail.projection.state_dict()["embed.parametrizations.weight.original"]
    assert not torch.equal(after, before)
    assert not torch.equal(trainer.G.class_embedding.weight, gain)


def test_the_architect_splits_the_labels_with_the_images():
    torch.manual_seed(0)
    g = nn.build_supernet("nas_cell_g", width=8, num_classes=SHAPES)
    d = nn.build_supernet("adversarialnas_d", width=8, num_classes=SHAPES)
    cfg = TrainConfig(n_critic=1, g_batch=4, collapse_window=0, d_joint_batch=True)
    trainer = GANTrainer(g, d, cfg, "cpu", noise_seed=7)
    architect = Architect(
        trainer, nn.ArchLogits(g), nn.ArchLogits(d), ArchConfig(), total_iterations=2
    )
    seen = []
    d_loss = trainer.d_loss

    def record(real, g_arch, d_arch, labels=None, noise=None):
        seen.append((len(real), None if labels is None else len(labels)))
        return d_loss(real, g_arch, d_arch, labels, noise)

    trainer.d_loss = record
    losses = architect.iteration(*labelled().sample_labelled(8))
    assert seen == [(4, 4), (4, 4)] and all(math.isfinite(v) for v in losses.values())


def test_a_conditional_generator_is_scored_class_balanced_with_its_class_metrics(tmp_path):
    g = nn.build_generator(zoo.EAGAN_G, width=8, num_classes=SHAPES).eval()
    scores = metrics.evaluate(
        g,
        reference=metrics.Reference("shapes", 32, num_images=160),
        num_samples=80,
        extractor=metrics.SHAPES_EXTRACTOR,
        cache_dir=tmp_path,
    )
    assert len(scores["class_fid"]) == SHAPES
    assert scores["intra_fid"] == pytest.approx(sum(scores["class_fid"]) / SHAPES)
    assert 0 <= scores["class_accuracy"] <= 1 and math.isfinite(scores["fid"])
    plain = nn.build_generator(zoo.EAGAN_G, width=8)
    assert "intra_fid" not in metrics.evaluate(
        plain, reference=metrics.Reference("shapes", 32, num_images=160), num_samples=80,
        extractor=metrics.SHAPES_EXTRACTOR, cache_dir=tmp_path,
    )  # fmt: skip


def test_train_conditional_records_its_class_metrics_and_counts_the_embeddings(
    ray_local, tmp_path, capsys
):
    from test_cli import TINY

    out = str(tmp_path / "exp")
    assert main(["train", "--arch", "eagan_cifar10", *TINY, "--conditional", "--out", out]) == 0
    assert "conditional on 8 classes: intra-FID" in capsys.readouterr().out
    row = results.load(out).iloc[0]
    assert row["conditional"] and row["num_classes"] == SHAPES and row["status"] == "ok"
    assert math.isfinite(row["intra_fid"]) and 0 <= row["class_accuracy"] <= 1
    entry = zoo.get("eagan_cifar10")
    plain = nn.count_params(nn.build_generator(entry.g, width=row["gf"]))
    embedded = nn.count_params(nn.build_generator(entry.g, width=row["gf"], num_classes=SHAPES))
    assert row["g_params"] == embedded > plain
    capsys.readouterr()
    assert main(["eval", row["checkpoint"], "--eval-samples", "200"]) == 0  # from its config
    assert "intra_fid" in capsys.readouterr().out


def test_an_unconditional_table_reads_null_conditional_columns(tmp_path):
    results.append(str(tmp_path), [{"trial_id": "t", "fid": 1.0}])
    row = results.load(str(tmp_path)).iloc[0]
    assert pd.isna(row["intra_fid"]) and pd.isna(row["num_classes"])


def search_spec(strategy: str, *argv: str) -> object:
    from raygan.cli import build_parser

    args = build_parser().parse_args(["search", strategy, "--preset", "quick", *argv])
    return build_spec(strategy, args)


@pytest.mark.parametrize(
    ("strategy", "argv", "says"),
    [
        ("eagan", ["--objectives", "is,intra_fid"], "intra_fid needs --conditional"),
        ("autogan", ["--reward", "class_accuracy"], "class_accuracy needs --conditional"),
        (
            "eagan",
            ["--conditional", "--dataset", "cifar10", "--objectives", "class_accuracy,fid"],
            "class_accuracy needs an extractor that classifies the dataset's classes",
        ),
    ],
)
def test_conditional_scores_are_refused_where_they_would_be_missing(strategy, argv, says):
    module = {"eagan": eagan, "autogan": autogan}[strategy]
    with pytest.raises(UsageError, match=says):
        module.validate(search_spec(strategy, *argv))


def test_a_conditional_search_checks_its_data_has_labels(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "loose.png")
    args = argparse.Namespace(
        dataset="folder", data_root=str(tmp_path), download=False, conditional=True
    )
    with pytest.raises(
        UsageError, match=r"--dataset folder --conditional: folder .* one subfolder"
    ):
        options.check_dataset(args)
    options.check_dataset(argparse.Namespace(**{**vars(args), "conditional": False}))


def test_conditional_objectives_steer_the_pick_and_are_read_back_from_the_table():
    front = pd.DataFrame(
        {
            "is": [3.0, 2.0],
            "fid": [50.0, 60.0],
            "intra_fid": [90.0, 70.0],
            "class_accuracy": [0.5, 0.9],
            "g_params": [10, 10],
            "extra": ['{"objectives": "class_accuracy,intra_fid"}'] * 2,
        }
    )
    assert selection.pick_best(front, selection.objectives(1))["fid"] == 50.0  # the paper's rule
    recorded = selection.table_objectives(front, 1)
    assert recorded == {"class_accuracy": "max", "intra_fid": "min", "g_params": "min"}
    assert selection.pick_best(front, recorded)["intra_fid"] == 70.0


def test_the_intra_fid_reward_ranks_every_working_architecture_above_a_failure():
    search = autogan.new_controller(
        search_spec("autogan", "--conditional", "--reward", "intra_fid")
    )
    assert search.reward_of({"intra_fid": 900.0}) > search.reward_of(None) == 0.0
    assert search.reward_of({"intra_fid": 10.0}) > search.reward_of({"intra_fid": 50.0})
