"""Running a search as a separate process that can be killed, with a Ray of its own."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile


def kill_processes_naming(text: str) -> None:
    """SIGKILL, by pid, every process whose command line names ``text`` (here a private
    RAY_TMPDIR: the Ray daemons of a killed search, and nothing else)."""
    if not os.path.isdir("/proc"):
        return
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                named = text.encode() in f.read()
        except OSError:  # gone already, or not ours to read
            continue
        if named and int(pid) != os.getpid():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(pid), signal.SIGKILL)


def run_cli(args: list[str], log: str, env: dict[str, str], timeout: float = 600) -> int:
    """``raygan ARGS`` in a process of its own with a private Ray (private RAY_TMPDIR, short:
    socket paths are limited); its exit code (-9 when it was killed). Whatever it leaves of
    Ray is killed afterwards, so the session's Ray and the rest of the machine are untouched."""
    ray_tmp = tempfile.mkdtemp(prefix="rgk", dir="/tmp")
    cmd = [sys.executable, "-m", "raygan.cli", *args]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd,
            start_new_session=True,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env, "RAY_TMPDIR": ray_tmp},
        )
        try:
            return proc.wait(timeout=timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kill_processes_naming(ray_tmp)


def outcome(result) -> dict:
    """A ``ray.tune.Result`` of a test's own Tuner as the driver's outcome (plain data), so the
    test builds its rows the way the driver does (``raygan.trainable.row_fields``)."""
    from raygan import storage

    error = None if result.error is None else str(result.error).strip().splitlines()[-1]
    return {
        "index": 0,
        "trial_id": result.metrics.get("trial_id") or os.path.basename(result.path),
        "config": result.config,
        "metrics": dict(result.metrics or {}),
        "checkpoint": storage.checkpoint_uri(result.checkpoint) if result.checkpoint else None,
        "error": error,
    }
