"""AutoGAN (Gong et al., ICCV 2019): an RL controller grows the generator cell by cell, on Ray.

Each search iteration alternates two phases (METHODS.md section 1):

1. **Shared-GAN training**, a Ray Train job (:func:`raygan.supernet.train_round`): the supernet
   (weights shared within each op choice) against AutoGAN-D, one controller-sampled
   architecture per generator step. The driver samples the round's architectures from the
   controller before the job starts, one per generator step, and the job trains them in that
   order, the same one on every data-parallel worker. The controller does not change during
   shared training in the paper either, so the architectures come from the same policy; what
   differs is that the paper draws a new one for every discriminator minibatch (``n_critic``
   per generator step), here one covers a generator step and its ``n_critic`` D steps.
2. **Controller steps**, one Tune experiment per iteration: each step samples
   ``controller_batch`` architectures, scores each in its own trial (:func:`score_candidate`:
   the architecture's active cells inherit the round's shared weights and are scored as they
   are, no training) and makes one REINFORCE update (:class:`ControllerSearch`). The reward is
   the Inception Score at the stage's resolution; the paper's batch is 1 (one trial at a time),
   a larger batch scores its architectures in parallel and averages their policy gradients.
   Tune sees the controller through :class:`IterationView` (a copy that stops at the
   iteration's end) under the generic ``AskTellSearcher``: ``RLControllerSearcher`` is the
   same adapter around a whole search, which would run every stage in one experiment.

Multi-level search: stage ``s`` searches cell ``s + 1`` only, generating at
``bottom_width * 2**(s + 1)`` px (8, 16, 32 on CIFAR-10; real images resized to match), so the
round runs the first ``s + 1`` cells and the trials build only those. The stage's last
iteration also scores ``candidates`` end-of-stage samples; the controller keeps the best
``keep`` distinct prefixes and the next stage continues from them. Shared G/D weights (and
their optimisers) carry over between iterations and stages.

Dynamic reset: a round whose last ``reset_window`` G or D losses vary by less than
``reset_var`` stops early; that iteration's controller steps still use its weights (as in the
paper), then the next round re-creates G, D and their optimisers. The controller is kept.

Results: one table row per scored architecture (``stage``, ``generation`` = iteration, ``step``
= controller step, ``reward`` = the controller's reward, i.e. IS or the 0.0 penalty of a failed
trial, without the ``1e-3 * entropy`` bonus, which ``entropy`` gives; ``baseline`` = the EMA
baseline after that step's update); ``extra`` holds ``phase`` (search | select), ``kept`` (rank
among the prefixes an end-of-stage selection kept; in the last stage, the final top-k) and the
round's loss variances and ``reset``. The final top-k are written as ``top1.yaml`` ..
``top<k>.yaml`` (and ``best.yaml``) with AutoGAN-D at the published final widths.

Resuming: the driver saves its state (controller, iteration, shared weights) after each round
and each iteration; an iteration's Tune experiment interrupted half-way is restored with
``Tuner.restore``. The driver replays every experiment's results into its own controller in
proposal order, so the saved controller never depends on which trial finished first.
"""

from __future__ import annotations

import argparse
import copy
import functools
import math
import os
import time
from collections.abc import Callable
from typing import Any

import pandas as pd
import torch

from raygan import nn, results, spaces, storage
from raygan.errors import UsageError
from raygan.searchers.asktell import AskTell, Suggestion, objectives_of
from raygan.searchers.controller import ControllerSearch
from raygan.strategies import common
from raygan.train import scored_generator

HELP = "AutoGAN: RL controller over a shared GAN, grown cell by cell (8, 16, 32 px)"

# Budgets are in generator steps. One CIFAR-10 epoch (50,000 images) is 50,000 / d_batch
# discriminator minibatches, i.e. 50,000 / (d_batch * n_critic) = 156 G steps at 64 and 5.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "gf": 16,
        "df": 16,
        "final_gf": 256,
        "final_df": 128,
        "iterations": 6,
        "grow_at": "2,4",
        "controller_steps": 2,
        "controller_batch": 2,
        "round_steps": 40,
        "n_critic": 2,
        "g_batch": 32,
        "d_batch": 32,
        "candidates": 4,
        "keep": 2,
        "reset_window": 30,
        "reset_var": 1e-3,
        "eval_samples": 200,
        "max_images": 2000,
        "workers": 1,
        "dataset": "shapes",
    },
    "paper": {
        "gf": 128,
        "df": 64,
        "final_gf": 256,
        "final_df": 128,
        "iterations": 65,
        "grow_at": "15,35",
        "controller_steps": 30,
        "controller_batch": 1,
        "round_steps": 15 * 156,
        "n_critic": 5,
        "g_batch": 128,
        "d_batch": 64,
        "candidates": 10,
        "keep": 5,
        "reset_window": 500,
        "reset_var": 1e-3,
        "eval_samples": 5000,
        "max_images": 50_000,
        "workers": 1,
        "dataset": "cifar10",
    },
}

