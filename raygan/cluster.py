"""Where a run executes: the local Ray instance or an existing cluster, and each trial's share.

On one machine ``ray.init()`` starts a local cluster (the embedded default). ``address="auto"``
or ``ray://...`` joins a running cluster (after ``ray up cluster.yaml``). Trials ask for
``cpus`` and ``gpus`` each; fractional GPUs pack several small GANs onto one large GPU.
:func:`check_resources` refuses, before Ray starts, a share this machine cannot give (Ray
would otherwise wait for it forever).

On a cluster every node must reach the experiment's storage (``--out s3://bucket/prefix``):
trials write their checkpoints there and the driver writes the trial table there.
:func:`check_storage` proves that before anything starts. :func:`local_cluster` runs several
Ray nodes on this one machine, for tests and benchmarks of multi-node behaviour.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import Any

import ray

from raygan.errors import UsageError, problem

STORAGE_TIMEOUT_S = 60.0


def _quiet_ray() -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # raygan prints its own progress; Tune's per-experiment banners and checkpoint-frequency
    # advice would drown it (trials checkpoint often on purpose, to be resumable).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # A shared round's controller polls its workers every 0.2 s, not Ray's 2 s: a finished
    # round otherwise idles until the next poll. The local Ray inherits it; a cluster's nodes
    # set it themselves (cluster.yaml).
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")


def connect(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Start or join Ray once per process; quiet by default (no dashboard, no usage stats)."""
    if ray.is_initialized():
        return
    _quiet_ray()
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)


def trial_resources(cpus: float, gpus: float) -> dict[str, float]:
    """Resources for one trial; validated by the CLI before Ray starts."""
    return {"cpu": cpus, "gpu": gpus}


RESOURCE_STEP = 1e-4
"""Ray counts CPUs and GPUs in steps of 0.0001: a smaller share is refused (or rounds to 0)."""


def machine_cpus() -> int:
    """The CPUs a local Ray instance gets: Ray's own count (it honours a container's CPU
    quota, which ``os.cpu_count`` does not), else ``os.cpu_count``."""
    try:
        from ray._private.utils import get_num_cpus
    except ImportError:  # pragma: no cover - a Ray without it
        return os.cpu_count() or 1
    return int(get_num_cpus())


def check_resources(args: argparse.Namespace) -> None:
    """The resource options (``--cpus``, ``--gpus``; a search's ``--workers`` too), and on this
    machine (no ``--address``) whether it has them: Ray would otherwise wait forever for a GPU
    or a CPU that is not there. ``raygan train`` (no workers) runs one trial."""
    workers = getattr(args, "workers", None)
    for flag, value, above_zero in (("--cpus", args.cpus, True), ("--gpus", args.gpus, False)):
        wrong = problem(value, float, None if above_zero else 0, above_zero)
        if wrong is not None:
            raise UsageError(f"{flag} {wrong}")
        if 0 < value < RESOURCE_STEP:
            raise UsageError(
                f"{flag} must be 0 or at least {RESOURCE_STEP:g} (Ray counts resources in steps "
                f"of {RESOURCE_STEP:g}), got {value:g}"
            )
    if args.gpus > 1 and args.gpus != int(args.gpus):
        raise UsageError(
            f"--gpus above 1 must be a whole number (a trial takes a share of one GPU, or whole "
            f"GPUs), got {args.gpus:g}"
        )
    if args.address is not None:
        return  # a cluster's size is its autoscaler's business
    import torch

    gpus = torch.cuda.device_count()
    if args.gpus and not gpus:
        raise UsageError(
            f"--gpus given but this machine has no CUDA GPU: {args.gpus:g} per trial; allowed "
            f"here: 0 (or pass --address to use a cluster's)"
        )
    if args.gpus > gpus:
        raise UsageError(f"--gpus {args.gpus:g} per trial, but this machine has {gpus} GPU(s)")
    if workers is not None and args.gpus and workers > gpus:
        raise UsageError(
            f"--workers {workers} takes one GPU per worker with --gpus, and this machine "
            f"has {gpus} (lower --workers, or pass --address)"
        )
    cores = machine_cpus()
    if workers is not None and workers * args.cpus > cores:
        raise UsageError(
            f"--workers {workers} x --cpus {args.cpus:g} needs "
            f"{workers * args.cpus:g} CPUs; this machine has {cores} (lower --workers or "
            f"--cpus, or pass --address)"
        )
    if args.cpus > cores:
        raise UsageError(
            f"--cpus {args.cpus:g} per trial, but this machine has {cores} CPU(s) (lower "
            f"--cpus, or pass --address)"
        )


