"""The thin layer between a plain ask/tell search algorithm and Ray Tune.

An algorithm (NSGA-II population, RL controller) knows nothing about Ray. It satisfies
:class:`AskTell`: ``ask`` proposes one configuration (or ``None`` while it waits for results),
``tell`` takes the result of a proposal (``None`` for a failed trial), ``finished`` says the
search is over, and ``state_dict``/``load_state_dict`` carry its whole state as plain,
picklable data.

:class:`AskTellSearcher` adapts any such algorithm to ``ray.tune.search.Searcher``: ``suggest``
asks, ``on_trial_complete`` tells, and ``save``/``restore`` persist the algorithm's state with
the mapping of live Tune trials to proposals, so ``Tuner.restore`` resumes a search exactly
where it stopped: finished trials stay told, unfinished ones are re-run by Tune and told once.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol

from ray.tune.search import Searcher


class Suggestion(NamedTuple):
    """One proposal: a key the algorithm recognises in ``tell``, and the trial's config."""

    key: str
    config: dict[str, Any]


class AskTell(Protocol):
    metrics: tuple[str, ...]
    modes: tuple[str, ...]

    def ask(self) -> Suggestion | None: ...

    def tell(self, key: str, result: Mapping[str, float] | None) -> None: ...

    @property
    def finished(self) -> bool: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def objectives_of(result: Mapping[str, Any] | None, metrics: tuple[str, ...]) -> dict | None:
    """The named metrics of a trial result, or ``None`` if it failed or any value is not finite."""
    if result is None:
        return None
    values = {}
    for m in metrics:
        v = result.get(m)
        try:
            v = float(v)
        except (TypeError, ValueError):
            return None
        if not math.isfinite(v):
            return None
        values[m] = v
    return values


class AskTellSearcher(Searcher):
    """A ``Searcher`` driving any :class:`AskTell` algorithm.

    Failed trials (errors, a missing metric, NaN/inf) are told as ``None``; each algorithm
    documents what that means for it (dominated for NSGA-II, a penalty for the controller).
    """

    def __init__(self, algorithm: AskTell, *, config: Mapping[str, Any] | None = None):
        super().__init__(metric=list(algorithm.metrics), mode=list(algorithm.modes))
        self.algorithm = algorithm
        self.base_config = dict(config or {})
        self._live: dict[str, str] = {}  # Tune trial id -> proposal key

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        # Metrics and modes belong to the algorithm; the param space is merged into configs.
        if config:
            self.base_config = {**dict(config), **self.base_config}
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.algorithm.finished:
            return Searcher.FINISHED
        suggestion = self.algorithm.ask()
        if suggestion is None:
            return Searcher.FINISHED if self.algorithm.finished else None
        self._live[trial_id] = suggestion.key
        return {**self.base_config, **suggestion.config}

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        key = self._live.pop(trial_id, None)
        if key is None:
            return
        self.algorithm.tell(key, None if error else objectives_of(result, self.algorithm.metrics))

    def state(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm.state_dict(),
            "live": dict(self._live),
            "base_config": self.base_config,
        }

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.algorithm.load_state_dict(state["algorithm"])
        self._live = dict(state["live"])
        self.base_config = state["base_config"]
