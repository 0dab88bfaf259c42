"""Presets as data and the immutable spec `raygan search` builds from them (no Ray)."""

from __future__ import annotations

import argparse
import json
import pickle

import pytest

from raygan import spec as spec_module
from raygan.cli import build_parser, main
from raygan.errors import UsageError
from raygan.spec import Spec, build_spec, load_preset, preset_names
from raygan.strategies import STRATEGIES


def strategy_parser(strategy: str) -> argparse.ArgumentParser:
    """The `raygan search STRATEGY` subparser, as the command line builds it."""
    parser = build_parser()
    search = parser._subparsers._group_actions[0].choices["search"]
    return search._subparsers._group_actions[0].choices[strategy]


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["search", *argv])


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_ships_quick_and_paper_with_the_same_keys(strategy):
    assert preset_names(strategy) == ["paper", "quick"]
    assert set(load_preset(strategy, "quick")) == set(load_preset(strategy, "paper"))


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_preset_key_is_an_option_left_to_the_preset(strategy):
    """An option with an argparse default of its own would always hide the preset's value."""
    defaults = {a.dest: a.default for a in strategy_parser(strategy)._actions}
    for name in preset_names(strategy):
        for key in load_preset(strategy, name):
            assert key in defaults, f"{strategy}.yaml {name}: {key} is not an option"
            assert defaults[key] is None, f"--{key} has a default, the preset would never apply"


def test_presets_hold_the_published_and_the_measured_values():
    paper = load_preset("eagan", "paper")
    assert paper["warmup_steps"] == 50 * 781 and paper["s1_d_lr"] == 4e-5
    assert isinstance(paper["s1_g_lr"], float)  # YAML 1.1: 2e-4 without the dot is a string
    assert load_preset("autogan", "quick")["grow_at"] == "2,4"
    assert load_preset("adversarialnas", "quick")["max_failures"] == 2


def test_unknown_preset_name_is_refused():
    with pytest.raises(UsageError, match="unknown preset 'huge' for eagan; choose from: paper"):
        load_preset("eagan", "huge")


def test_spec_is_the_preset_with_the_defaults():
    spec = build_spec("eagan", parse("eagan"))
    quick = load_preset("eagan", "quick")
    assert {k: spec.to_dict()[k] for k in quick} == quick
    assert (spec.strategy, spec.preset, spec.out) == ("eagan", "quick", "trials/eagan-quick")
    assert spec.seed == 0 and spec.concurrency is None  # options no preset sets keep theirs
    assert "func" not in spec.to_dict() and "command" not in spec.to_dict()


def test_options_given_win_over_the_preset():
    argv = ["adversarialnas", "--preset", "paper", "--epochs", "2", "--gumbel", "--tau-end", "0.5"]
    spec = build_spec("adversarialnas", parse(*argv, "--dataset", "shapes", "--out", "o"))
    assert (spec.epochs, spec.gumbel, spec.tau_end) == (2, True, 0.5)
    assert (spec.dataset, spec.out) == ("shapes", "o")
    assert (spec.batch, spec.tau_start) == (120, 1.0)  # the rest from the paper preset


def test_spec_is_immutable_and_replace_gives_a_new_one():
    spec = build_spec("autogan", parse("autogan"))
    with pytest.raises(AttributeError, match="immutable"):
        spec.keep = 3
    with pytest.raises(AttributeError, match="immutable"):
        del spec.keep
    changed = spec.replace(keep=1, extractor="raygan-shapes-v1")
    assert (changed.keep, changed.extractor) == (1, "raygan-shapes-v1")
    assert (spec.keep, spec.extractor) == (2, "auto")
    with pytest.raises(AttributeError, match="no setting 'kep'"):
        spec.replace(kep=1)
    with pytest.raises(AttributeError, match="no setting 'kep'"):
        spec.kep  # noqa: B018
    spec.to_dict()["keep"] = 99  # a copy
    assert spec.keep == 2
    assert json.loads(json.dumps(spec.to_dict())) == spec.to_dict()
    assert pickle.loads(pickle.dumps(spec)) == spec


def test_unknown_key_in_a_preset_file_stops_with_its_name(tmp_path, monkeypatch, capsys):
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "eagan.yaml").write_text(
        "quick:\n  population: 6\n  populaton: 8  # a typo\npaper:\n  population: 32\n"
    )
    packaged = spec_module.preset_file
    monkeypatch.setattr(
        spec_module,
        "preset_file",
        lambda strategy: (
            tmp_path / "presets" / "eagan.yaml" if strategy == "eagan" else packaged(strategy)
        ),
    )
    with pytest.raises(UsageError, match="preset 'quick' sets 'populaton', which is not an option"):
        build_spec("eagan", argparse.Namespace(preset="quick", population=None, out=None))
    assert main(["search", "eagan", "--out", str(tmp_path / "x")]) == 2
    assert "'populaton'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # stopped before anything was written


def test_a_bad_option_stops_before_out_is_created(tmp_path, capsys):
    out = tmp_path / "x"
    assert main(["search", "eagan", "--population", "5", "--out", str(out)]) == 2
    assert "--population must be even" in capsys.readouterr().err
    assert not out.exists()


def test_spec_is_a_plain_value():
    spec = Spec({"a": 1})
    assert spec == Spec({"a": 1}) and spec != Spec({"a": 2})
    assert repr(spec) == "Spec(a=1)"
