"""AutoGAN (Gong et al., ICCV 2019): an RL controller grows the generator cell by cell, on Ray.

An iteration is a boundary of the driver loop (METHODS.md section 1):

1. **Shared round** (:func:`raygan.supernet.train_round`): the supernet against AutoGAN-D, one
   controller-sampled architecture per generator step, the same on every DDP worker (sampled
   before the job from the current policy; the paper draws one per D minibatch).
2. **Controller steps**, one Tune experiment: each step samples ``controller_batch``
   architectures, scores each as a zero-step trial (its active cells inherit the round's
   weights; the reward is IS at the stage's resolution) and makes one REINFORCE update. The
   paper's batch is 1; a larger one scores in parallel and averages the policy gradients.

Multi-level search: stage ``s`` searches cell ``s + 1`` at ``bottom_width * 2**(s + 1)`` px;
its last iteration scores ``candidates`` end-of-stage samples and keeps the best ``keep``
prefixes, which the next stage continues from. Shared weights carry over between iterations
and stages, except after a dynamic reset (a round whose last ``reset_window`` losses vary by
less than ``reset_var`` ends early; the next round re-creates G, D and their optimisers).

Rows: one per scored architecture (``generation`` = iteration, ``step`` = controller step,
``reward`` = the ``--reward`` score (IS, the paper's, by default) or the failed trial's
penalty, ``baseline`` after that step's update; ``extra`` has ``phase``, ``kept`` and the
round's losses). The final top-k are ``top1.yaml`` ..
``top<k>.yaml`` (``best.yaml`` = top 1) with AutoGAN-D at the published widths.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any

from raygan import spaces, storage
from raygan.errors import UsageError
from raygan.searchers.asktell import Suggestion
from raygan.searchers.controller import ControllerSearch
from raygan.spec import Spec
from raygan.strategies import common, options

HELP = "AutoGAN: RL controller over a shared GAN, grown cell by cell (8, 16, 32 px)"

D = "autogan_d:"
"""AutoGAN-D, the fixed discriminator of the search and of the written genotype files."""

LAST_STAGE = len(spaces.get("autogan").cells) - 1
"""MLAS searches one cell per stage: stages 0, 1, 2."""


OPTIONS = options.method_options("autogan")


def inverse_intra_fid(values: dict[str, float]) -> float:
    """A reward in (0, 1] that rises as the intra-FID falls (100 / (100 + intra-FID)): above
    the failed trial's 0 for every working architecture, as the paper's IS (>= 1) is."""
    return 100.0 / (100.0 + values["intra_fid"])


REWARDS: dict[str, dict[str, Any]] = {
    "is": {"reward": "is"},  # the paper's
    "class_accuracy": {"reward": "class_accuracy", "penalty": 0.0},
    "intra_fid": {"reward": inverse_intra_fid, "metrics": ("intra_fid",), "penalty": 0.0},
}
"""``--reward``: how a proposal's scores become the controller's reward (ControllerSearch's
``reward``, ``metrics`` and ``penalty``); the last two need ``--conditional``."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    options.add_options(p, OPTIONS)


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


def validate(args: Spec) -> None:
    """Every problem in the spec, before Ray starts."""
    options.validate(args, OPTIONS)
    grow_points(args)
    options.check_scores(args, "--reward", args.reward, [args.reward])
    if options.layout(args, "autogan").space != "autogan":
        raise UsageError(
            f"--resolution {options.resolution(args)}: AutoGAN's multi-level search grows "
            "three cells, up to 64 px"
        )
    if args.keep > args.candidates:
        raise UsageError(f"--keep ({args.keep}) cannot exceed --candidates ({args.candidates})")


def new_controller(args: argparse.Namespace) -> ControllerSearch:
    """The controller search the options describe: one stage per cell, ``--reward``."""
    return ControllerSearch(
        "autogan",
        **REWARDS[args.reward],
        steps=[n * args.controller_steps for n in stage_iterations(args)],
        batch_size=args.controller_batch,
        candidates=args.candidates,
        keep=args.keep,
        seed=args.seed,
    )


# ----- the driver -------------------------------------------------------------------------------
def iteration_over(search: ControllerSearch, *, stage: int, until_step: int) -> bool:
    """Whether an iteration that began in ``stage`` and updates until ``until_step`` is over.

    The stage's last iteration runs on into the end-of-stage selection and ends when the
    controller has grown into the next stage (or finished).
    """
    if search.finished or search.stage != stage:
        return True
    return search.phase == "search" and search.step >= until_step


