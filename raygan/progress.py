"""What a running batch of trials shows in the terminal: trials done / running / pending, the
best objectives so far, elapsed time, device-hours spent and an estimate of the time left.

On a terminal one line is refreshed in place (at most once a second); otherwise (a log file,
``ray job logs``) one line is printed per finished trial, so a log reads as a history.
:class:`Progress` is the Tune callback the driver's experiments carry; :func:`line` is the
text, from plain numbers.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from ray import tune

BEST = {"is": max, "fid": min, "reward": max}
"""The objectives shown, each with what "best" means for it."""
NAMES = {"is": "IS", "fid": "FID"}


@dataclass
class Tally:
    """A batch's trials as counted: plain numbers, so the line is tested without Tune."""

    total: int
    done: int = 0
    running: int = 0
    failed: int = 0
    device_s: float = 0.0  # finished trials' cost, plus the running ones' so far
    best: dict[str, float] = field(default_factory=dict)

    def take(self, result: dict[str, Any]) -> None:
        """A finished trial's last result: its cost and, if it scored, its objectives."""
        self.device_s += float(result.get("device_s") or 0.0)
        if result.get("status") not in ("ok", "running"):  # running: stopped at a rung
            self.failed += 1
            return
        for key, better in BEST.items():
            value = result.get(key)
            if isinstance(value, int | float) and math.isfinite(value):
                self.best[key] = better(value, self.best.get(key, value))


def duration(seconds: float) -> str:
    """``1h02m``, ``4m05s`` or ``12s``."""
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def line(label: str, tally: Tally, elapsed_s: float, running_device_s: float = 0.0) -> str:
    """One line of progress; the time left assumes the trials still to finish take as long
    as those finished did (none said before the first finishes)."""
    pending = tally.total - tally.done - tally.running
    parts = [
        f"[{label}] {tally.done}/{tally.total} done, {tally.running} running, {pending} pending"
    ]
    if tally.failed:
        parts[0] += f" ({tally.failed} failed)"
    if tally.best:
        parts.append(
            "best " + ", ".join(f"{NAMES.get(k, k)} {v:.4g}" for k, v in tally.best.items())
        )
    spent_h = (tally.device_s + running_device_s) / 3600
    parts.append(f"{duration(elapsed_s)} elapsed, {spent_h:.3g} device-h")
    if 0 < tally.done < tally.total:
        parts.append(f"~{duration(elapsed_s * (tally.total - tally.done) / tally.done)} left")
    return " | ".join(parts)


class Progress(tune.Callback):
    """Tune's hooks into :func:`line`: ``share`` is the device share each trial holds (what a
    running trial costs per second). The line goes to whatever ``sys.stdout`` is when it is
    written (Tune pickles its callbacks with the experiment: a stream would not pickle)."""

    REFRESH_S = 1.0

    def __init__(self, label: str, total: int, share: float):
        self.label, self.share = label, share
        self.tally = Tally(total)
        self.began = self.shown = time.monotonic()
        self.started: dict[str, float] = {}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.started[trial.trial_id] = time.monotonic()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.last_result.get("done"):  # not one Tune stopped on Ctrl-C
            self.finished(trial, trial.last_result)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.finished(trial, {**trial.last_result, "status": "failed"})

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        self.tally.running = sum(t.status == "RUNNING" for t in trials)
        if tty() and now - self.shown >= self.REFRESH_S:
            self.show("\r", end="")
            self.shown = now

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if tty():
            self.show("\r", end="\n")

    def finished(self, trial: Any, result: dict[str, Any]) -> None:
        self.started.pop(trial.trial_id, None)
        self.tally.done += 1
        self.tally.running = max(0, self.tally.running - 1)
        self.tally.take(result)
        if not tty():
            self.show("", end="\n")

    def show(self, start: str, end: str) -> None:
        now = time.monotonic()
        running = sum(now - t for t in self.started.values()) * self.share
        text = line(self.label, self.tally, now - self.began, running)
        sys.stdout.write(f"{start}{text}\x1b[K{end}" if tty() else f"{text}{end}")
        sys.stdout.flush()


def tty() -> bool:
    """Whether the line can be refreshed in place."""
    return sys.stdout.isatty()
