"""NSGA-II: the algorithm on its own (fast, no Ray cluster), then under a real Tune ``Tuner``."""

import math
import random

import numpy as np
import pytest

from raygan import spaces
from raygan.searchers.nsga2 import NSGA2
from raygan.spaces import ABSENT, Gene, Genotype, Space
from raygan.state import dumps, loads

METRICS, MODES = ("score", "size"), ("max", "min")


def objectives(genotype: str) -> dict[str, float]:
    """Two conflicting objectives from a genotype string: big genes, few non-zero genes."""
    genes = [int(v) for v in genotype.partition(":")[2].replace("/", ",").split(",")]
    return {"score": float(sum(genes)), "size": float(sum(v != 0 for v in genes))}


def make(space="nas_cell_g", **kwargs) -> NSGA2:
    settings = dict(population_size=6, generations=4, metrics=METRICS, modes=MODES, seed=3)
    return NSGA2(space, **{**settings, **kwargs})


def drive(search: NSGA2, order_seed=None, fail=()) -> int:
    """Evaluate generation after generation until done; returns how many results were told.

    Each generation's proposals are all asked, then told in an order shuffled by
    ``order_seed``; individuals in ``fail`` are told ``None``.
    """
    shuffle, told = random.Random(order_seed), 0
    while not search.finished:
        batch = []
        while (suggestion := search.ask()) is not None:
            batch.append(suggestion)
        shuffle.shuffle(batch)
        for key, config in batch:
            result = objectives(config[search.config_key])
            search.tell(key, None if config["individual"] in fail else result)
            told += 1
    return told


def interleave(search: NSGA2, out: list, steps: int | None = None) -> None:
    """Ask one proposal at a time, telling the oldest whenever two are out (or none can be
    asked), for ``steps`` asks and tells or until done: a stop leaves proposals both out
    (in ``out``) and not yet asked."""
    while not search.finished and (steps is None or steps > 0):
        suggestion = search.ask() if len(out) < 2 else None
        if suggestion is not None:
            out.append(suggestion)
        else:
            key, config = out.pop(0)
            search.tell(key, objectives(config["genotype"]))
        steps = None if steps is None else steps - 1


def tiny_space(options: int = 3) -> Space:
    """Two free genes of ``options`` values each: ``options**2`` genotypes, easy to exhaust."""
    gene = Gene("g", tuple(str(i) for i in range(options)), tuple(range(options)))
    return Space("tiny", "generator", ((gene, gene),), ())


# ----- variation keeps genotypes valid ------------------------------------------------------
def changed_units(space: Space, a: Genotype, b: Genotype) -> list[tuple[int, tuple[int, ...]]]:
    return [
        (ci, unit)
        for ci in range(len(space.cells))
        for unit in space.edges(ci)
        if any(a.cells[ci][p] != b.cells[ci][p] for p in unit)
    ]


@pytest.mark.parametrize("name", ["nas_cell_g", "eagan_d"])
def test_operators_keep_genotypes_valid(name):
    space, rng = spaces.get(name), np.random.default_rng(0)
    for _ in range(300):
        a, b = space.sample(rng), space.sample(rng)
        child = space.mutate(a, rng)
        space.validate(child)
        assert len(changed_units(space, a, child)) == 1  # one edge (coupled genes move together)
        pair = space.crossover(a, b, rng)
        if pair is not None:
            for c in pair:
                space.validate(c)
            assert len(changed_units(space, a, pair[0])) == 1
            assert changed_units(space, a, pair[0]) == changed_units(space, b, pair[1])


def test_a_long_eagan_d_search_only_proposes_valid_unique_genotypes():
    search = make("eagan_d", population_size=8, generations=12, p_crossover=0.8)
    drive(search)
    genotypes = [Genotype.parse(row["genotype"]) for row in search.history()]
    assert len(genotypes) == 8 + 11 * 4 == len(set(genotypes))
    for g in genotypes:
        spaces.validate(g)
        for cell in g.cells:  # EAGAN's coupled down genes: both absent or both present
            assert (cell[5] == ABSENT) == (cell[6] == ABSENT)
    assert any(len(row["parents"]) == 2 for row in search.history())  # crossover happened


# ----- the generational protocol ------------------------------------------------------------
def test_classic_generations_evaluate_only_children():
    search = make()
    first = [search.ask() for _ in range(6)]
    assert search.ask() is None and not search.finished  # waits for the generation
    assert len({s.config["genotype"] for s in first}) == 6
    assert {s.config["generation"] for s in first} == {0}
    assert all(s.config["parents"] == [] for s in first)
    for key, config in first[:-1]:
        search.tell(key, objectives(config["genotype"]))
        assert search.ask() is None
    key, config = first[-1]
    search.tell(key, objectives(config["genotype"]))
    assert search.generation == 1
    drive(search)
    assert search.finished and search.ask() is None
    assert len(search.history()) == 6 + 3 * 3  # P, then P/2 children per later generation
    history = search.history()
    assert [row["generation"] for row in history] == [0] * 6 + [1] * 3 + [2] * 3 + [3] * 3
    assert all(row["born"] == row["generation"] for row in history)


def test_shared_weights_mode_reevaluates_survivors_every_generation():
    search = make(reevaluate_parents=True)
    assert drive(search) == 6 * 4
    history = search.history()
    by_generation = {}
    for row in history:
        by_generation.setdefault(row["generation"], []).append(row)
    for g in range(1, 4):
        survivors = {r["individual"] for r in by_generation[g - 1] if r["survived"]}
        again = {r["individual"] for r in by_generation[g] if r["born"] < g}
        assert again == survivors and len(survivors) == 3


