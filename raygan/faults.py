"""Deterministic fault points, so tests can kill a driver at the exact moment that matters.

``RAYGAN_FAULT=<point>[:<n>]`` kills this process (SIGKILL: no cleanup, as a lost node or an
OOM kill) the ``n``-th time (default 1) it reaches ``point``. The driver's points:

- ``trial-done``: a trial's outcome was recorded in the driver's state;
- ``mid-checkpoint``: a trial reported a checkpoint that the driver's state does not name yet;
- ``rows-appended``: a boundary's rows reached the table, its state is not saved yet;
- ``state-saved``: a boundary's state was saved.

``RAYGAN_FAULT_TRIAL=<proposal key>`` makes the trial of that proposal raise, every attempt,
while the variable is set (a trial that errors, then succeeds once it is rerun without it);
``*`` makes every trial raise (a boundary where everything fails).
Neither variable is set outside tests; reading them costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

_hits: dict[str, int] = {}


def point(name: str) -> None:
    """Kill this process if ``RAYGAN_FAULT`` names ``name`` and this is its ``n``-th hit."""
    wanted = os.environ.get("RAYGAN_FAULT")
    if not wanted:
        return
    target, _, count = wanted.partition(":")
    if target != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(count or 1):
        print(f"[raygan] fault injected: {name}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)


def trial(key: str | None) -> None:
    """Raise in the trial of proposal ``key`` if ``RAYGAN_FAULT_TRIAL`` names it."""
    if key is not None and os.environ.get("RAYGAN_FAULT_TRIAL") in (key, "*"):
        raise RuntimeError(f"fault injected in the trial of {key}")
