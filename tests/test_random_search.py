"""``raygan search random`` (with weight sharing): EAGAN's pipeline, members drawn uniformly.

What it shares with EAGAN (driver, rounds, trials, table, resume) is EAGAN's code, run end to
end by tests/test_golden.py; here: the one thing that differs, and that the two spend the same.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest

from raygan import spaces
from raygan.cli import build_parser
from raygan.searchers.nsga2 import NSGA2
from raygan.spec import build_spec, load_preset
from raygan.strategies import eagan, random_search

METRICS, MODES = ("score", "size"), ("max", "min")


def told(search: NSGA2, generations: int) -> list[dict]:
    """Tell every proposal of ``generations`` generations a score of its genotype; the
    population after each."""
    populations = []
    for _ in range(generations):
        batch = []
        while (suggestion := search.ask()) is not None:
            batch.append(suggestion)
        for key, config in batch:
            genes = spaces.Genotype.parse(config["genotype"]).to_list()
            flat = [v for cell in genes for v in cell]
            search.tell(key, {"score": float(sum(flat)), "size": float(sum(v != 0 for v in flat))})
        populations.append(search.population())
    return populations


def search(offspring: str, **settings) -> NSGA2:
    defaults = dict(population_size=8, generations=12, metrics=METRICS, modes=MODES, seed=5)
    return NSGA2("nas_cell_g", **{**defaults, **settings}, offspring=offspring)


def test_uniform_members_have_no_parents_and_survival_is_nsga2s():
    bred, uniform = search("bred"), search("uniform")
    (after_bred,), (after_uniform,) = told(bred, 1), told(uniform, 1)
    # the same first generation, told the same: the same survivors
    survivors = [m["individual"] for m in after_uniform if m["born"] == 0]
    assert survivors == [m["individual"] for m in after_bred if m["born"] == 0]
    new = [m for m in after_uniform if m["born"] == 1]
    assert len(new) == 4 and all(m["parents"] == [] for m in new)
    assert all(m["parents"] for m in after_bred if m["born"] == 1)


def test_uniform_members_are_new_and_spread_over_the_whole_space():
    s = search("uniform", population_size=20, generations=16)
    populations = told(s, 16)
    born = {m["individual"]: m["genotype"] for p in populations for m in p if m["born"] > 0}
    genotypes = list(born.values())
    assert len(genotypes) == len(set(genotypes)) == 15 * 10  # never one seen before
    # every choice of every gene turns up, about as often as uniform sampling gives it
    space = spaces.get("nas_cell_g")
    counts = collections.Counter(
        (i, j, v)
        for g in genotypes
        for i, cell in enumerate(spaces.Genotype.parse(g).to_list())
        for j, v in enumerate(cell)
    )
    rng = np.random.default_rng(0)
    expected = collections.Counter(
        (i, j, v)
        for _ in range(len(genotypes))
        for i, cell in enumerate(space.sample(rng).to_list())
        for j, v in enumerate(cell)
    )
    assert counts.keys() == expected.keys()
    for key, n in expected.items():
        assert abs(counts[key] - n) <= 4 * n**0.5 + 3, key


def test_a_state_saved_before_the_setting_loads_as_bred():
    bred = search("bred")
    told(bred, 1)
    state = bred.state_dict()
    del state["settings"]["offspring"]
    again = search("bred")
    again.load_state_dict(state)
    assert again.population() == bred.population()
    with pytest.raises(ValueError, match="offspring"):
        search("uniform").load_state_dict(state)


def test_the_baseline_spends_what_eagan_spends():
    """Its presets are EAGAN's; its driver asks EAGAN's questions of a uniform NSGA-II."""
    for preset in ("quick", "paper"):
        assert load_preset("random", preset) == load_preset("eagan", preset)
    args = build_parser().parse_args(["search", "random", "--seed", "3", "--out", "o"])
    spec = build_spec("random", args)
    twin = build_spec("eagan", build_parser().parse_args(["search", "eagan", "--seed", "3"]))
    differ = {k for k in spec.to_dict() if spec.to_dict()[k] != twin.to_dict()[k]}
    assert differ == {"strategy", "out"}
    random_search.validate(spec)
    driver = random_search.RandomSearch(spec, "random")
    driver.state = {**driver.fresh_state(), "round": None, "pending": None}
    algorithm = driver.search()
    assert algorithm.offspring == "uniform" and eagan.EaganSearch(spec, "eagan").OFFSPRING == "bred"
    assert [m["genotype"] for m in algorithm.population()] == [
        m["genotype"] for m in eagan.new_search(twin, 1).population()
    ]  # the same first generation: only what follows differs
    assert random_search.estimate(spec) == eagan.estimate(twin)
