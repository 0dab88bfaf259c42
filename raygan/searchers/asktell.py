"""The ask/tell surface every raygan search algorithm has, with no Ray in sight.

An algorithm (NSGA-II population, RL controller) satisfies :class:`AskTell`: ``ask`` proposes
one configuration (or ``None`` while it waits for results), ``tell`` takes the result of a
proposal (``None`` for a failed trial), ``finished`` says the search is over, and
``state_dict``/``load_state_dict`` carry its whole state as plain data (what
:mod:`raygan.state` stores: no arbitrary objects). The search driver
(:mod:`raygan.strategies.common`) asks, saves the proposals, runs them as Tune trials and tells.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol


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