D = "autogan_d:"
"""AutoGAN-D, the fixed discriminator of the search and of the written genotype files."""

LAST_STAGE = len(spaces.get("autogan").cells) - 1
"""MLAS searches one cell per stage: stages 0, 1, 2."""

SETTINGS = (
    "gf",
    "df",
    "iterations",
    "grow_at",
    "controller_steps",
    "controller_batch",
    "round_steps",
    "n_critic",
    "g_batch",
    "d_batch",
    "candidates",
    "keep",
    "reset_window",
    "reset_var",
    "eval_samples",
    "max_images",
    "dataset",
    "data_root",
    "seed",
)
"""Options that shape the search: a resumed search must be given the ones it started with."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gf", type=int, help="generator width during search")
    p.add_argument("--df", type=int, help="discriminator width during search")
    p.add_argument("--iterations", type=int, help="search iterations over all stages")
    p.add_argument(
        "--grow-at", help="iterations where MLAS grows to the next cell, e.g. 15,35 (two numbers)"
    )
    p.add_argument("--controller-steps", type=int, help="controller updates per iteration")
    p.add_argument(
        "--controller-batch",
        type=int,
        help="architectures per controller update, scored in parallel (paper: 1)",
    )
    p.add_argument("--round-steps", type=int, help="shared-GAN generator steps per iteration")
    p.add_argument("--n-critic", type=int, help="D steps per G step in shared training")
    p.add_argument("--g-batch", type=int, help="generator batch in shared training")
    p.add_argument("--d-batch", type=int, help="discriminator batch in shared training")
    p.add_argument("--candidates", type=int, help="architectures scored at a stage's end")
    p.add_argument("--keep", type=int, help="prefixes kept per stage, and top-k at the end")
    p.add_argument(
        "--reset-window", type=int, help="losses watched for dynamic reset (0: no reset)"
    )
    p.add_argument("--reset-var", type=float, help="loss variance under which G and D reset")
    p.add_argument("--workers", type=int, help="Ray Train workers for the shared-GAN rounds")


def grow_points(args: argparse.Namespace) -> tuple[int, int]:
    """``--grow-at`` as two iterations, 0 < first < second < ``--iterations``."""
    try:
        points = tuple(int(x) for x in str(args.grow_at).split(","))
    except ValueError:
        points = ()
    if len(points) != 2 or not 0 < points[0] < points[1] < args.iterations:
        raise UsageError(
            f"--grow-at must be two iterations a,b with 0 < a < b < --iterations "
            f"({args.iterations}), got {args.grow_at!r}"
        )
    return points


def stage_iterations(args: argparse.Namespace) -> tuple[int, int, int]:
    first, second = grow_points(args)
    return first, second - first, args.iterations - second


def validate(args: argparse.Namespace) -> None:
    """Every problem in the spec, before Ray starts."""
    common.require_positive(
        args,
        [
            "gf",
            "df",
            "final_gf",
            "final_df",
            "iterations",
            "controller_steps",
            "controller_batch",
            "round_steps",
            "n_critic",
            "g_batch",
            "d_batch",
            "candidates",
            "keep",
            "workers",
            "eval_samples",
            "max_images",
        ],
    )
    if args.iterations < 3:
        raise UsageError(f"--iterations must be at least 3 (one per stage), got {args.iterations}")
    grow_points(args)
    if args.keep > args.candidates:
        raise UsageError(f"--keep ({args.keep}) cannot exceed --candidates ({args.candidates})")
    if args.eval_samples < 10:
        raise UsageError(f"--eval-samples must be at least 10 (IS splits), got {args.eval_samples}")
    if not isinstance(args.reset_window, int) or args.reset_window < 0:
        raise UsageError(f"--reset-window must be a whole number >= 0, got {args.reset_window}")
    if not (math.isfinite(args.reset_var) and args.reset_var > 0):
        raise UsageError(f"--reset-var must be a number above 0, got {args.reset_var}")
    common.check_resources(args)


def new_controller(args: argparse.Namespace) -> ControllerSearch:
    """The controller search the options describe: one stage per cell, IS reward."""
    return ControllerSearch(
        "autogan",
        reward="is",
        steps=[n * args.controller_steps for n in stage_iterations(args)],
        batch_size=args.controller_batch,
        candidates=args.candidates,
        keep=args.keep,
        seed=args.seed,
    )


def sample_paths(search: ControllerSearch, n: int, seed: int) -> list[str]:
    """``n`` architectures from the controller's current policy for a shared round.

    Drawn like the search's own proposals (a kept prefix chosen uniformly, then the stage's
    cell), but from a generator of their own: the search's random state, and so its next
    proposals, stay what they would be without the round.
    """
    generator = torch.Generator().manual_seed(seed)
    cells = search.stages[search.stage]
    out = []
    for _ in range(n):
        prefix = None
        if search.kept:
            prefix = search.kept[int(torch.randint(len(search.kept), (1,), generator=generator))]
        rollout = search.controller.sample(generator, cells, prefix.state if prefix else None)
        sampled = tuple(
            tuple(gene.options[a] for gene, a in zip(search.space.cells[c], acts, strict=True))
            for c, acts in zip(cells, rollout.actions, strict=True)
        )
        chosen = (prefix.cells if prefix else ()) + sampled
        out.append(str(search.space.genotype([*chosen, *search.filler[len(chosen) :]])))
    return out


# ----- one iteration's controller steps as a Tune search --------------------------------------
def iteration_over(search: ControllerSearch, stage: int, until_step: int) -> bool:
    """Whether an iteration that began in ``stage`` and updates until ``until_step`` is over.

    The stage's last iteration runs on into the end-of-stage selection and ends when the
    controller has grown into the next stage (or finished).
    """
    if search.finished or search.stage != stage:
        return True
    return search.phase == "search" and search.step >= until_step


class IterationView:
    """A copy of the controller search that hands Tune exactly one iteration's proposals.

    The driver keeps the authoritative search and replays the iteration's results into it in
    proposal order. This view lives inside Tune's searcher (checkpointed with it), so
    ``Tuner.restore`` resumes the iteration; each config carries its proposal's key.
    """

    def __init__(
        self,
        search: ControllerSearch,
        until_step: int,
        to_trial: Callable[[dict[str, Any]], dict[str, Any]],
    ):
        self.search = copy.deepcopy(search)
        self.stage = search.stage
        self.until_step = until_step
        self.to_trial = to_trial
        self.metrics = search.metrics
        self.modes = search.modes

    @property
    def finished(self) -> bool:
        return iteration_over(self.search, self.stage, self.until_step)

    def ask(self) -> Suggestion | None:
        if self.finished:
            return None
        s = self.search.ask()
        if s is None:
            return None
        return Suggestion(s.key, {**self.to_trial(s.config), "proposal": s.key})

    def tell(self, key: str, result: dict | None) -> None:
        self.search.tell(key, result)

    def state_dict(self) -> dict[str, Any]:
        return {"search": self.search.state_dict(), "stage": self.stage, "until": self.until_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.search.load_state_dict(state["search"])
        self.stage, self.until_step = state["stage"], state["until"]


_: type[AskTell] = IterationView  # IterationView satisfies the searcher's protocol


def iteration_name(iteration: int) -> str:
    """The Tune experiment of an iteration's controller steps (under ``<out>/tune``)."""
    return f"iteration{iteration:03d}"


