"""NSGA-II over a raygan search space: EAGAN's evolutionary search (METHODS.md section 3).

Plain numpy, no Ray: :class:`NSGA2` satisfies ``raygan.searchers.asktell.AskTell``, so the search
driver runs it (its proposals as Tune trials) and tests run it on its own. The paper
leaves these choices open; they are fixed here:

- **Generations.** ``generations`` counts evaluated generations, the random initial one
  (generation 0: ``population_size`` distinct uniform samples) included. After each
  generation is told, the pool is ranked by non-dominated sorting and crowding distance, and
  the best ``population_size // 2`` survive (whole fronts first, the front that does not fit
  cut by crowding, ties by individual id). The search ends after ranking the last generation.
- **Re-evaluation.** With ``reevaluate_parents=False`` (classic NSGA-II) only the children are
  evaluated and survivors keep their objectives. With ``True`` (EAGAN's shared weights, which
  change every round) every member of every generation is evaluated again.
- **Failures.** A proposal told ``None``, or with a missing or non-finite objective, is a
  failed individual: dominated by every working one (the last front, crowding 0).
- **Children.** Parents are drawn by binary tournament among the survivors (lower front wins,
  then larger crowding, then the first drawn). With probability ``p_crossover`` a second,
  different parent is drawn and one edge is swapped (``Space.crossover``; one of the two
  children is kept at random). A crossover child is then mutated with probability
  ``p_mutation``; a child that got no crossover (not drawn, or no valid swap) is always
  mutated (``Space.mutate``), so no child is a clone of its parent. A child whose genotype was
  ever created before (evaluated, or in the current population) is rejected and bred again.
  With ``offspring="uniform"`` (the random-search baseline with weight sharing) every child is
  instead drawn uniformly from the space (no parents), under the same rejection; survival and
  ranking stay as above.
- **Exhaustion.** When no new genotype can be bred (the space holds fewer unseen genotypes
  than places to fill, or ``MAX_ATTEMPTS`` breeding attempts for one place all give
  duplicates), the search ends early: ``finished`` becomes True and ``stop_reason`` (also
  logged) says why. The last generation is then ranked as if it were the final one.
- **Determinism.** The random generator is used only at construction and when a generation
  closes, visiting individuals in id order, so the same seed gives the same search whatever
  order results are told in.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from raygan import spaces
from raygan.pareto import non_dominated_sort, ranks_and_crowding
from raygan.searchers.asktell import Suggestion, objectives_of
from raygan.spaces import Genotype, Space
from raygan.state import dumps, loads

log = logging.getLogger(__name__)

OFFSPRING = ("bred", "uniform")
"""How children are made: bred from the survivors, or drawn uniformly from the space."""
MAX_ATTEMPTS = 1000
"""Breeding attempts for one child before the space is declared exhausted around the parents."""


class NSGA2:
    """An NSGA-II population that proposes genotypes and learns from their objectives.

    Args:
        space: the search space (a :class:`~raygan.spaces.Space` or a packaged space's name).
        population_size: individuals per generation (EAGAN: 32).
        generations: evaluated generations, generation 0 included.
        metrics: names of the objectives in a trial result.
        modes: ``"max"`` or ``"min"`` per metric.
        seed: seeds the only random generator the search uses.
        p_crossover, p_mutation: operator probabilities (EAGAN: 0.3 and 0.5).
        reevaluate_parents: evaluate survivors again every generation (shared weights).
        offspring: ``"bred"`` (tournament, crossover, mutation) or ``"uniform"`` (drawn from
            the space).
        config_key: the config field that carries the genotype string.
    """

    def __init__(
        self,
        space: Space | str,
        *,
        population_size: int = 32,
        generations: int,
        metrics: Sequence[str],
        modes: Sequence[str],
        seed: int = 0,
        p_crossover: float = 0.3,
        p_mutation: float = 0.5,
        reevaluate_parents: bool = False,
        offspring: str = "bred",
        config_key: str = "genotype",
    ):
        self.space = spaces.get(space) if isinstance(space, str) else space
        self.population_size = int(population_size)
        self.generations = int(generations)
        self.metrics = tuple(metrics)
        self.modes = tuple(modes)
        self.seed = int(seed)
        self.p_crossover = float(p_crossover)
        self.p_mutation = float(p_mutation)
        self.reevaluate_parents = bool(reevaluate_parents)
        self.offspring = offspring
        self.config_key = config_key
        self._check_settings()
        self._sign = np.array([-1.0 if mode == "max" else 1.0 for mode in self.modes])

        self._rng = np.random.default_rng(self.seed)
        self._genotypes: dict[int, Genotype] = {}
        self._born: dict[int, int] = {}
        self._parents: dict[int, tuple[int, ...]] = {}
        self._generation = 0
        self._members: list[int] = []  # the current generation's pool, by id
        self._queue: list[int] = []  # members still to hand out this generation
        self._out: dict[str, int] = {}  # handed-out proposal key -> individual id
        self._objectives: dict[int, tuple[float, ...] | None] = {}  # latest, as told
        self._rows: dict[str, dict[str, Any]] = {}  # one per told evaluation
        self._standing: dict[int, tuple[int, float]] = {}  # latest (rank, crowding)
        self._finished = False
        self.stop_reason: str | None = None

        seen: set[Genotype] = set()
        while len(seen) < self.population_size:  # terminates: population_size <= space size
            genotype = self.space.sample(self._rng)
            if genotype not in seen:
                seen.add(genotype)
                self._members.append(self._create(genotype, ()))
        self._queue = list(self._members)

    def _check_settings(self) -> None:
        problems = []
        if self.population_size < 2:
            problems.append(f"population_size must be at least 2, got {self.population_size}")
        elif self.population_size > self.space.size():
            problems.append(
                f"population_size {self.population_size} exceeds the {self.space.size()} "
                f"genotypes of space {self.space.name!r}"
            )
        if self.generations < 1:
            problems.append(f"generations must be at least 1, got {self.generations}")
        if not self.metrics or len(self.metrics) != len(self.modes):
            problems.append(f"need one mode per metric, got {self.metrics} and {self.modes}")
        if any(mode not in ("max", "min") for mode in self.modes):
            problems.append(f"modes must be 'max' or 'min', got {self.modes}")
        if self.offspring not in OFFSPRING:
            problems.append(f"offspring must be one of {OFFSPRING}, got {self.offspring!r}")
        for name in ("p_crossover", "p_mutation"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be within [0, 1], got {getattr(self, name)}")
        if problems:
            raise ValueError("NSGA2: " + "; ".join(problems))

    # ----- ask / tell -----------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def generation(self) -> int:
        """The generation being evaluated (the last one once finished)."""
        return self._generation

    def ask(self) -> Suggestion | None:
        """The next individual of this generation to evaluate; ``None`` while the generation
        waits for results it handed out, or once the search is finished."""
        if self._finished or not self._queue:
            return None
        ident = self._queue.pop(0)
        key = f"{self._generation}-{ident}"
        self._out[key] = ident
        config = {
            self.config_key: str(self._genotypes[ident]),
            "generation": self._generation,
            "individual": ident,
            "parents": list(self._parents[ident]),
        }
        return Suggestion(key, config)

    def tell(self, key: str, result: Mapping[str, Any] | None) -> None:
        """Record the result of proposal ``key`` (``None``: the trial failed)."""
        try:
            ident = self._out.pop(key)
        except KeyError:
            raise KeyError(f"NSGA2: {key!r} is not a proposal awaiting a result") from None
        told = objectives_of(result, self.metrics)
        values = None if told is None else tuple(told[m] for m in self.metrics)
        self._objectives[ident] = values
        self._rows[key] = {
            "individual": ident,
            "genotype": str(self._genotypes[ident]),
            "generation": self._generation,
            "born": self._born[ident],
            "parents": list(self._parents[ident]),
            **self._columns(values),
            "status": "failed" if values is None else "ok",
        }
        if not self._queue and not self._out:
            self._close_generation()

    def _columns(self, values: tuple[float, ...] | None) -> dict[str, float]:
        return dict(zip(self.metrics, values or (math.nan,) * len(self.metrics), strict=True))

    # ----- selection and variation ----------------------------------------------------------
    def _rank(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Front and crowding of ``ids`` by their latest objectives (failures last)."""
        nan = (math.nan,) * len(self.metrics)
        F = np.array([self._objectives[i] or nan for i in ids], dtype=float) * self._sign
        return ranks_and_crowding(F)

    def _close_generation(self) -> None:
        pool = self._members
        rank, crowding = self._rank(pool)
        order = sorted(range(len(pool)), key=lambda i: (rank[i], -crowding[i], pool[i]))
        survivors = sorted(pool[i] for i in order[: self.population_size // 2])
        kept = set(survivors)
        for i, ident in enumerate(pool):
            self._standing[ident] = (int(rank[i]), float(crowding[i]))
        for row in self._rows.values():
            if row["generation"] == self._generation:
                row["rank"], row["crowding"] = self._standing[row["individual"]]
                row["survived"] = row["individual"] in kept
        if self._generation + 1 >= self.generations:
            self._finished = True
            return
        children = self._breed(survivors)
        if children is None:
            self._finished = True
            log.warning("NSGA2 stopped after generation %d: %s", self._generation, self.stop_reason)
            return
        self._generation += 1
        created = [self._create(genotype, parents) for genotype, parents in children]
        self._members = survivors + created
        self._queue = (list(survivors) if self.reevaluate_parents else []) + created

    def _breed(self, survivors: list[int]) -> list[tuple[Genotype, tuple[int, ...]]] | None:
        """Children to fill the population; ``None`` (and ``stop_reason``) if none can be."""
        need = self.population_size - len(survivors)
        seen = set(self._genotypes.values())
        size = self.space.size()
        if len(seen) + need > size:
            self.stop_reason = (
                f"space {self.space.name!r} exhausted: {len(seen)} of its {size} genotypes "
                f"already created, {need} new ones needed"
            )
            return None
        children = []
        for _ in range(need):
            for _ in range(MAX_ATTEMPTS):
                genotype, parents = self._child(survivors)
                if genotype not in seen:
                    break
            else:
                self.stop_reason = (
                    f"space {self.space.name!r} exhausted around the survivors: "
                    f"{MAX_ATTEMPTS} children in a row were duplicates ({len(seen)} of "
                    f"{size} genotypes created)"
                )
                return None
            seen.add(genotype)
            children.append((genotype, parents))
        return children

    def _child(self, survivors: list[int]) -> tuple[Genotype, tuple[int, ...]]:
        if self.offspring == "uniform":
            return self.space.sample(self._rng), ()
        first = self._tournament(survivors)
        genotype, parents, crossed = self._genotypes[first], (first,), False
        if self._rng.random() < self.p_crossover:
            second = self._tournament([s for s in survivors if s != first] or survivors)
            pair = self.space.crossover(genotype, self._genotypes[second], self._rng)
            if pair is not None:
                genotype, parents, crossed = pair[int(self._rng.integers(2))], (first, second), True
        if not crossed or self._rng.random() < self.p_mutation:
            genotype = self.space.mutate(genotype, self._rng)
        return genotype, parents

    def _tournament(self, candidates: list[int]) -> int:
        if len(candidates) == 1:
            return candidates[0]
        a, b = (candidates[i] for i in self._rng.choice(len(candidates), 2, replace=False))
        rank_a, crowding_a = self._standing[a]
        rank_b, crowding_b = self._standing[b]
        return b if (rank_b, -crowding_b) < (rank_a, -crowding_a) else a

    def _create(self, genotype: Genotype, parents: tuple[int, ...]) -> int:
        ident = len(self._genotypes)
        self._genotypes[ident] = genotype
        self._born[ident] = self._generation
        self._parents[ident] = parents
        return ident

    # ----- views ----------------------------------------------------------------------------
    def history(self) -> list[dict[str, Any]]:
        """One row per told evaluation, by generation then individual.

        Columns: individual, genotype, generation (when evaluated), born, parents, one column
        per metric (NaN if failed), status ("ok" / "failed"), and rank, crowding, survived as
        decided by the selection that closed that generation (absent until it closed).
        """
        rows = sorted(self._rows.values(), key=lambda r: (r["generation"], r["individual"]))
        return [copy.deepcopy(row) for row in rows]

    def population(self) -> list[dict[str, Any]]:
        """The current generation's members with their latest objectives and standing.

        Status is "pending" for a member whose evaluation in this generation is not told yet;
        rank and crowding come from the last selection the member took part in (None before).
        """
        pending = set(self._queue) | set(self._out.values())
        out = []
        for ident in self._members:
            values = None if ident in pending else self._objectives[ident]
            status = "pending" if ident in pending else "failed" if values is None else "ok"
            rank, crowding = self._standing.get(ident, (None, None))
            out.append(
                {
                    "individual": ident,
                    "genotype": str(self._genotypes[ident]),
                    "born": self._born[ident],
                    "parents": list(self._parents[ident]),
                    **self._columns(values),
                    "status": status,
                    "rank": rank,
                    "crowding": crowding,
                }
            )
        return out

    def front(self) -> list[dict[str, Any]]:
        """The non-dominated members of the current population among those evaluated ok."""
        done = [row for row in self.population() if row["status"] == "ok"]
        if not done:
            return []
        F = np.array([[row[m] for m in self.metrics] for row in done]) * self._sign
        return [done[i] for i in non_dominated_sort(F)[0]]

    # ----- state ----------------------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        return {
            "space": self.space.name,
            "population_size": self.population_size,
            "generations": self.generations,
            "metrics": list(self.metrics),
            "modes": list(self.modes),
            "seed": self.seed,
            "p_crossover": self.p_crossover,
            "p_mutation": self.p_mutation,
            "reevaluate_parents": self.reevaluate_parents,
            "offspring": self.offspring,
            "config_key": self.config_key,
        }

    def state_dict(self) -> dict[str, Any]:
        """The whole search as plain data (ints, floats, strings, lists, dicts)."""
        return copy.deepcopy(
            {
                "settings": self._settings(),
                "rng": self._rng.bit_generator.state,
                "individuals": [
                    [i, g.to_list(), self._born[i], list(self._parents[i])]
                    for i, g in self._genotypes.items()
                ],
                "generation": self._generation,
                "members": self._members,
                "queue": self._queue,
                "out": self._out,
                "objectives": [
                    [i, None if v is None else list(v)] for i, v in self._objectives.items()
                ],
                "rows": self._rows,
                "standing": [[i, r, c] for i, (r, c) in self._standing.items()],
                "finished": self._finished,
                "stop_reason": self.stop_reason,
            }
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict()`` of a search with the same settings."""
        saved = {"offspring": "bred", **state["settings"]}  # a state from before the setting
        mismatch = {k: (v, saved[k]) for k, v in self._settings().items() if v != saved[k]}
        if mismatch:
            raise ValueError(f"NSGA2 state is for other settings (here, saved): {mismatch}")
        state = copy.deepcopy(state)
        self._rng.bit_generator.state = state["rng"]
        self._genotypes, self._born, self._parents = {}, {}, {}
        for ident, cells, born, parents in state["individuals"]:
            self._genotypes[ident] = Genotype(self.space.name, tuple(map(tuple, cells)))
            self._born[ident] = born
            self._parents[ident] = tuple(parents)
        self._generation = state["generation"]
        self._members = state["members"]
        self._queue = state["queue"]
        self._out = state["out"]
        self._objectives = {i: None if v is None else tuple(v) for i, v in state["objectives"]}
        self._rows = state["rows"]
        self._standing = {i: (r, c) for i, r, c in state["standing"]}
        self._finished = state["finished"]
        self.stop_reason = state["stop_reason"]

    def to_bytes(self) -> bytes:
        """The state as a JSON document (:mod:`raygan.state`; it holds no tensors)."""
        text, tensors = dumps(self.state_dict())
        assert not tensors, "an NSGA2 state is numbers and strings only"
        return text.encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> NSGA2:
        """Rebuild a search from ``to_bytes()``; its space is looked up by name."""
        saved = loads(data.decode())
        search = cls(**saved["settings"])
        search.load_state_dict(saved)
        return search
