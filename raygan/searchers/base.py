"""The thin layer between a plain ask/tell search algorithm and Ray Tune.

:class:`AskTellSearcher` adapts any :class:`~raygan.searchers.asktell.AskTell` algorithm to
``ray.tune.search.Searcher``: ``suggest`` asks, ``on_trial_complete`` tells, and
``save``/``restore`` persist the algorithm's state with the mapping of live Tune trials to
proposals, so ``Tuner.restore`` resumes a search exactly where it stopped: finished trials stay
told, unfinished ones are re-run by Tune and told once. The state is plain data
(:mod:`raygan.state`: JSON, with any tensors in a weights-only torch file beside it), never a
pickle.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from typing import Any

from ray.tune.search import Searcher

import raygan.state
from raygan.searchers.asktell import AskTell, Suggestion, objectives_of

__all__ = ["KEY", "AskTell", "AskTellSearcher", "BoundaryView", "Suggestion", "objectives_of"]


class AskTellSearcher(Searcher):
    """A ``Searcher`` driving any :class:`AskTell` algorithm.

    Failed trials (errors, a missing metric, NaN/inf) are told as ``None``; each algorithm
    documents what that means for it (dominated for NSGA-II, a penalty for the controller).
    """

    CKPT_FILE_TMPL = "searcher-state-{}.json"

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
        """The state as JSON at ``checkpoint_path``, its tensors (if any) beside it."""
        raygan.state.save(checkpoint_path, self.state())

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        # Tune's default saves under a fresh temporary name and renames the file, which would
        # strand the tensors file beside each temporary name; raygan.state writes atomically
        # already, so save straight to the final name (its previous tensors file is replaced).
        self.save(os.path.join(checkpoint_dir, self.CKPT_FILE_TMPL.format(session_str)))

    def restore(self, checkpoint_path: str) -> None:
        saved = raygan.state.load(checkpoint_path)
        self.algorithm.load_state_dict(saved["algorithm"])
        self._live = dict(saved["live"])
        self.base_config = saved["base_config"]


class BoundaryView:
    """A copy of a search that hands Tune the proposals up to the driver's next boundary (an
    EAGAN generation, an AutoGAN iteration), each config made by ``to_trial`` and tagged with
    its proposal's key.

    The driver keeps the authoritative search and tells it the boundary's results in proposal
    order, so what it saves never depends on which trial finished first; this copy lives
    inside Tune's searcher (checkpointed with it), so an interrupted experiment resumes.
    ``over(search)`` says the boundary is reached (module-level functions and partials only:
    Tune pickles the searcher with its experiment).
    """

    def __init__(
        self,
        search: AskTell,
        over: Callable[[AskTell], bool],
        to_trial: Callable[[dict[str, Any]], dict[str, Any]],
    ):
        self.search = copy.deepcopy(search)
        self.over, self.to_trial = over, to_trial
        self.metrics, self.modes = search.metrics, search.modes

    @property
    def finished(self) -> bool:
        return self.over(self.search)

    def ask(self) -> Suggestion | None:
        s = None if self.finished else self.search.ask()
        return None if s is None else Suggestion(s.key, {**self.to_trial(s.config), KEY: s.key})

    def tell(self, key: str, result: Mapping[str, Any] | None) -> None:
        self.search.tell(key, result)

    def state_dict(self) -> dict[str, Any]:
        return {"search": self.search.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.search.load_state_dict(state["search"])


KEY = "proposal"
"""The trial-config key of a proposal's key (how the driver finds each proposal's trial)."""
