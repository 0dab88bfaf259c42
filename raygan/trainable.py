"""One trial: config -> build the G/D pair -> train -> evaluate -> report and checkpoint.

:func:`run_trial` is the whole trial as a plain function with a ``report`` hook; it is what the
benchmark calls directly to measure Tune's overhead. :func:`train_pair` is the Tune function
trainable around it, and :class:`TableCallback` appends each finished trial (ok or not) to the
experiment's trial table from the driver, so rows land in one place even on a cluster.

A trial's config (flat, so Tune shows it) holds: ``g``/``d`` (canonical genotype strings),
``gf``, ``df``, ``bottom_width``, ``dataset``, ``data_root``, ``max_images``, the training
budget (:class:`raygan.train.TrainConfig` fields), ``eval_samples``, ``extractor``,
``inception_weights``, ``init_g`` / ``init_d`` (checkpoint files whose G / D weights the trial
inherits: a supernet's or another trial's ``state.pt``; a supernet's holds every candidate, and
the trial takes its own path's), ``checkpoint_every`` and ``row`` (extra table columns).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import torch
from ray import tune
from ray.tune import Callback

from raygan import data, metrics, nn, results, spaces, storage
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
    "reference_images": None,
    "init_g": None,
    "init_d": None,
    "checkpoint_every": 0,
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
    """G and D from the config's genotypes and widths, initialised per METHODS.md."""
    g = spaces.Genotype.parse(config["g"])
    d = spaces.Genotype.parse(config["d"])
    options = {"latent_chunks": config["latent_chunks"]} if config["latent_chunks"] else {}
    generator = nn.build_generator(
        g, width=config["gf"], bottom_width=config["bottom_width"], **options
    )
    discriminator = nn.build_discriminator(d, width=config["df"])
    init_weights(generator)
    init_weights(discriminator)
    return generator, discriminator


def inherit_weights(trainer: GANTrainer, init_g: str | None, init_d: str | None) -> None:
    """Start from other checkpoints' weights: a supernet's shared weights or a trial's."""
    # Stage 1 takes G and D from the same supernet checkpoint: read it once (it may be large
    # and remote).
    states = {
        path: storage.load_torch(path, map_location=trainer.device)
        for path in {init_g, init_d} - {None, ""}
    }
    trainer.G_ema.load_state_dict(trainer.G.state_dict())
    if init_g:
        nn.inherit(trainer.G, states[init_g]["G"])
        nn.inherit(trainer.G_ema, scored_generator(states[init_g]))
    if init_d:
        nn.inherit(trainer.D, states[init_d]["D"])


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
    trainer: GANTrainer, batches: data.DeviceBatches, config: dict[str, Any], directory: str
) -> None:
    """A resumable checkpoint: training state (RNGs included) and the config that built it."""
    state = trainer.state_dict()
    state["data"] = batches.state_dict()
    torch.save(state, os.path.join(directory, STATE_FILE))
    with open(os.path.join(directory, CONFIG_FILE), "w") as f:
        json.dump(config, f, indent=1, default=str)


def run_trial(config: dict[str, Any], report: Report, *, resume_dir: str | None = None) -> dict:
    """Train and score one pair; ``report`` is called at each checkpoint and once at the end.

    The final metrics always carry ``status``: ``ok``, or ``diverged`` with the reason in
    ``error`` (then IS/FID are absent, never a garbage score).
    """
    config = full_config(config)
    start = time.perf_counter()
    torch.manual_seed(config.get("seed", 0))
    cfg = train_config(config)
    device = device_for_trial()
    generator, discriminator = build_pair(config)
    trainer = GANTrainer(generator, discriminator, cfg, device)
    resolution = generator.resolution
    images = data.load(
        config["dataset"],
        root=config["data_root"],
        resolution=resolution,
        max_images=config["max_images"],
        seed=cfg.seed,
    )
    batches = data.DeviceBatches(images, device, seed=cfg.seed, channels_last=cfg.channels_last)
    if resume_dir is not None:
        state = torch.load(
            os.path.join(resume_dir, STATE_FILE), map_location=device, weights_only=True
        )
        trainer.load_state_dict(state)
        batches.load_state_dict(state["data"])
    else:
        inherit_weights(trainer, config["init_g"], config["init_d"])

    result: dict[str, Any] = {
        "g_params": nn.count_params(trainer.G),
        "d_params": nn.count_params(trainer.D),
        "resolution": resolution,
        "seed": cfg.seed,
        "inherited_from": config["init_g"],
    }
    every = config["checkpoint_every"] or cfg.steps
    train_wall = 0.0
    try:
        while trainer.step < cfg.steps:
            chunk = min(every, cfg.steps - trainer.step)
            stats = trainer.run(batches, chunk)
            train_wall += stats["wall_s"]
            result.update(
                g_loss=stats["g_loss"],
                d_loss=stats["d_loss"],
                img_per_s=chunk * cfg.n_critic * cfg.d_batch / max(stats["wall_s"], 1e-9),
            )
            if trainer.step < cfg.steps:
                with tempfile.TemporaryDirectory() as tmp:
                    save_state(trainer, batches, config, tmp)
                    report({**result, "steps": trainer.step, "status": "running"}, tmp)
    except Diverged as err:
        final = {
            **result,
            "steps": trainer.step,
            "budget_steps": trainer.step,
            "status": "diverged",
            "error": str(err),
            "wall_s": time.perf_counter() - start,
            "done": True,
        }
        report(final, None)
        return final

    if cfg.steps == 0 and config["init_g"]:
        # scored as inherited: its BatchNorm statistics are still the supernet's (shared by
        # every path), so they are recomputed for this path first
        nn.recalibrate_batch_norm(trainer.G_ema, seed=cfg.seed)
    scores = metrics.evaluate(
        trainer.G_ema,
        reference=reference_for(config, resolution),
        num_samples=config["eval_samples"],
        extractor=config["extractor"],
        device=device,
        inception_weights=config["inception_weights"],
        seed=cfg.seed,
    )
    status = "ok" if all(math.isfinite(scores[k]) for k in ("is", "fid")) else "failed"
    final = {
        **result,
        **scores,
        "steps": trainer.step,
        "budget_steps": trainer.step,
        "status": status,
        "eval_samples": scores["num_samples"],
        "wall_s": time.perf_counter() - start,
        "train_wall_s": train_wall,
        "done": True,
    }
    with tempfile.TemporaryDirectory() as tmp:
        save_state(trainer, batches, config, tmp)
        save_samples(trainer.G_ema, os.path.join(tmp, SAMPLES_FILE), seed=cfg.seed)
        report(final, tmp)
    return final