def trial_config(proposal: dict[str, Any], *, base: dict[str, Any], init_g: str) -> dict[str, Any]:
    """The Tune trial config for one proposal (module level: Tune pickles it)."""
    return {**base, **proposal, "g": proposal["genotype"], "init_g": init_g}


def score_candidate(config: dict[str, Any]) -> None:
    """The reward trial: the proposal's active cells with the round's shared weights, scored
    at the stage's resolution without any training (AutoGAN's reward needs no training, so
    this skips the discriminator, data and checkpoints a training trial would build). Its
    BatchNorm statistics are recomputed first: the shared ones are whatever architectures
    trained last left behind."""
    from ray import tune

    from raygan import metrics
    from raygan.trainable import device_for_trial, full_config, reference_for

    config = full_config(config)
    start = time.perf_counter()
    device = device_for_trial()
    generator = nn.build_generator(
        spaces.Genotype.parse(config["g"]),
        width=config["gf"],
        bottom_width=config["bottom_width"],
        n_cells=config["active_cells"],
    )
    shared = storage.load_torch(config["init_g"], map_location="cpu")
    nn.inherit(generator, scored_generator(shared)).to(device)
    nn.recalibrate_batch_norm(generator, seed=config["seed"])
    scores = metrics.evaluate(
        generator,
        reference=reference_for(config, generator.resolution),
        num_samples=config["eval_samples"],
        extractor=config["extractor"],
        device=device,
        inception_weights=config["inception_weights"],
        seed=config["seed"],
    )
    ok = all(math.isfinite(scores[k]) for k in ("is", "fid"))
    tune.report(
        {
            **scores,
            "eval_samples": scores["num_samples"],
            "g_params": nn.count_params(generator),
            "resolution": generator.resolution,
            "budget_steps": 0,
            "inherited_from": config["init_g"],
            "seed": config["seed"],
            "status": "ok" if ok else "failed",
            "wall_s": time.perf_counter() - start,
        }
    )