def test_selection_follows_fronts_then_crowding_and_children_come_from_survivors():
    search = make(population_size=10, generations=5, reevaluate_parents=True)
    drive(search, fail={1, 4})
    history = search.history()
    for g in range(5):
        rows = [r for r in history if r["generation"] == g]
        kept = [(r["rank"], -r["crowding"]) for r in rows if r["survived"]]
        dropped = [(r["rank"], -r["crowding"]) for r in rows if not r["survived"]]
        assert len(kept) == 5 and max(kept) <= min(dropped)
        if g:
            parents = {
                r["individual"] for r in history if r["generation"] == g - 1 and r["survived"]
            }
            for r in rows:
                if r["born"] == g:
                    assert set(r["parents"]) <= parents and 1 <= len(r["parents"]) <= 2


def test_failures_are_dominated_and_never_on_the_front():
    search = make(population_size=8, generations=2)
    batch = [search.ask() for _ in range(8)]
    results = {0: None, 1: {"score": math.nan, "size": 1.0}, 2: {"score": 3.0}}  # no "size"
    for key, config in batch:
        default = objectives(config["genotype"])
        search.tell(key, results.get(config["individual"], default))
    rows = {r["individual"]: r for r in search.history()}
    worst_ok = max(r["rank"] for r in rows.values() if r["status"] == "ok")
    for i in (0, 1, 2):
        assert rows[i]["status"] == "failed" and math.isnan(rows[i]["score"])
        assert rows[i]["rank"] == worst_ok + 1 and rows[i]["crowding"] == 0
        assert not rows[i]["survived"]
    drive(search)
    assert all(row["status"] == "ok" for row in search.front())
    assert all(row["individual"] not in (0, 1, 2) for row in search.front())


def test_front_and_population_views():
    search = make()
    drive(search)
    population = search.population()
    assert len(population) == 6 and all(row["status"] == "ok" for row in population)
    front = search.front()
    assert front and {row["individual"] for row in front} == {
        row["individual"] for row in population if row["rank"] == 0
    }


def test_unknown_or_repeated_results_are_refused():
    search = make()
    key, _ = search.ask()
    with pytest.raises(KeyError, match="not a proposal"):
        search.tell("9-99", {"score": 1.0, "size": 1.0})
    search.tell(key, {"score": 1.0, "size": 1.0})
    with pytest.raises(KeyError, match="not a proposal"):
        search.tell(key, {"score": 1.0, "size": 1.0})


def test_settings_are_checked():
    with pytest.raises(ValueError, match="one mode per metric"):
        make(modes=("max",))
    with pytest.raises(ValueError, match="'max' or 'min'"):
        make(modes=("max", "lower"))
    with pytest.raises(ValueError, match="exceeds the 9 genotypes"):
        make(tiny_space(), population_size=10)
    with pytest.raises(ValueError, match="p_crossover"):
        make(p_crossover=1.5)


def test_custom_config_key():
    suggestion = make(config_key="g_genotype").ask()
    assert Genotype.parse(suggestion.config["g_genotype"]).space == "nas_cell_g"


# ----- duplicates, exhaustion, determinism --------------------------------------------------
def test_no_genotype_is_ever_proposed_twice():
    search = make(population_size=12, generations=15, seed=0)
    drive(search)
    seen = [row["genotype"] for row in search.history()]
    assert len(seen) == len(set(seen)) == 12 + 14 * 6


@pytest.mark.parametrize("options", [3, 4])
def test_an_exhausted_space_ends_the_search_with_a_reason(options):
    search = make(tiny_space(options), population_size=4, generations=50)
    drive(search)
    seen = [row["genotype"] for row in search.history()]
    assert search.finished and len(seen) == len(set(seen)) <= options**2
    assert "exhausted" in search.stop_reason
    assert search.history()[-1]["rank"] is not None  # the last generation was still ranked


def test_same_seed_same_search_whatever_the_order_of_results():
    runs = []
    for order in (0, 1, 2):
        search = make(population_size=8, generations=5)
        drive(search, order_seed=order, fail={3})
        runs.append(search.history())
    assert runs[0] == runs[1] == runs[2]
    other = make(population_size=8, generations=5, seed=4)
    drive(other, fail={3})
    assert other.history() != runs[0]


# ----- state --------------------------------------------------------------------------------
@pytest.mark.parametrize("reevaluate", [False, True])
def test_restoring_at_any_point_continues_exactly(reevaluate):
    reference = make(reevaluate_parents=reevaluate)
    interleave(reference, [])
    assert reference.history() == drive_history(make(reevaluate_parents=reevaluate))
    for stop in range(2 * len(reference.history())):
        search, out = make(reevaluate_parents=reevaluate), []
        interleave(search, out, steps=stop)
        resumed = make(reevaluate_parents=reevaluate)
        resumed.load_state_dict(loads(*dumps(search.state_dict())))
        interleave(resumed, out)
        assert resumed.history() == reference.history(), stop


def drive_history(search: NSGA2) -> list[dict]:
    drive(search, order_seed=11)
    return search.history()


def test_bytes_round_trip_and_settings_guard():
    search, out = make(), []
    interleave(search, out, steps=17)
    copy = NSGA2.from_bytes(search.to_bytes())
    assert copy.state_dict() == search.state_dict()
    interleave(search, list(out))
    interleave(copy, out)
    assert copy.history() == search.history()
    with pytest.raises(ValueError, match="other settings"):
        make(population_size=8).load_state_dict(search.state_dict())
