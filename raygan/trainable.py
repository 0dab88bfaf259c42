"""THE trial: config -> build the G/D pair -> (inherit) -> train -> evaluate -> result.

:func:`run_trial` is the whole trial as a plain function with a ``report`` hook (what the
benchmark calls directly to measure Tune's overhead); :func:`train_pair` is the Tune function
trainable around it. A trial of zero steps scores the generator it inherited, as it is (EAGAN's
stage-1 candidates, AutoGAN's rewards). :func:`fit_trials` runs a list of configs as a new Tune
experiment and hands back each trial's outcome (plain data) as it ends; the driver turns each into
its table row (:func:`row_fields`), so rows land in one place, at a boundary, even on a cluster.

A trial's config holds: ``g``/``d`` (canonical genotype strings),
``gf``, ``df``, ``bottom_width``, ``n_cells`` (AutoGAN: the cells a multi-level stage runs),
``dataset``, ``data_root``, ``max_images``, the training budget (:class:`raygan.train.TrainConfig`
fields), ``eval_samples``, ``extractor``, ``inception_weights``, ``init_g`` / ``init_d``
(checkpoint files whose G / D weights the trial inherits: a supernet's or another trial's
``state.pt``; a supernet's holds every candidate, and the trial takes its own path's),
``checkpoint_every``, ``score_at`` (steps at which the trial also scores and reports IS and
FID: an early-stopping scheduler's rungs), ``row`` (the strategy's own table columns),
``proposal`` (the search's key for it, if any) and ``resume_from`` (a checkpoint folder to
continue from, if any).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import fields
from typing import Any

import torch
from ray import tune

from raygan import cost, data, metrics, nn, spaces, storage
from raygan.train import Diverged, GANTrainer, TrainConfig, init_weights, scored_generator

STATE_FILE = "state.pt"
CONFIG_FILE = "config.json"
SAMPLES_FILE = "samples.png"

DEFAULTS: dict[str, Any] = {
    "gf": 64,
    "df": 64,
    "bottom_width": 4,
    "dataset": "shapes",
    "data_root": None,
    "max_images": 10_000,
    "eval_samples": 1_000,
    "extractor": "auto",
    "inception_weights": None,
    "latent_chunks": None,
    "n_cells": None,
    "num_classes": None,
    "reference_images": None,
    "init_g": None,
    "init_d": None,
    "checkpoint_every": 0,
    "score_at": (),
    "row": {},
}

Report = Callable[[dict[str, Any], str | None], None]
"""``report(metrics, checkpoint_dir)``: Tune's report, or anything else outside Tune."""


def full_config(config: dict[str, Any]) -> dict[str, Any]:
    return {**DEFAULTS, **config}


def train_config(config: dict[str, Any]) -> TrainConfig:
    names = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in config.items() if k in names})
    cfg.betas = tuple(cfg.betas)
    return cfg


def build_pair(config: dict[str, Any]) -> tuple[torch.nn.Module, torch.nn.Module]:
    """G and D from the config's genotypes and widths, initialised per METHODS.md; D for the
    images the whole G makes (an AutoGAN stage that runs fewer cells trains that D too)."""
    g = spaces.Genotype.parse(config["g"])
    d = spaces.Genotype.parse(config["d"])
    options = {k: config[k] for k in ("latent_chunks", "n_cells") if config[k]}
    classes = config["num_classes"]
    generator = nn.build_generator(
        g, width=config["gf"], bottom_width=config["bottom_width"], num_classes=classes, **options
    )
    size = nn.generator_resolution(g.space, config["bottom_width"])
    discriminator = nn.build_discriminator(
        d, width=config["df"], resolution=size, num_classes=classes
    )
    init_weights(generator)
    init_weights(discriminator)
    return generator, discriminator


def inherit_weights(trainer: GANTrainer, init_g: str | None, init_d: str | None) -> None:
    """Start from other checkpoints' weights: a supernet's shared weights or a trial's."""
    # Stage 1 takes G and D from the same supernet checkpoint: read it once (it may be large
    # and remote).
    states = {path: read_checkpoint(path, trainer.device) for path in {init_g, init_d} - {None, ""}}
    trainer.G_ema.load_state_dict(trainer.G.state_dict())
    if init_g:
        nn.inherit(trainer.G, states[init_g]["G"])
        nn.inherit(trainer.G_ema, scored_generator(states[init_g]))
    if init_d:
        nn.inherit(trainer.D, states[init_d]["D"])


_READ: dict[tuple[str, str], Any] = {}
"""The checkpoints this process read last, by path and device (:func:`read_checkpoint`)."""
READ_KEPT = 2
"""Checkpoints kept: a stage-2 trial reads two (G* and its D's own)."""