# ----- the driver -------------------------------------------------------------------------------
class AutoganSearch(common.Driver):
    """Iteration by iteration over the three MLAS stages, state saved at every boundary."""

    def settings(self) -> dict[str, Any]:
        return {name: getattr(self.args, name) for name in SETTINGS}

    @property
    def bottom_width(self) -> int:
        return common.bottom_width(self.args.dataset)

    def resolution(self, stage: int) -> int:
        """Stage ``s`` generates from its first ``s + 1`` cells: 8, 16, 32 px on CIFAR-10."""
        return self.bottom_width * 2 ** (stage + 1)

    def base_config(self) -> dict[str, Any]:
        a = self.args
        return {
            "d": D,
            "gf": a.gf,
            "df": a.df,
            "bottom_width": self.bottom_width,
            "dataset": a.dataset,
            "data_root": a.data_root,
            "seed": a.seed,
            "eval_samples": a.eval_samples,
            "extractor": a.extractor,
            "inception_weights": a.inception_weights,
        }

    def begin(self) -> None:
        """Load or set up the state; everything here runs before Ray starts."""
        if self.resume_or_start():
            saved = self.state["settings"]
            changed = [k for k, v in self.settings().items() if saved.get(k) != v]
            if changed:
                k = changed[0]
                raise UsageError(
                    f"--resume needs the options the search started with: "
                    f"--{k.replace('_', '-')} was {saved.get(k)!r}, now {getattr(self.args, k)!r}"
                )
            return
        self.state = {
            "settings": self.settings(),
            "controller": new_controller(self.args).state_dict(),
            "iteration": 0,
            "supernet": None,  # shared weights the next round continues from (None: fresh)
            "round": None,  # the current iteration's round, once trained
            "resets": [],
        }
        self.save()

    def run(self) -> None:
        from raygan import cluster

        self.begin()
        cluster.connect(self.args.address)
        self.prepare_metrics(self.base_config(), [self.resolution(s) for s in range(3)])
        search = new_controller(self.args)
        search.load_state_dict(self.state["controller"])
        while not search.finished:
            self.iterate(search)
        self.write_top(search)

    def iterate(self, search: ControllerSearch) -> None:
        """One search iteration: the shared round, then its controller steps as trials."""
        i, stage = self.state["iteration"], search.stage
        print(
            f"[autogan] iteration {i + 1}/{self.args.iterations}: stage {stage} "
            f"({self.resolution(stage)} px, cell {stage + 1})",
            flush=True,
        )
        shared = self.shared_round(search, i)
        rows = self.controller_steps(search, i, shared)
        if not any(r["status"] == "ok" for r in rows):
            # Something systemic (data, metrics, weights), not a bad architecture: stop before
            # anything is recorded, and drop the experiment so --resume scores it afresh.
            fs, path = storage.filesystem(storage.join(self.out, "tune", iteration_name(i)))
            fs.delete_dir(path)
            raise RuntimeError(
                f"no architecture of iteration {i + 1} could be scored ({rows[0]['error']}); "
                f"fix the cause and rerun with --resume"
            )
        common.append_once(self.out, rows)
        if shared["metrics"].get("collapsed"):
            self.state["resets"].append(i)
            self.state["supernet"] = None
            print(
                f"[autogan] dynamic reset after iteration {i + 1}: shared losses stalled "
                f"(variance G {shared['metrics']['g_loss_var']:.2e}, "
                f"D {shared['metrics']['d_loss_var']:.2e}); the next round starts a fresh G and D",
                flush=True,
            )
        else:
            self.state["supernet"] = shared["state"]
        self.state.update(iteration=i + 1, controller=search.state_dict(), round=None)
        self.save()
        rewards = [r["reward"] for r in rows if r["phase"] == "search"]
        if rewards:
            print(
                f"[autogan]   {len(rows)} architectures scored, mean search reward "
                f"{sum(rewards) / len(rewards):.3f}, best {max(rewards):.3f}",
                flush=True,
            )
        if search.stage != stage or search.finished:
            for rank, p in enumerate(search.kept, 1):
                print(f"[autogan]   stage {stage} kept #{rank}: {p.cells} reward {p.reward:.3f}")

    def shared_round(self, search: ControllerSearch, iteration: int) -> dict[str, Any]:
        """Train the shared GAN on architectures from the current policy (once per iteration)."""
        from raygan import cluster, supernet

        if self.state["round"] is not None:  # trained before an interruption
            return self.state["round"]
        a = self.args
        stage = search.stage
        seed = a.seed * 1000 + iteration
        spec = supernet.RoundSpec(
            g_space="autogan",
            d=D,
            paths=sample_paths(search, a.round_steps, seed),
            gf=a.gf,
            df=a.df,
            bottom_width=self.bottom_width,
            steps=a.round_steps,
            n_critic=a.n_critic,
            g_batch=a.g_batch,
            d_batch=a.d_batch,
            order="sequential",
            dataset=a.dataset,
            data_root=a.data_root,
            max_images=a.max_images,
            resolution=self.resolution(stage),
            n_cells=stage + 1,
            seed=seed,
            init=self.state["supernet"],
            checkpoint_every=max(1, a.round_steps // 4),
            collapse_window=a.reset_window,
            collapse_var=a.reset_var,
        )
        done = supernet.train_round(
            spec,
            name=f"round{iteration:03d}",
            storage_path=cluster.storage_uri(storage.join(self.out, "supernet")),
            workers=a.workers,
            use_gpu=a.gpus > 0,
            cpus_per_worker=a.cpus,
        )
        self.state["round"] = {"state": done.state, "metrics": done.metrics}
        self.save()
        return self.state["round"]

    def controller_steps(
        self, search: ControllerSearch, iteration: int, shared: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Score the iteration's proposals as Tune trials; replay them into ``search`` in
        proposal order; return one row per scored architecture."""
        from raygan.searchers.base import AskTellSearcher

        stage, until = search.stage, search.step + self.args.controller_steps
        to_trial = functools.partial(trial_config, base=self.base_config(), init_g=shared["state"])
        trials = common.fit_trials(
            score_candidate,
            lambda: AskTellSearcher(IterationView(search, until, to_trial)),
            out=self.out,
            name=iteration_name(iteration),
            args=self.args,
            reuse_actors=True,  # a reward trial takes about a second: less than a process start
            resume_errored=False,  # later proposals depend on what an errored trial was told
        )
        by_key = {t.config["proposal"]: t for t in trials}
        rows = []
        while not iteration_over(search, stage, until):
            batch = []
            while (proposal := search.ask()) is not None:
                batch.append(proposal)
            for proposal in batch:
                rows.append(self.tell(search, proposal, by_key.get(proposal.key), iteration))
            if batch[0].config["phase"] == "search":
                for row in rows[-len(batch) :]:
                    row["baseline"] = search.baseline
        self.mark_kept(search, stage, rows)
        metrics = shared["metrics"]
        for row in rows:
            row.update(
                reset=bool(metrics.get("collapsed")),
                round_g_loss=metrics.get("g_loss"),
                round_d_loss=metrics.get("d_loss"),
                round_g_loss_var=metrics.get("g_loss_var"),
                round_d_loss_var=metrics.get("d_loss_var"),
            )
        return rows

    def tell(
        self, search: ControllerSearch, proposal: Suggestion, trial: Any, iteration: int
    ) -> dict[str, Any]:
        """Tell ``search`` the trial's result; the trial's table row."""
        from raygan.trainable import row_from_trial

        if trial is None:  # Tune was stopped before it asked for this proposal
            raise KeyboardInterrupt
        if trial.config["g"] != proposal.config["genotype"]:
            raise RuntimeError(
                f"iteration {iteration}: the trial of proposal {proposal.key} scored "
                f"{trial.config['g']}, not {proposal.config['genotype']}: the Tune experiment "
                f"and the saved search differ"
            )
        ok = trial.status == "TERMINATED" and trial.last_result
        result = trial.last_result if ok else None
        search.tell(proposal.key, result)
        values = objectives_of(result, search.metrics)
        c = proposal.config
        return {
            **row_from_trial(trial, self.experiment, "autogan"),
            "stage": c["mlas_stage"],
            "generation": iteration,
            "step": c["controller_step"],
            "reward": values["is"] if values else search.penalty,
            "entropy": c["entropy"],
            "phase": c["phase"],
            "active_cells": c["active_cells"],
            "proposal": proposal.key,
        }

    @staticmethod
    def mark_kept(search: ControllerSearch, stage: int, rows: list[dict[str, Any]]) -> None:
        """Rank the selection rows whose prefixes the controller kept at the stage's end."""
        if search.stage == stage and not search.finished:
            return
        n = stage + 1
        for rank, prefix in enumerate(search.kept, 1):
            for row in rows:  # the first row with the prefix's best reward is the one kept
                cells = spaces.Genotype.parse(row["g_genotype"]).cells[:n]
                if row["phase"] == "select" and (cells, row["reward"]) == (
                    prefix.cells,
                    prefix.reward,
                ):
                    row["kept"] = rank
                    break

    def write_top(self, search: ControllerSearch) -> None:
        """The final top-k as genotype files at the published widths (``best.yaml`` = top 1)."""
        a = self.args
        d = spaces.Genotype.parse(D)
        written = []
        for rank, prefix in enumerate(search.kept, 1):
            g = search.space.genotype(prefix.cells)
            arch = spaces.Arch(g, d, a.final_gf, a.final_df, self.bottom_width)
            note = (
                f"AutoGAN top {rank} of {len(search.kept)}: reward (IS at "
                f"{self.resolution(LAST_STAGE)} px with the shared weights) {prefix.reward:.3f}\n"
                f"retrain: raygan train --genotype-file THIS_FILE (--width-scale for laptops)"
            )
            names = [f"top{rank}.yaml"] + (["best.yaml"] if rank == 1 else [])
            for name in names:
                spaces.write_arch_file(storage.join(self.out, name), arch, comment=note)
            written.append(f"top{rank}.yaml {g}")
        print("[autogan] final architectures:\n  " + "\n  ".join(written))


def run(args: argparse.Namespace) -> int:
    validate(args)
    common.check_dataset(args)
    return common.run_driver("autogan", AutoganSearch(args))


# ----- analysis ---------------------------------------------------------------------------------
def analyze(df: pd.DataFrame, out_dir: str) -> str:
    from raygan import plots

    df = df.join(results.extra(df).reindex(columns=["phase", "kept", "reset"]))
    df["reset"] = df["reset"].fillna(False).astype(bool)
    lines = []
    searched = df[df["phase"] == "search"]
    for stage, rows in df.groupby("stage"):
        s = rows[rows["phase"] == "search"]
        per_iteration = s.groupby("generation")["reward"].mean()
        resets = sorted(int(g) + 1 for g in rows.loc[rows["reset"], "generation"].unique())
        n = rows["generation"].nunique()
        lines.append(
            f"AutoGAN stage {int(stage)}: {len(rows)} architectures scored over {n} "
            f"iteration{'s' * (n != 1)}, {(rows['status'] != 'ok').sum()} failed"
            + (f", dynamic reset after iteration(s) {resets}" if resets else "")
        )
        if not per_iteration.empty:
            lines.append(
                "  mean search reward per iteration: "
                + ", ".join(f"{int(g) + 1}: {r:.3f}" for g, r in per_iteration.items())
            )
        kept = rows[rows["kept"].notna()].sort_values("kept")
        if not kept.empty:
            label = "final top-k" if int(stage) == LAST_STAGE else "kept prefixes"
            lines.append(f"  {label} (best first):")
            show = kept[["kept", "g_genotype", "reward", "is", "fid"]].astype({"kept": int})
            lines.append(show.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    curve = searched.groupby(["stage", "step"], as_index=False)["reward"].mean()
    written = plots.line(
        curve,
        "step",
        "reward",
        os.path.join(out_dir, "reward_per_stage.png"),
        group="stage",
        title="AutoGAN: mean reward per controller step, by MLAS stage",
    )
    lines += [f"plot: {p}" for p in written]
    return "\n".join(lines)