def storage_uri(path: str) -> str:
    """Tune wants an absolute local path or a filesystem URI."""
    return path if "://" in path else os.path.abspath(path)


def check_storage(uri: str, *, timeout_s: float = STORAGE_TIMEOUT_S) -> None:
    """Fail fast, before Ray starts, when the experiment's storage cannot be written.

    Creates the folder (local path or URI, through the same filesystem layer as the trial
    table) and writes and deletes a small probe file in it. Anything that goes wrong (unknown
    scheme, no credentials, no such bucket, no network, a read-only location, no answer within
    ``timeout_s``) raises :class:`UsageError` with one line naming ``--out``, ``uri`` and the
    reason.
    """
    from raygan import results, storage

    def probe() -> None:
        fs, root = results.filesystem(uri)
        fs.create_dir(root, recursive=True)
        name = f"{root.rstrip('/')}/.raygan-probe-{uuid.uuid4().hex[:12]}"
        with fs.open_output_stream(name) as f:
            f.write(b"raygan")
        fs.delete_file(name)

    try:
        storage.within(timeout_s, f"--out {uri}", probe)
    except UsageError:
        raise
    except Exception as err:  # any failure of the probe: the storage cannot be used
        reason = " ".join(str(err).split()) or type(err).__name__
        raise UsageError(f"--out: cannot write to storage {uri}: {reason}{_hint(uri)}") from None


def _hint(uri: str) -> str:
    if uri.startswith(("s3://", "s3a://")):
        return (
            " (check the bucket name and that this machine has AWS credentials for it:"
            " AWS_PROFILE, ~/.aws/credentials or an instance role)"
        )
    if uri.startswith(("gs://", "gcs://")):
        return " (check the bucket name and the Google Cloud credentials of this machine)"
    return ""


@contextlib.contextmanager
def local_cluster(
    nodes: int = 3, *, cpus_per_node: float = 1, **node_args: Any
) -> Iterator[ray.cluster_utils.Cluster]:
    """A Ray cluster of ``nodes`` nodes on this machine with this process as its driver.

    ``ray.cluster_utils.Cluster``: a head and ``nodes - 1`` worker nodes, each a real raylet
    with ``cpus_per_node`` CPUs and ``node_args`` (e.g. ``resources``), so placement, spreading
    and node loss (``cluster.remove_node``) behave as on separate machines. Ray must not be
    initialised in this process yet. Set ``RAY_TMPDIR`` to a private folder first when other
    Ray instances may share the machine: a Cluster records its address in
    ``$RAY_TMPDIR/ray/ray_current_cluster``, where a plain ``ray.init()`` elsewhere would find it.
    """
    import ray.cluster_utils

    if ray.is_initialized():
        raise RuntimeError("local_cluster needs a process where Ray is not initialised yet")
    _quiet_ray()
    # Many raylets and agents start at once on one machine: give the GCS longer than Ray's
    # default 30 s to come up (a loaded 2-core machine can need it).
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "120")
    args = {"num_cpus": cpus_per_node, "include_dashboard": False, **node_args}
    cluster = ray.cluster_utils.Cluster(initialize_head=True, head_node_args=args)
    try:
        worker_args = {
            k: v for k, v in args.items() if k not in ("include_dashboard", "_system_config")
        }
        for _ in range(nodes - 1):
            cluster.add_node(wait=False, **worker_args)
        cluster.wait_for_nodes(timeout=120)
        ray.init(address=cluster.address, log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