def read_checkpoint(path: str, device: torch.device) -> dict[str, Any]:
    """A checkpoint's state, kept for the next trial this process runs: a reused worker that
    scores the next candidate of the same round does not read the supernet again. (Nothing
    rewrites a checkpoint a batch's trials inherit while the batch runs; its workers end
    with it.) The state is shared: only read it."""
    key = (path, str(device))
    if key not in _READ:
        while len(_READ) >= READ_KEPT:
            del _READ[next(iter(_READ))]
        _READ[key] = storage.load_torch(path, map_location=device)
    return _READ[key]


SHAPES_REFERENCE_IMAGES = 10_000
"""Real images behind ``shapes`` statistics; the other datasets use their whole train set."""


def reference_for(config: dict[str, Any], resolution: int) -> metrics.Reference:
    """The real data a trial is scored against: one definition, so every trial and the
    driver that pre-computes its statistics share one cache entry."""
    config = full_config(config)
    count = config["reference_images"]
    if count is None and config["dataset"] == "shapes":
        count = SHAPES_REFERENCE_IMAGES
    return metrics.Reference(
        config["dataset"], resolution, num_images=count, root=config["data_root"]
    )


def device_for_trial() -> torch.device:
    """The GPU Ray assigned (it sets CUDA_VISIBLE_DEVICES), else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def save_state(
    trainer: GANTrainer,
    batches: data.DeviceBatches | None,
    config: dict[str, Any],
    directory: str,
) -> None:
    """A checkpoint and the config that built it: resumable training state (RNGs included),
    or, for a trial that never trained, only the generator it was scored with."""
    if batches is None:
        state = {"G_ema": trainer.G_ema.state_dict(), "step": trainer.step}
    else:
        state = {**trainer.state_dict(), "data": batches.state_dict()}
    torch.save(state, os.path.join(directory, STATE_FILE))
    with open(os.path.join(directory, CONFIG_FILE), "w") as f:
        json.dump(config, f, indent=1, default=str)


def prepare(
    config: dict[str, Any], device: torch.device, resume_dir: str | None
) -> tuple[GANTrainer, data.DeviceBatches | None]:
    """The trainer, from scratch, inherited weights or a checkpoint, and its training batches
    (none for a trial of zero steps: it only scores)."""
    torch.manual_seed(config.get("seed", 0))
    cfg = train_config(config)
    trainer = GANTrainer(*build_pair(config), cfg, device)
    batches = None
    if cfg.steps > 0:
        images, labels = data.load_training(
            config["dataset"],
            labelled=config["num_classes"] is not None,
            root=config["data_root"],
            resolution=trainer.G.resolution,
            max_images=config["max_images"],
            seed=cfg.seed,
        )
        batches = data.DeviceBatches(
            images, device, seed=cfg.seed, channels_last=cfg.channels_last, labels=labels
        )
    if resume_dir is None:
        inherit_weights(trainer, config["init_g"], config["init_d"])
        return trainer, batches
    state = torch.load(os.path.join(resume_dir, STATE_FILE), map_location=device, weights_only=True)
    if "G" not in state:  # a trial of zero steps keeps only the generator it scored
        trainer.G_ema.load_state_dict(state["G_ema"])
        return trainer, batches
    trainer.load_state_dict(state)
    if batches is not None:
        batches.load_state_dict(state["data"])
    return trainer, batches


def train(
    trainer: GANTrainer,
    batches: data.DeviceBatches | None,
    config: dict[str, Any],
    report: Callable[[dict[str, Any], str], None],
) -> dict[str, Any]:
    """Train to the budget, stopping at every ``checkpoint_every`` steps and at every step of
    ``score_at`` (the rungs at which a scheduler such as ASHA compares trials) to report and
    checkpoint; the losses, throughput and training wall time."""
    cfg, out = trainer.cfg, {"train_s": 0.0}
    every = config["checkpoint_every"] or cfg.steps
    rungs = sorted(step for step in config["score_at"] if step < cfg.steps)
    while trainer.step < cfg.steps:
        stop = min([trainer.step + every, cfg.steps, *(r for r in rungs if r > trainer.step)])
        chunk = stop - trainer.step
        stats = trainer.run(batches, chunk)
        out["train_s"] += stats["wall_s"]
        out.update(
            g_loss=stats["g_loss"],
            d_loss=stats["d_loss"],
            img_per_s=chunk * cfg.n_critic * cfg.d_batch / max(stats["wall_s"], 1e-9),
        )
        if trainer.step < cfg.steps:
            with tempfile.TemporaryDirectory() as tmp:
                save_state(trainer, batches, config, tmp)
                report(out, tmp)
    return out


def score(trainer: GANTrainer, config: dict[str, Any]) -> dict[str, Any]:
    """IS/FID of the EMA generator (an inherited path first gets its own BatchNorm statistics:
    the supernet's are shared by every path)."""
    if trainer.cfg.steps == 0 and config["init_g"]:
        nn.recalibrate_batch_norm(trainer.G_ema, seed=trainer.cfg.seed)
    scores = metrics.evaluate(
        trainer.G_ema,
        reference=reference_for(config, trainer.G.resolution),
        num_samples=config["eval_samples"],
        extractor=config["extractor"],
        device=trainer.device,
        inception_weights=config["inception_weights"],
        seed=trainer.cfg.seed,
        bf16=trainer.cfg.amp_bf16,
    )
    status = "ok" if all(math.isfinite(scores[k]) for k in ("is", "fid")) else "failed"
    return {**scores, "eval_samples": scores["num_samples"], "status": status}


def run_trial(
    config: dict[str, Any], report: Report, *, resume_dir: str | None = None, share: float = 1.0
) -> dict:
    """Train and score one pair; ``report`` is called at each checkpoint and once at the end.

    Every report carries the trial's cost so far (:func:`raygan.cost.fields`; ``share``: the
    device share it holds), so a trial a scheduler stops early is paid for in its row; one at
    a ``score_at`` rung also carries IS/FID and a sample grid. The final metrics always carry
    ``status``: ``ok``, or ``diverged`` with the reason in ``error`` (then IS/FID are absent,
    never a garbage score).
    """
    config = full_config(config)
    start = time.perf_counter()
    trainer, batches = prepare(config, device_for_trial(), resume_dir)
    setup_s = time.perf_counter() - start
    result: dict[str, Any] = {**describe(trainer, config), "budget_steps": trainer.cfg.steps}
    result.update(train_s=0.0, eval_s=0.0)

    def paid() -> dict[str, Any]:
        wall_s = time.perf_counter() - start
        return {
            "steps": trainer.step,
            "wall_s": wall_s,
            **cost.fields(
                cost.device_name(trainer.device),
                share,
                wall_s=wall_s,
                train_s=result["train_s"],
                eval_s=result["eval_s"],
                setup_s=setup_s,
                train_flops=trainer.flops.mean() * trainer.step,
            ),
        }

    def scored() -> dict[str, Any]:
        tic = time.perf_counter()
        scores = score(trainer, config)
        result["eval_s"] += time.perf_counter() - tic
        return scores

    def checkpointed(trained: dict[str, Any], directory: str) -> None:
        result.update(trained)
        rung = {}
        if trainer.step in config["score_at"]:
            rung = scored()
            save_samples(
                trainer.G_ema, os.path.join(directory, SAMPLES_FILE), seed=trainer.cfg.seed
            )
        report({**result, **rung, **paid(), "status": "running"}, directory)

    try:
        result.update(train(trainer, batches, config, checkpointed))
    except Diverged as err:
        result.update(budget_steps=trainer.step, status="diverged", error=str(err))
    else:
        result.update(scored())
    result.update(paid(), done=True)
    with tempfile.TemporaryDirectory() as tmp:
        if result["status"] != "diverged":
            save_state(trainer, batches, config, tmp)
            save_samples(trainer.G_ema, os.path.join(tmp, SAMPLES_FILE), seed=trainer.cfg.seed)
        report(result, None if result["status"] == "diverged" else tmp)
    return result


def describe(trainer: GANTrainer, config: dict[str, Any]) -> dict[str, Any]:
    """What a trial's row says of its pair; ``d_params`` only for a D that trained or was
    inherited (a generator scored as inherited has no D of its own)."""
    has_d = trainer.cfg.steps > 0 or bool(config["init_d"])
    return {
        "g_params": nn.count_params(trainer.G),
        "d_params": nn.count_params(trainer.D) if has_d else None,
        "resolution": trainer.G.resolution,
        "seed": trainer.cfg.seed,
        "inherited_from": config["init_g"],
    }


@torch.no_grad()
def save_samples(generator: torch.nn.Module, path: str, *, n: int = 64, seed: int = 0) -> None:
    """A square grid of samples from a fixed noise batch, as a PNG; a conditional
    generator's rows are its classes in turn (row ``r``: class ``r mod num_classes``)."""
    from torchvision.utils import save_image

    device = next(generator.parameters()).device
    z = torch.randn(n, generator.latent_dim, generator=torch.Generator().manual_seed(seed)).to(
        device
    )
    side = int(math.sqrt(n))
    classes = getattr(generator, "num_classes", None)
    y = {} if classes is None else {"y": (torch.arange(n, device=device) // side) % classes}
    generator.eval()
    save_image(
        generator(z, **y).float().cpu(),
        path,
        nrow=side,
        normalize=True,
        value_range=(-1, 1),
    )


# ----- Tune -------------------------------------------------------------------------------------
def train_pair(config: dict[str, Any]) -> None:
    """The Tune function trainable: one config of :func:`fit_trials`' list. A trial Tune
    retries continues from Tune's checkpoint; a trial the driver resubmits after a restart
    continues from the checkpoint its config names (``resume_from``)."""
    from raygan import faults

    config = config["trial"]
    faults.trial(config.get("proposal"))

    def report(result: dict[str, Any], checkpoint_dir: str | None) -> None:
        checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        tune.report(result, checkpoint=checkpoint)

    checkpoint = tune.get_checkpoint()
    if checkpoint is None and config.get("resume_from"):
        if storage.exists(storage.join(config["resume_from"], STATE_FILE)):
            checkpoint = tune.Checkpoint(config["resume_from"])
        else:
            print(f"[raygan] {config['resume_from']} is gone; the trial starts afresh")
    share = held_share()
    if checkpoint is None:
        run_trial(config, report, share=share)
    else:
        with checkpoint.as_directory() as resume_dir:
            run_trial(config, report, resume_dir=resume_dir, share=share)


def held_share() -> float:
    """The device share Ray gave this trial: its GPU fraction on a GPU, else its CPU cores."""
    import ray

    held = ray.get_runtime_context().get_assigned_resources()
    return float(held.get("GPU", 0.0) if torch.cuda.is_available() else held.get("CPU", 1.0))


Outcome = dict[str, Any]
"""A finished trial as plain data (what the driver saves, and what rows are built from):
``index`` (its config's place in the list), ``trial_id``, ``config``, ``metrics`` (its last
result), ``checkpoint`` (the URI of its last checkpoint folder, or None) and ``error`` (the
last line of its exception, or None)."""

_SINKS: dict[str, tuple[Callable, Callable]] = {}
"""The driver-side handlers of running experiments, by token (Tune pickles its callbacks with
the experiment; a token keeps the handlers, and whatever they hold, out of that pickle)."""


class _Outcomes(tune.Callback):
    """Hands each trial's outcome, and each checkpoint it reports, to the driver as it happens
    (so the driver's own state knows which trials finished, and from where the others would
    continue)."""

    def __init__(self, token: str):
        self.token = token

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.last_result.get("done"):  # a trial Tune stopped early (Ctrl-C) did not finish
            self.send(trial, None)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        lines = error_text(trial).strip().splitlines()  # the text trace, not the pickle
        # Tune reads each errored trial's pickled exception back from storage when the run
        # ends (its ResultGrid): forget that file, so it falls back to the text trace.
        trial.run_metadata.pickled_error_filename = None
        self.send(trial, lines[-1][:500] if lines else "the trial failed")

    def on_checkpoint(
        self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        _SINKS[self.token][1](trial.config["trial"]["index"], storage.checkpoint_uri(checkpoint))

    def send(self, trial: Any, error: str | None) -> None:
        config = trial.config["trial"]
        checkpoint = trial.checkpoint if error is None else None
        outcome = {
            "index": config["index"],
            "trial_id": trial.trial_id,
            "config": {k: v for k, v in config.items() if k not in ("index", "resume_from")},
            "metrics": _plain(trial.last_result),
            "checkpoint": storage.checkpoint_uri(checkpoint) if checkpoint else None,
            "error": error,
        }
        _SINKS[self.token][0](outcome)


def error_text(trial: Any) -> str:
    """The text trace of a trial's last error: Tune writes it to the trial's local folder as
    the trial fails and copies it to storage later (``trial.get_error`` reads storage only, so
    a trial's first failure is not there yet)."""
    local = trial.error_file
    if local and os.path.isfile(local):
        with open(local) as f:
            return f.read()
    return str(trial.get_error() or "")


def _plain(result: dict[str, Any]) -> dict[str, Any]:
    """A Tune result without what Tune adds that is not plain data (its nested config)."""
    return {k: v for k, v in result.items() if k != "config" and not isinstance(v, dict)}


def fit_trials(
    storage_path: str,
    name: str,
    configs: list[dict[str, Any]],
    *,
    resources: dict[str, float],
    concurrency: int | None = None,
    reuse_actors: bool = False,
    max_failures: int = 2,
    on_outcome: Callable[[Outcome], None] | None = None,
    on_checkpoint: Callable[[int, str], None] | None = None,
    scheduler: Any | None = None,
) -> list[Outcome]:
    """Run ``configs`` as the trials of a new Tune experiment ``name`` under ``storage_path``;
    their outcomes, in ``configs``' order.

    Nothing is restored from storage (``Tuner.restore`` unpickles what it finds there): a
    driver that restarts submits its unfinished trials to a new experiment, each config naming
    the checkpoint to continue from (``resume_from``), and a folder left under ``name`` is
    replaced. ``on_outcome`` receives each outcome as its trial ends and ``on_checkpoint``
    each checkpoint a trial reports (its index and URI); a trial that raises is retried
    ``max_failures`` times from its last checkpoint (-1: without limit). ``reuse_actors`` runs
    trials one after another in the same worker processes: worth it when a trial takes less
    time than starting a process that imports torch. ``scheduler``: a Tune trial scheduler
    (ASHA) deciding on the results that carry its metric; the others (checkpoints, a
    divergence) it passes over, as Tune's strict metric check is told. The terminal shows
    the experiment's progress (:class:`raygan.progress.Progress`). Tune stopped early
    (Ctrl-C) raises ``KeyboardInterrupt``.
    """
    from raygan.progress import Progress

    found: dict[int, Outcome] = {}
    token = uuid.uuid4().hex

    def done(outcome: Outcome) -> None:
        found[outcome["index"]] = outcome
        if on_outcome is not None:
            on_outcome(outcome)

    _SINKS[token] = (done, on_checkpoint or (lambda index, uri: None))
    storage.delete(storage.join(storage_path, name))
    tuner = tune.Tuner(
        tune.with_resources(train_pair, resources),
        param_space={"trial": tune.grid_search([{**c, "index": i} for i, c in enumerate(configs)])},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=concurrency,
            reuse_actors=reuse_actors,
            trial_dirname_creator=trial_dirname,
            scheduler=scheduler,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage_path,
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[_Outcomes(token), Progress(name, len(configs), share(resources))],
        ),
    )
    try:
        with lenient_metrics(scheduler is not None):
            tuner.fit()
    finally:
        del _SINKS[token]
    if len(found) < len(configs):  # Tune stopped on Ctrl-C before every trial ended
        raise KeyboardInterrupt
    return [found[i] for i in range(len(configs))]


@contextlib.contextmanager
def lenient_metrics(lenient: bool) -> Iterator[None]:
    """Tune's switch for results without the scheduler's metric (a trial reports FID only at
    rungs), on for the ``with`` block only."""
    key = "TUNE_DISABLE_STRICT_METRIC_CHECKING"
    before = os.environ.get(key)
    if lenient:
        os.environ[key] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def share(resources: dict[str, float]) -> float:
    """The device share a trial of ``resources`` holds: its GPU fraction, else its CPUs."""
    return float(resources.get("GPU") or resources.get("CPU") or 1.0)


def trial_dirname(trial: Any) -> str:
    """Short trial folders (Tune's default spells out the whole config)."""
    return f"trial-{trial.trial_id}"


ROW_RESULTS = (
    "resolution", "is", "is_std", "fid", "kid", "intra_fid", "class_accuracy", "g_params",
    "d_params", "budget_steps", "wall_s", "img_per_s", "inherited_from", "seed", "extractor",
    "eval_samples",
    *cost.COLUMNS,
)  # fmt: skip
"""What a trial's final result contributes to its row."""


def row_fields(outcome: Outcome) -> dict[str, Any]:
    """A trial's row fields from its :data:`Outcome`: its genotypes, widths and result, plus
    the strategy's own columns from the config's ``row``. A trial whose last result is a
    checkpoint's (a scheduler stopped it there) is ``stopped``, with the steps it trained as
    its budget and the scores of its last rung."""
    config = full_config(outcome["config"])
    last, error = outcome["metrics"], outcome["error"]
    g, d = spaces.Genotype.parse(config["g"]), spaces.Genotype.parse(config["d"])
    status = "failed" if error is not None else last.get("status", "failed")
    if status == "running":
        status, last = "stopped", {**last, "budget_steps": last.get("steps")}
    return {
        "trial_id": outcome["trial_id"],
        **spaces.table_columns("g", g),
        **spaces.table_columns("d", d),
        "gf": config["gf"],
        "df": config["df"],
        "dataset": config["dataset"],
        "conditional": config["num_classes"] is not None,
        "num_classes": config["num_classes"],
        "checkpoint": outcome["checkpoint"],
        "error": last.get("error") or error,
        **{k: last.get(k) for k in ROW_RESULTS},
        "status": status,
        **(config.get("row") or {}),
    }
