"""A boundary's trials in flight, kept so that a restarted driver finishes them.

The driver asks the search for what it proposes before it needs results (:func:`propose`),
saves that batch in its state, and runs it (:func:`run_batch`) as a Tune experiment; each
outcome and each checkpoint a trial reports is written into the batch as it happens. A driver
that restarts reruns what has no outcome yet, and what errored, in a new Tune experiment
(:func:`attempt_name`), each trial continuing from its last checkpoint: no Tune experiment is
ever restored (``Tuner.restore`` unpickles what it finds).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from raygan import faults
from raygan.searchers.asktell import AskTell

Outcome = dict[str, Any]
"""A finished trial as plain data (:data:`raygan.trainable.Outcome`)."""

Batch = dict[str, Any]
"""The batch in flight (plain data, saved with the driver's state): ``batch`` (each proposal's
``key``, ``config`` and ``trial`` config), ``outcomes`` and ``checkpoints`` by key, and
``attempt`` (how many Tune experiments it has started)."""


def propose(search: AskTell, to_trial: Callable[[dict[str, Any]], dict]) -> list[dict]:
    """What the search proposes before it needs results: each proposal's key, its config and
    its trial's config."""
    batch = []
    while (proposal := search.ask()) is not None:
        batch.append(
            {"key": proposal.key, "config": proposal.config, "trial": to_trial(proposal.config)}
        )
    if not batch:
        raise RuntimeError("the search proposed nothing before its boundary")
    return batch


def attempt_name(name: str, attempt: int) -> str:
    """The Tune experiment of a boundary's ``attempt``-th run of trials (0: the first)."""
    return name if attempt == 0 else f"{name}-r{attempt}"


def run_batch(
    pending: Batch,
    name: str,
    *,
    rerun_errored: bool,
    save: Callable[[], None],
    fit_trials: Callable[..., list[Outcome]],
) -> list[Outcome]:
    """The outcomes of ``pending``'s batch, in proposal order: those saved already, then the
    rest from a new Tune experiment (``fit_trials(name, configs, on_outcome=,
    on_checkpoint=)``); with ``rerun_errored`` (a restarted driver) the errored ones too.
    ``save`` persists ``pending`` (with the rest of the driver's state) after every change."""
    done, checkpoints = pending["outcomes"], pending["checkpoints"]
    if rerun_errored:
        for key in [k for k, o in done.items() if o["error"] is not None]:
            del done[key]
    todo = [item for item in pending["batch"] if item["key"] not in done]
    if todo:
        attempt = pending["attempt"]
        pending["attempt"] += 1
        save()

        def finished(outcome: Outcome) -> None:
            done[todo[outcome["index"]]["key"]] = outcome
            save()
            faults.point("trial-done")

        def checkpointed(index: int, uri: str) -> None:
            faults.point("mid-checkpoint")
            checkpoints[todo[index]["key"]] = uri
            save()

        configs = [
            {**item["trial"], "proposal": item["key"], "resume_from": checkpoints.get(item["key"])}
            for item in todo
        ]
        fit_trials(
            attempt_name(name, attempt), configs, on_outcome=finished, on_checkpoint=checkpointed
        )
    return [done[item["key"]] for item in pending["batch"]]
