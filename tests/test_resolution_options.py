"""``--resolution`` as a user gives it: the sizes each dataset allows, the layout every search
and ``raygan train`` build from it, and the refusals of what cannot reach a size."""

from __future__ import annotations

import math

import pytest

from raygan import nn, results, spaces, trainable
from raygan.cli import build_parser, main
from raygan.errors import UsageError
from raygan.spec import build_spec
from raygan.strategies import autogan, eagan, options, tune_search


def search_spec(strategy: str, *argv: str):
    args = build_parser().parse_args(["search", strategy, "--preset", "quick", *argv])
    return build_spec(strategy, args)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--resolution", "96"], "--resolution must be one of 32, 48, 64, 128, got 96"),
        (["--dataset", "cifar10", "--resolution", "64"], "--dataset cifar10 trains at 32 px"),
        (["--dataset", "stl10", "--resolution", "32"], "--dataset stl10 trains at 48 or 64 px"),
    ],
)
def test_a_size_no_layout_or_dataset_allows_is_refused(argv, says):
    with pytest.raises(UsageError, match=says):
        options.check_resolution(search_spec("eagan", *argv))


@pytest.mark.parametrize(
    ("argv", "space", "bottom_width"),
    [
        ([], "nas_cell_g", 4),
        (["--dataset", "stl10"], "nas_cell_g", 6),  # the papers' 48 px
        (["--dataset", "stl10", "--resolution", "64"], "nas_cell_g", 8),
        (["--resolution", "128"], "nas_cell_g4", 8),
    ],
)
def test_eagan_searches_the_generator_space_of_its_size(argv, space, bottom_width):
    spec = search_spec("eagan", *argv)
    options.check_resolution(spec)
    assert tuple(options.layout(spec, "nas_cell_g")) == (space, bottom_width)
    assert eagan.new_search(spec, 1).space.name == space
    assert eagan.new_search(spec, 2).space.name == "eagan_d"  # D's genotypes do not change


def test_autogan_and_a_fixed_generator_refuse_128_px():
    with pytest.raises(UsageError, match="AutoGAN's multi-level search grows three cells"):
        autogan.validate(search_spec("autogan", "--resolution", "128"))
    with pytest.raises(UsageError, match="needs a four-cell generator: search it"):
        tune_search.validate(search_spec("tune", "--search", "d", "--resolution", "128"))
    four_cells = tune_search.new_search(search_spec("tune", "--resolution", "128"))
    assert four_cells.spaces["g"].name == "nas_cell_g4"


def test_a_published_three_cell_genotype_cannot_train_at_128_px(capsys):
    assert main(["train", "--arch", "eagan_cifar10", "--resolution", "128"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--resolution 128: resolution 128 px is not reached with 3 generator cells" in err


def test_a_trial_builds_its_discriminator_for_the_whole_generators_size():
    g = "autogan:1,0,1,1/1,0,0,1,1/1,0,1,0,3"
    config = trainable.full_config({"g": g, "d": "autogan_d:", "gf": 8, "df": 8})
    for bottom_width, n_cells in ((8, None), (8, 1)):  # an MLAS stage runs one cell
        config.update(bottom_width=bottom_width, n_cells=n_cells)
        generator, discriminator = trainable.build_pair(config)
        plain = nn.build_discriminator(spaces.Genotype.parse("autogan_d:"), width=8)
        assert nn.count_params(discriminator) > nn.count_params(plain)  # 64 px: one more block
    assert generator.resolution == 16


def test_train_at_64_px_records_it(ray_local, tmp_path):
    from test_cli import TINY

    out = str(tmp_path / "exp")
    assert (
        main(["train", "--arch", "eagan_cifar10", *TINY, "--resolution", "64", "--out", out]) == 0
    )
    row = results.load(out).iloc[0]
    assert row["resolution"] == 64 and row["status"] == "ok" and math.isfinite(row["fid"])