def iteration_name(iteration: int) -> str:
    """The Tune experiment of an iteration's controller steps (under ``<out>/tune``)."""
    return f"iteration{iteration:03d}"


def trial_config(proposal: dict[str, Any], *, base: dict[str, Any], init_g: str) -> dict[str, Any]:
    """The reward trial of one proposal: zero steps, so the proposal's active cells are scored
    with the round's shared weights as they are, at the stage's resolution (their BatchNorm
    statistics recomputed first)."""
    return {
        **base,
        **proposal,
        "g": proposal["genotype"],
        "n_cells": proposal["active_cells"],
        "steps": 0,
        "init_g": init_g,
    }


class AutoganSearch(common.Driver):
    """Iteration by iteration over the three MLAS stages: an iteration is a boundary."""

    def fresh_state(self) -> dict[str, Any]:
        return {
            "controller": new_controller(self.args).state_dict(),
            "iteration": 0,
            "supernet": None,  # shared weights the next round continues from (None: fresh)
            "resets": [],
        }

    G_FAMILY = "autogan"

    @property
    def bottom_width(self) -> int:
        return self.layout.bottom_width

    def resolution(self, stage: int) -> int:
        """Stage ``s`` generates from its first ``s + 1`` cells: 8, 16, 32 px on CIFAR-10
        (16, 32, 64 at 64 px)."""
        return self.bottom_width * 2 ** (stage + 1)

    def references(self) -> list[Any]:
        from raygan.trainable import reference_for

        return [reference_for(self.base_config(), self.resolution(s)) for s in range(3)]

    def search(self) -> ControllerSearch:
        search = new_controller(self.args)
        search.load_state_dict(self.state["controller"])
        return search

    @property
    def finished(self) -> bool:
        return self.search().finished

    def boundary(self) -> str:
        i, stage = self.state["iteration"], self.search().stage
        print(
            f"[autogan] iteration {i + 1}/{self.args.iterations}: stage {stage} "
            f"({self.resolution(stage)} px, cell {stage + 1})",
            flush=True,
        )
        return iteration_name(i)

    def over(self) -> Callable[[ControllerSearch], bool]:
        search = self.search()
        until = search.step + self.args.controller_steps
        return functools.partial(iteration_over, stage=search.stage, until_step=until)

    def base_config(self) -> dict[str, Any]:
        return {**self.trial_settings(), "d": D}

    def trial_config(self, shared: dict[str, Any]) -> Callable[[dict[str, Any]], dict]:
        return functools.partial(trial_config, base=self.base_config(), init_g=shared["state"])

    def shared_round(self) -> dict[str, Any]:
        """Train the shared GAN on architectures from the current policy."""
        from raygan import supernet

        a, search, iteration = self.args, self.search(), self.state["iteration"]
        seed = a.seed * 1000 + iteration
        spec = supernet.RoundSpec(
            g_space="autogan",
            d=D,
            paths=search.sample_paths(a.round_steps, seed),
            **self.data_settings(),
            steps=a.round_steps,
            n_critic=a.n_critic,
            g_batch=a.g_batch,
            d_batch=a.d_batch,
            order="sequential",
            resolution=self.resolution(search.stage),
            n_cells=search.stage + 1,
            d_blocks=search.stage + 1,  # D grows with the stage, as the authors' shared GAN
            seed=seed,
            init=self.state["supernet"],
            checkpoint_every=max(1, a.round_steps // 4),
            collapse_window=a.reset_window,
            collapse_var=a.reset_var,
        )
        return self.train_round(spec, f"round{iteration:03d}", "supernet")

    def columns(self, proposal: Suggestion, outcome: dict, search: ControllerSearch) -> dict:
        """The controller's view of the proposal: its reward (the penalty for a failed
        trial), entropy, phase, and the baseline after its batch's update."""
        c = proposal.config
        reward = search.reward_of(None if outcome["error"] else outcome["metrics"])
        return {
            "stage": c["mlas_stage"],
            "generation": self.state["iteration"],
            "step": c["controller_step"],
            "reward": reward,
            "entropy": c["entropy"],
            "baseline": search.baseline if c["phase"] == "search" else None,
            "phase": c["phase"],
            "active_cells": c["active_cells"],
            "proposal": proposal.key,
        }

    def observe(self, rows: list[dict], shared: dict[str, Any], search: ControllerSearch) -> None:
        """The round's losses on every row; the kept prefixes marked; dynamic reset."""
        stage, metrics, i = rows[0]["stage"], shared["metrics"], self.state["iteration"]
        mark_kept(search, stage, rows)
        for row in rows:
            row.update(
                reset=bool(metrics.get("collapsed")),
                **{f"round_{k}": metrics.get(k) for k in ROUND_METRICS},
            )
        self.state.update(iteration=i + 1, controller=search.state_dict())
        self.state["supernet"] = None if metrics.get("collapsed") else shared["state"]
        if metrics.get("collapsed"):
            self.state["resets"].append(i)
            print(
                f"[autogan] dynamic reset after iteration {i + 1}: shared losses stalled "
                f"(variance G {metrics['g_loss_var']:.2e}, D {metrics['d_loss_var']:.2e}); "
                f"the next round starts a fresh G and D",
                flush=True,
            )
        report_iteration(rows, search, stage)

    def finish(self) -> None:
        """The final top-k as genotype files at the published widths (``best.yaml`` = top 1)."""
        a, search = self.args, self.search()
        d = spaces.Genotype.parse(D)
        written = []
        for rank, prefix in enumerate(search.kept, 1):
            g = search.space.genotype(prefix.cells)
            arch = spaces.Arch(g, d, a.final_gf, a.final_df, self.bottom_width)
            note = (
                f"AutoGAN top {rank} of {len(search.kept)}: reward ({a.reward} at "
                f"{self.resolution(LAST_STAGE)} px with the shared weights) {prefix.reward:.3f}\n"
                f"retrain: raygan train --genotype-file THIS_FILE (--width-scale for laptops)"
            )
            names = [f"top{rank}.yaml"] + (["best.yaml"] if rank == 1 else [])
            for name in names:
                spaces.write_arch_file(storage.join(self.out, name), arch, comment=note)
            written.append(f"top{rank}.yaml {g}")
        print("[autogan] final architectures:\n  " + "\n  ".join(written))


ROUND_METRICS = ("g_loss", "d_loss", "g_loss_var", "d_loss_var")
"""What every row of an iteration keeps of its shared round (``extra``: ``round_<name>``)."""


def mark_kept(search: ControllerSearch, stage: int, rows: list[dict[str, Any]]) -> None:
    """Rank the selection rows whose prefixes the controller kept at the stage's end."""
    if search.stage == stage and not search.finished:
        return
    n = stage + 1
    for rank, prefix in enumerate(search.kept, 1):
        for row in rows:  # the first row with the prefix's best reward is the one kept
            cells = spaces.Genotype.parse(row["g_genotype"]).cells[:n]
            if row["phase"] == "select" and (cells, row["reward"]) == (prefix.cells, prefix.reward):
                row["kept"] = rank
                break


def report_iteration(rows: list[dict[str, Any]], search: ControllerSearch, stage: int) -> None:
    """The iteration's rewards, and at a stage's end the prefixes kept."""
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


def estimate(args: Spec) -> list[Any]:
    """Each MLAS stage's FLOPs (:mod:`raygan.estimate`): its iterations' shared rounds at the
    stage's cells and D blocks, and the zero-step trials that score rewards and candidates;
    averaged over architectures drawn uniformly (the controller's policy at its start)."""
    from raygan import estimate as est
    from raygan.train import TrainConfig

    a, d = args, spaces.Genotype.parse(D)
    bw = options.layout(args, "autogan").bottom_width
    cfg = TrainConfig(n_critic=a.n_critic, g_batch=a.g_batch, d_batch=a.d_batch)
    extractor, drawn = est.extractor_for(a), est.sampled("autogan", a.seed)
    scored = a.eval_samples + 64 + est.RECALIBRATION_SAMPLES  # a reward trial's G forwards
    stages = []
    for stage, iterations in enumerate(stage_iterations(a)):
        cells = {"n_cells": stage + 1, "d_blocks": stage + 1}
        pairs = [est.Pair(g, d, a.gf, a.df, bw, cfg, **cells) for g in drawn]
        train = iterations * a.round_steps * est.mean_flops(pairs)
        trials = iterations * a.controller_steps * a.controller_batch + a.candidates
        per_sample = est.mean_flops(pairs, lambda p: est.sample_flops(p, extractor))
        name = f"stage {stage} ({bw * 2 ** (stage + 1)} px)"
        stages.append(est.Stage(name, train, trials * scored * per_sample, pairs[0]))
    return stages


def run(args: Spec) -> int:
    """Search with ``args``, a spec that :func:`validate` passed."""
    return common.run_driver("autogan", AutoganSearch(args, "autogan"))
