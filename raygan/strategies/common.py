"""What every search driver shares, so that each strategy module holds only its method.

A driver (:class:`Driver`) runs from boundary to boundary (a generation, an iteration), saving
its whole state, a plain dict, at each one, so a killed search continues with ``--resume``. The
work between two boundaries is one shared-weights round (a Ray Train job) and one Tune
experiment of candidate trials (:func:`fit_trials`); a Tune experiment interrupted half-way is
restored with ``Tuner.restore``, which keeps its finished trials and re-runs only the others.
"""

from __future__ import annotations

import argparse
import os
import pickle
from collections.abc import Callable, Iterable
from typing import Any

from raygan import results, storage
from raygan.errors import UsageError


def bottom_width(dataset: str) -> int:
    """The generators' bottom width: 6 for STL-10's 48 px, 4 (32 px) otherwise."""
    return 6 if dataset == "stl10" else 4


def require_positive(args: argparse.Namespace, names: Iterable[str]) -> None:
    """Each named option must be a whole number >= 1 (presets fill what the user left out)."""
    for name in names:
        value = getattr(args, name)
        if not isinstance(value, int) or value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be a whole number >= 1, got {value}")


def check_resources(args: argparse.Namespace) -> None:
    """The resource options, and on this machine (no ``--address``) whether it has them: Ray
    would otherwise wait forever for a GPU or a CPU that is not there."""
    if args.gpus > 1 and args.gpus != int(args.gpus):
        raise UsageError("--gpus above 1 must be a whole number")
    if args.address is not None:
        return  # a cluster's size is its autoscaler's business
    import torch

    gpus = torch.cuda.device_count()
    if args.gpus and not gpus:
        raise UsageError("--gpus given but this machine has no CUDA GPU (or pass --address)")
    if args.gpus > gpus:
        raise UsageError(f"--gpus {args.gpus:g} per trial, but this machine has {gpus} GPU(s)")
    if args.gpus and args.workers > gpus:
        raise UsageError(
            f"--workers {args.workers} takes one GPU per worker with --gpus, and this machine "
            f"has {gpus} (lower --workers, or pass --address)"
        )
    cores = os.cpu_count() or 1
    if args.workers * args.cpus > cores:
        raise UsageError(
            f"--workers {args.workers} x --cpus {args.cpus:g} needs "
            f"{args.workers * args.cpus:g} CPUs; this machine has {cores} (lower --workers or "
            f"--cpus, or pass --address)"
        )


def check_dataset(args: argparse.Namespace) -> None:
    """The dataset can be read (a missing download stops here, before Ray starts)."""
    from raygan import data

    try:
        data.load(args.dataset, root=args.data_root, max_images=8, download=args.download)
    except data.DatasetMissing as err:
        raise UsageError(str(err)) from None


class Driver:
    """A search's driver: the experiment folder, and its state saved at every boundary.

    The state is pickled to ``<out>/search_state.pkl`` with an atomic write (local rename, or
    one object-store PUT), so a kill at any moment leaves the previous boundary's state intact.
    ``--out`` may be a local folder or a storage URI (``s3://...``).
    """

    STATE = "search_state.pkl"

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.out = args.out
        self.experiment = os.path.basename(self.out.rstrip("/"))
        self.state: dict[str, Any] = {}

    @property
    def state_path(self) -> str:
        return storage.join(self.out, self.STATE)

    def run(self) -> None:
        raise NotImplementedError

    def save(self) -> None:
        storage.write_bytes(self.state_path, pickle.dumps(self.state))

    def load(self) -> bool:
        if not storage.exists(self.state_path):
            return False
        self.state = pickle.loads(storage.read_bytes(self.state_path))
        return True

    def resume_or_start(self) -> bool:
        """Load the saved state under ``--resume`` (True), or check that ``--out`` holds no
        earlier search (False: the caller sets up a fresh state)."""
        storage.makedirs(self.out)
        resumed = self.args.resume and self.load()
        if self.args.resume and not resumed:
            raise UsageError(f"nothing to resume in {self.out} (no {self.STATE})")
        if not resumed and results.load(self.out).shape[0]:
            raise UsageError(f"{self.out} already holds a search; use --resume or a new --out")
        return bool(resumed)

    def prepare_metrics(self, config: dict[str, Any], resolutions: Iterable[int]) -> None:
        """Resolve the extractor once (every trial uses the same) and cache the reference
        statistics at every resolution before any trial, so no trial makes a real-data pass."""
        from raygan import metrics
        from raygan.trainable import reference_for

        a = self.args
        extractor = metrics.resolve_extractor(a.extractor, inception_weights=a.inception_weights)
        a.extractor = extractor.name
        for resolution in resolutions:
            metrics.reference_statistics(reference_for(config, resolution), extractor)


