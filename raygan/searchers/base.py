"""The thin layer between a plain ask/tell search algorithm and Ray Tune.

:class:`AskTellSearcher` adapts any :class:`~raygan.searchers.asktell.AskTell` algorithm to
``ray.tune.search.Searcher``: ``suggest`` asks, ``on_trial_complete`` tells, and
``save``/``restore`` persist the algorithm's state with the mapping of live Tune trials to
proposals, so ``Tuner.restore`` resumes a search exactly where it stopped: finished trials stay
told, unfinished ones are re-run by Tune and told once.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import Any

from ray.tune.search import Searcher

from raygan.searchers.asktell import AskTell, Suggestion, objectives_of

__all__ = ["AskTell", "AskTellSearcher", "Suggestion", "objectives_of"]


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
