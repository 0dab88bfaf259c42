"""Where a run executes: the local Ray instance or an existing cluster, and each trial's share.

On one machine ``ray.init()`` starts a local cluster (the embedded default). ``address="auto"``
or ``ray://...`` joins a running cluster (after ``ray up cluster.yaml``). Trials ask for
``cpus`` and ``gpus`` each; fractional GPUs pack several small GANs onto one large GPU.
"""

from __future__ import annotations

import os

import ray


def connect(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Start or join Ray once per process; quiet by default (no dashboard, no usage stats)."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # raygan prints its own progress; Tune's per-experiment banners and checkpoint-frequency
    # advice would drown it (trials checkpoint often on purpose, to be resumable).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)


def trial_resources(cpus: float, gpus: float) -> dict[str, float]:
    """Resources for one trial; validated by the CLI before Ray starts."""
    return {"cpu": cpus, "gpu": gpus}


def storage_uri(path: str) -> str:
    """Tune wants an absolute local path or a filesystem URI."""
    return path if "://" in path else os.path.abspath(path)