def fit_trials(
    trainable: Callable[[dict[str, Any]], None],
    searcher: Callable[[], Any],
    *,
    out: str,
    name: str,
    args: argparse.Namespace,
    reuse_actors: bool = False,
    resume_errored: bool = True,
) -> list:
    """Run Tune experiment ``name`` (under ``<out>/tune``) to its end and return its trials.

    ``searcher()`` makes the search algorithm of a new experiment; an experiment that exists
    already (the driver was killed during it) is restored instead, searcher included.
    ``reuse_actors`` runs trials one after another in the same worker processes: worth it when
    a trial takes less time than starting a process that imports torch. ``resume_errored``
    re-runs a restored experiment's errored trials; a search whose later proposals depend on
    earlier results keeps them as they were told instead (a re-run could change the result).
    """
    from ray import tune

    from raygan import cluster

    root = cluster.storage_uri(storage.join(out, "tune"))
    resourced = tune.with_resources(trainable, cluster.trial_resources(args.cpus, args.gpus))
    path = storage.join(root, name)
    if storage.exists(storage.join(path, "tuner.pkl")):
        tuner = tune.Tuner.restore(path, resourced, resume_errored=resume_errored)
    else:
        tuner = tune.Tuner(
            resourced,
            tune_config=tune.TuneConfig(
                search_alg=searcher(),
                num_samples=-1,
                max_concurrent_trials=args.concurrency,
                reuse_actors=reuse_actors,
                trial_dirname_creator=trial_dirname,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=root,
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=2),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            ),
        )
    trials = trials_of(tuner.fit())
    if any(t.status not in ("TERMINATED", "ERROR") for t in trials):
        # Tune stops gracefully on Ctrl-C and returns: nothing of this experiment may be used;
        # the saved state stays at the boundary and --resume restores this Tune experiment.
        raise KeyboardInterrupt
    return trials


def append_once(out: str, rows: list[dict[str, Any]]) -> None:
    """Append the rows whose trial the table lacks: a driver killed after appending a
    boundary's rows but before saving its state replays that boundary without repeating one."""
    seen = set(results.load(out)["trial_id"])
    results.append(out, [r for r in rows if r["trial_id"] not in seen])


def trial_dirname(trial: Any) -> str:
    """Short trial folders (Tune's default spells out the whole config)."""
    return f"trial-{trial.trial_id}"


def trials_of(grid: Any) -> list:
    """The Tune trials behind a ResultGrid (for their configs, checkpoints and last results)."""
    return list(grid._experiment_analysis.trials)


def run_driver(tag: str, driver: Driver) -> int:
    """Run the search; Ctrl-C leaves the saved state and says how to resume (exit 130)."""
    try:
        driver.run()
    except KeyboardInterrupt:
        print(
            f"\n[{tag}] stopped. Resume with the same command plus --resume "
            f"(state in {driver.state_path})."
        )
        return 130
    print(
        f"[{tag}] done: {results.table_path(driver.out)}; analyse with: raygan analyze {driver.out}"
    )
    return 0
