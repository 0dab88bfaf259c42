"""Any Ray Tune searcher on raygan's spaces, as raygan's ask/tell (:class:`AskTell`).

A Tune ``Searcher`` proposes on the space's Tune form (:func:`tune_space`: one categorical
per gene); what it proposes is repaired into a valid genotype
(:meth:`raygan.spaces.Space.from_tune`) and told the trial's result (``None``: an error). Its
state is plain data, as every raygan search's: the log of what it was asked and told, in order.
:meth:`TuneSearch.load_state_dict` builds the searcher afresh from its seed and replays that
log, checking that every proposal comes out as it did; so nothing a searcher pickles is ever
read back, and a searcher that cannot replay itself is refused instead of silently drifting.

The searchers (:data:`SEARCHERS`): Optuna's NSGA-II and TPE samplers through Tune's
``OptunaSearch`` (both multi-objective; the ``optuna`` extra), and Tune's own random
sampling of each domain (what its ``BasicVariantGenerator`` does).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from raygan import spaces
from raygan.searchers.asktell import Suggestion, objectives_of


def tune_space(space: spaces.Space, prefix: str = "") -> dict[str, Any]:
    """``space`` as a Tune ``param_space``: one ``tune.choice`` of its allowed values per gene
    (keys :meth:`raygan.spaces.Space.gene_keys`). Not every combination is valid:
    :meth:`raygan.spaces.Space.from_tune` repairs what a searcher proposes."""
    from ray import tune

    return {
        key: tune.choice(list(space.cells[ci][p].options)) for key, ci, p in space.gene_keys(prefix)
    }


class RandomSearcher:
    """Tune's random search as a ``Searcher``: every domain sampled, seeded."""

    def __init__(self, space: dict[str, Any], seed: int):
        self.space, self.rng = space, np.random.RandomState(seed)

    def suggest(self, trial_id: str) -> dict[str, Any]:
        return {k: domain.sample(random_state=self.rng) for k, domain in self.space.items()}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        """Random search learns nothing."""


def optuna(sampler: str) -> Callable[..., Any]:
    """A factory of Tune's ``OptunaSearch`` with Optuna's sampler ``sampler``."""

    def make(space: dict[str, Any], metrics: tuple, modes: tuple, seed: int) -> Any:
        try:
            import optuna as ot
        except ImportError:
            raise ImportError("Optuna searchers need: pip install 'raygan[optuna]'") from None
        from ray.tune.search.optuna import OptunaSearch

        ot.logging.set_verbosity(ot.logging.WARNING)
        samplers = {"nsga2": ot.samplers.NSGAIISampler, "tpe": ot.samplers.TPESampler}
        return OptunaSearch(
            OptunaSearch.convert_search_space(space),  # Tune's domains as Optuna's
            metric=list(metrics),
            mode=list(modes),
            sampler=samplers[sampler](seed=seed),
        )

    return make


SEARCHERS: dict[str, Callable[..., Any]] = {
    "optuna-nsga2": optuna("nsga2"),
    "optuna-tpe": optuna("tpe"),
    "random": lambda space, metrics, modes, seed: RandomSearcher(space, seed),
}
"""``--searcher`` name -> ``(tune_space, metrics, modes, seed) -> Searcher``."""


class TuneSearch:
    """``trials`` proposals of a Tune searcher over one or more spaces (config prefix ->
    space, e.g. ``{"g": nas_cell_g}``), ``batch`` at a time: a batch is told before the next
    is asked (the driver's boundary), so :attr:`generation` counts batches told."""

    def __init__(
        self,
        spaces_by_prefix: Mapping[str, spaces.Space],
        *,
        searcher: str,
        trials: int,
        batch: int,
        metrics: tuple[str, ...],
        modes: tuple[str, ...],
        seed: int = 0,
    ):
        self.spaces = dict(spaces_by_prefix)
        self.name, self.trials, self.batch, self.seed = searcher, trials, batch, seed
        self.metrics, self.modes = tuple(metrics), tuple(modes)
        self._start()

    def _start(self) -> None:
        """A searcher that was asked and told nothing yet."""
        domains: dict[str, Any] = {}
        for prefix, space in self.spaces.items():
            domains.update(tune_space(space, f"{prefix}_"))
        self._searcher = SEARCHERS[self.name](domains, self.metrics, self.modes, self.seed)
        self._log: list[list[Any]] = []  # ["ask", key, proposal] / ["tell", key, result]
        self._asked = self._told = 0

    @property
    def generation(self) -> int:
        return self._told // self.batch

    @property
    def finished(self) -> bool:
        return self._told >= self.trials

    def ask(self) -> Suggestion | None:
        """The next proposal of this batch; ``None`` once the batch is out (or all trials)."""
        if self._asked >= min(self.trials, (self.generation + 1) * self.batch):
            return None
        key = f"t{self._asked}"
        proposal = {k: _plain(v) for k, v in self._searcher.suggest(key).items()}
        self._log.append(["ask", key, proposal])
        self._asked += 1
        return Suggestion(key, self.config(key, proposal))

    def config(self, key: str, proposal: dict[str, Any]) -> dict[str, Any]:
        """A proposal's genotypes (repaired), with where it stands."""
        genotypes = {p: str(s.from_tune(proposal, f"{p}_")) for p, s in self.spaces.items()}
        index = int(key[1:])
        return {**genotypes, "generation": index // self.batch, "individual": index}

    def tell(self, key: str, result: Mapping[str, Any] | None) -> None:
        values = objectives_of(result, self.metrics)
        self._log.append(["tell", key, values])
        self._searcher.on_trial_complete(key, values, error=values is None)
        self._told += 1

    def settings(self) -> dict[str, Any]:
        """What the searcher is, as every row records it."""
        return {
            "searcher": self.name,
            "spaces": {p: s.name for p, s in self.spaces.items()},
            "trials": self.trials,
            "batch": self.batch,
            "metrics": list(self.metrics),
            "modes": list(self.modes),
            "seed": self.seed,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"settings": self.settings(), "log": copy.deepcopy(self._log)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replay ``state``'s log on this search's searcher, which must propose the same
        again: only the part past this search's own log when that is where ``state`` began
        (a search loaded with its own state replays nothing), else all of it, afresh."""
        if state["settings"] != self.settings():
            raise ValueError(f"search state is for {state['settings']}, not {self.settings()}")
        if state["log"][: len(self._log)] != self._log:
            self._start()
        for event, key, value in state["log"][len(self._log) :]:
            if event == "tell":
                self.tell(key, value)
                continue
            suggestion = self.ask()
            if suggestion is None or self._log[-1][2] != value:
                raise ValueError(
                    f"searcher {self.name} does not replay its proposals (at {key}): "
                    "it cannot resume a search"
                )


def _plain(value: Any) -> Any:
    """numpy scalars as Python numbers (the log is JSON)."""
    return value.item() if hasattr(value, "item") else value