@torch.no_grad()
def save_samples(generator: torch.nn.Module, path: str, *, n: int = 64, seed: int = 0) -> None:
    """A square grid of samples from a fixed noise batch, as a PNG."""
    from torchvision.utils import save_image

    device = next(generator.parameters()).device
    z = torch.randn(n, generator.latent_dim, generator=torch.Generator().manual_seed(seed)).to(
        device
    )
    generator.eval()
    save_image(
        generator(z).float().cpu(),
        path,
        nrow=int(math.sqrt(n)),
        normalize=True,
        value_range=(-1, 1),
    )


# ----- Tune -------------------------------------------------------------------------------------
def train_pair(config: dict[str, Any]) -> None:
    """The Tune function trainable: resumes from Tune's checkpoint when a trial is retried."""

    def report(result: dict[str, Any], checkpoint_dir: str | None) -> None:
        checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        tune.report(result, checkpoint=checkpoint)

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        run_trial(config, report)
    else:
        with checkpoint.as_directory() as resume_dir:
            run_trial(config, report, resume_dir=resume_dir)


def trial_error(trial: Any) -> str:
    """The last line of an errored trial's traceback (the exception), for the table."""
    path = getattr(trial, "error_file", None)
    if path and os.path.isfile(path):
        with open(path) as f:
            lines = f.read().strip().splitlines()
        if lines:
            return lines[-1][:500]
    return "trial failed (no error file)"


def row_from_trial(trial: Any, experiment: str, strategy: str) -> dict[str, Any]:
    """A trial-table row from a finished (or errored) Tune trial."""
    config = full_config(trial.config)
    last = dict(trial.last_result or {})
    g, d = spaces.Genotype.parse(config["g"]), spaces.Genotype.parse(config["d"])
    checkpoint = storage.checkpoint_uri(trial.checkpoint) if trial.checkpoint else None
    status = last.get("status", "failed")
    if trial.status == "ERROR":
        status = "failed"
    row = {
        "experiment": experiment,
        "trial_id": trial.trial_id,
        "strategy": strategy,
        **spaces.table_columns("g", g),
        **spaces.table_columns("d", d),
        "gf": config["gf"],
        "df": config["df"],
        "dataset": config["dataset"],
        "checkpoint": checkpoint,
        "error": last.get("error") or (trial_error(trial) if trial.status == "ERROR" else None),
        **{
            k: last.get(k)
            for k in (
                "resolution",
                "is",
                "is_std",
                "fid",
                "kid",
                "g_params",
                "d_params",
                "budget_steps",
                "wall_s",
                "img_per_s",
                "inherited_from",
                "seed",
                "extractor",
                "eval_samples",
            )
        },
        "status": status,
    }
    row.update(config.get("row") or {})
    return row


class TableCallback(Callback):
    """Appends every finished trial's row (ok, diverged or errored) to the experiment table."""

    def __init__(self, experiment_dir: str, strategy: str):
        self.experiment_dir = experiment_dir
        self.strategy = strategy
        self.experiment = os.path.basename(experiment_dir.rstrip("/"))

    def _append(self, trial: Any) -> None:
        results.append(self.experiment_dir, [row_from_trial(trial, self.experiment, self.strategy)])

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._append(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._append(trial)
