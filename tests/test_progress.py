"""The progress line of a running batch: counts, best objectives, cost and time left."""

from __future__ import annotations

from raygan.progress import Tally, duration, line


def test_the_line_counts_trials_keeps_the_best_and_extrapolates_the_time_left():
    tally = Tally(total=8, running=2)
    tally.take({"status": "ok", "is": 2.5, "fid": 80.0, "device_s": 1800.0})
    tally.take({"status": "running", "is": 3.0, "fid": 95.0, "device_s": 900.0})  # stopped
    tally.take({"status": "diverged", "device_s": 900.0})
    tally.done = 3
    text = line("stage1-gen0", tally, elapsed_s=600.0, running_device_s=1800.0)
    assert text == (
        "[stage1-gen0] 3/8 done, 2 running, 3 pending (1 failed) | best IS 3, FID 80 | "
        "10m00s elapsed, 1.5 device-h | ~16m40s left"
    )


def test_nothing_finished_says_no_time_left_and_no_best():
    text = line("batch0", Tally(total=4, running=2), elapsed_s=5.0)
    assert text == "[batch0] 0/4 done, 2 running, 2 pending | 5s elapsed, 0 device-h"


def test_durations_read_as_a_person_writes_them():
    assert [duration(s) for s in (0.4, 59.6, 61, 3600, 7385)] == [
        "0s", "1m00s", "1m01s", "1h00m", "2h03m",
    ]  # fmt: skip


def test_on_a_terminal_one_line_is_refreshed_in_place(monkeypatch):
    """Under a real pseudo-terminal the callback rewrites one line (carriage return, clear
    to the end) and ends it with a newline when the experiment ends."""
    import io
    import pty
    import sys
    from types import SimpleNamespace

    from raygan.progress import Progress

    leader, follower = pty.openpty()
    terminal = io.TextIOWrapper(io.FileIO(follower, "w"), write_through=True)
    monkeypatch.setattr(sys, "stdout", terminal)
    progress = Progress("batch0", total=2, share=1.0)
    progress.REFRESH_S = 0.0
    trials = [SimpleNamespace(trial_id=f"t{i}", status="RUNNING", last_result={}) for i in (0, 1)]
    for trial in trials:
        progress.on_trial_start(0, trials, trial)
    progress.on_step_end(1, trials)
    trials[0].status, trials[0].last_result = "TERMINATED", {"done": True, "status": "ok"}
    progress.on_trial_complete(2, trials, trials[0])
    progress.on_step_end(2, trials)
    progress.on_experiment_end(trials)
    shown = read_until_quiet(leader)
    assert shown.count("\r[batch0]") == 3 and shown.count("\n") == 1
    assert "0/2 done, 2 running" in shown and "1/2 done, 1 running, 0 pending" in shown


def read_until_quiet(fd: int, quiet_s: float = 1.0) -> str:
    """All a pseudo-terminal's leader has to give: the kernel hands what the follower wrote
    to the leader asynchronously, so a single read can return only its first part."""
    import os
    import select

    chunks = []
    while select.select([fd], [], [], quiet_s)[0]:
        chunks.append(os.read(fd, 4096))
    return b"".join(chunks).decode()
