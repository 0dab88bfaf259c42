"""EAGAN (Ying et al., ECCV 2022): two-stage NSGA-II search of G, then D, on Ray.

Stage 1 (many-to-one): a population of generators shares one supernet's weights, trained
against one fixed discriminator. Each generation: a shared-weights round as a Ray Train job
(every minibatch trains one member's path, drawn uniformly), then every member is scored in
parallel as a Tune trial that inherits its path's weights (optionally fine-tuning), then
NSGA-II keeps P/2 and refills with children. Objectives: IS (max), FID (min), G params (min).

Stage 2 (one-to-one with weight resetting): P copies of the best generator G*, starting from
its stage-1 weights, each paired with a candidate discriminator. Each Tune trial trains its
own pair for the round's budget; after every generation the best pair's G weights become
every next trial's starting G. A surviving candidate D continues from its own weights; a new
one starts fresh. Objectives: IS (max), FID (min), D params (min).

Parallel execution departs from the paper's sequential schedule in two places (README says
so too): the paper interleaves all pairs batch by batch within a round, here each pair trains
its share of the round's budget in its own trial at the same time; and stage-1 candidates are
scored by independent trials after the shared round instead of inside it.

Final pick per stage: in the last generation's Pareto front (rank 0, status ok), the member
with the lowest FID; ties go to the higher IS, then fewer parameters. It is written as a
genotype file (``stage1_best.yaml``, ``stage2_best.yaml`` = ``best.yaml``) at the published
widths, which ``raygan train --genotype-file`` accepts.

Resuming: the driver saves its state (stage, generation, NSGA-II population, checkpoints) at
every generation boundary; a generation interrupted mid-way is resumed with ``Tuner.restore``,
which keeps finished trials and re-runs only unfinished ones.
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from raygan import results, spaces, storage
from raygan.errors import UsageError
from raygan.searchers.base import AskTell, Suggestion
from raygan.searchers.nsga2 import NSGA2
from raygan.strategies import common

HELP = "EAGAN: two-stage NSGA-II evolution of G (shared supernet), then D (weight resetting)"

# Budgets are in generator steps. The paper counts epochs of CIFAR-10 (50,000 images): one
# epoch is 50,000 / d_batch discriminator steps, i.e. 50,000 / (d_batch * n_critic) G steps.
# A stage-2 round interleaves all P pairs batch by batch, so each pair gets 1/P of its batches:
# the presets give the round's budget (``s2_round_steps``) and each pair trains its share.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        # Sized by measurement (bench/RESULTS.md): under 10 min on two idle cores. Stage 1
        # departs from the paper's n_critic 1 and D lr 4e-5, which are meant for 50 warm-up
        # epochs: in a few hundred steps they leave every path collapsed (one image for every
        # noise vector), so here D trains as in the paper's stage 2. It has no separate
        # warm-up: a generator this small stops improving after 300-500 steps, so the 450
        # shared steps are spread evenly over the three rounds and each generation is scored
        # after 150 more, while the supernet still learns (a 150-step warm-up left the later
        # rounds on that plateau). Stage 2 departs from the paper's lr 2e-4 (G and D alike):
        # G*, trained against AutoGAN-D, gets worse within 20-80 steps under a new searched D
        # at width 16, and weight resetting carries it on; 2e-5 for both slows that most
        # (bench/eagan_stage2_drift.py). P 6 rather than 4: stage 2's pairs differ by little
        # more than noise, and at P 6 its front rose on more seeds.
        "population": 6,
        "generations": 3,
        "gf": 16,
        "df": 16,
        "final_gf": 256,
        "final_df": 128,
        "g_batch": 32,
        "d_batch": 16,
        "warmup_steps": 0,
        "round_steps": 150,
        "finetune_steps": 0,
        "s1_n_critic": 5,
        "s1_g_lr": 2e-4,
        "s1_d_lr": 2e-4,
        "s2_round_steps": 120,  # 20 per pair at P 6
        "s2_n_critic": 5,
        "s2_lr": 2e-5,
        "eval_samples": 500,
        "max_images": 4000,
        "workers": 2,
        "dataset": "shapes",
        "keep_weights": "all",
    },
    "paper": {
        "population": 32,
        "generations": 18,
        "gf": 256,
        "df": 128,
        "final_gf": 256,
        "final_df": 128,
        "g_batch": 128,
        "d_batch": 64,
        "warmup_steps": 50 * 781,
        "round_steps": 10 * 781,
        "finetune_steps": 0,
        "s1_n_critic": 1,
        "s1_g_lr": 2e-4,
        "s1_d_lr": 4e-5,
        "s2_round_steps": 10 * 156,  # 10 epochs at n_critic 5
        "s2_n_critic": 5,
        "s2_lr": 2e-4,
        "eval_samples": 5000,
        "max_images": 50_000,
        "workers": 1,
        "dataset": "cifar10",
        # every trial's and round's weights would take about 130 GB (README: Disk)
        "keep_weights": "last",
    },
}

STAGE1_D = "autogan_d:"
"""Stage 1's single fixed discriminator: the paper's AutoGAN-D (not the reference code's
small conv/BN D, METHODS.md)."""

OBJECTIVES = {1: ("is", "fid", "g_params"), 2: ("is", "fid", "d_params")}
MODES = ("max", "min", "min")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--population", type=int, help="P, individuals per generation (even)")
    p.add_argument("--generations", type=int, help="generations per stage (the first included)")
    p.add_argument("--gf", type=int, help="generator width during search")
    p.add_argument("--df", type=int, help="discriminator width during search")
    p.add_argument("--warmup-steps", type=int, help="stage-1 supernet warm-up (G steps)")
    p.add_argument("--round-steps", type=int, help="stage-1 supernet steps per generation")
    p.add_argument("--finetune-steps", type=int, help="steps each stage-1 candidate fine-tunes")
    p.add_argument(
        "--s2-steps",
        type=int,
        help="stage-2 steps each pair trains per generation (default: the preset's round "
        "budget shared by the P pairs, as in the paper)",
    )
    p.add_argument("--workers", type=int, help="Ray Train workers for the supernet rounds")
    p.add_argument("--g-batch", type=int, help="generator batch size")
    p.add_argument("--d-batch", type=int, help="discriminator batch size (real images)")
    p.add_argument(
        "--keep-weights",
        choices=["all", "last"],
        help="trained weights kept on disk: 'all' (every trial and supernet round), or 'last' "
        "(each stage's last generation and the last supernet round; older ones are deleted "
        "once nothing reads them; the table keeps every row). Quick: all; paper: last",
    )
    p.add_argument(
        "--stages",
        default="1,2",
        choices=["1,2", "1"],
        help="run both stages (default) or stage 1 only",
    )


def stage2_steps(args: argparse.Namespace) -> int:
    """Steps each stage-2 pair trains per generation: ``--s2-steps``, else the round's budget
    shared by the P pairs (the paper interleaves all pairs within one round)."""
    if args.s2_steps is not None:
        return args.s2_steps
    return args.s2_round_steps // args.population


def validate(args: argparse.Namespace) -> None:
    """Every problem in the spec, before Ray starts."""
    common.require_positive(
        args,
        [
            "population",
            "generations",
            "gf",
            "df",
            "g_batch",
            "d_batch",
            "round_steps",
            "workers",
            "eval_samples",
            "max_images",
        ],
    )
    for name in ("warmup_steps", "finetune_steps"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 0")
    if args.population < 4 or args.population % 2:
        raise UsageError(f"--population must be even and at least 4, got {args.population}")
    if (steps := stage2_steps(args)) < 1:
        shared = f" ({args.s2_round_steps} round steps / {args.population} pairs)"
        raise UsageError(
            f"--s2-steps must be a whole number >= 1, got {steps}"
            + ("" if args.s2_steps is not None else shared)
        )
    common.check_resources(args)


# ----- one generation as a Tune search --------------------------------------------------------
class GenerationView:
    """An NSGA-II copy that hands Tune exactly one generation, as trial configs.

    The driver keeps the authoritative NSGA-II and tells it from the generation's results in
    individual order (deterministic whatever order trials finished in). This view lives inside
    Tune's searcher (checkpointed with it), so ``Tuner.restore`` resumes the generation.
    """

    def __init__(self, algorithm: NSGA2, to_trial: Callable[[dict[str, Any]], dict[str, Any]]):
        self.algorithm = copy.deepcopy(algorithm)
        self.generation = algorithm.generation
        self.to_trial = to_trial
        self.metrics = algorithm.metrics
        self.modes = algorithm.modes

    @property
    def finished(self) -> bool:
        return self.algorithm.finished or self.algorithm.generation != self.generation

    def ask(self) -> Suggestion | None:
        if self.finished:
            return None
        s = self.algorithm.ask()
        if s is None:
            return None
        return Suggestion(s.key, {**self.to_trial(s.config), "nsga2_key": s.key})

    def tell(self, key: str, result: dict | None) -> None:
        self.algorithm.tell(key, result)

    def state_dict(self) -> dict[str, Any]:
        return {"algorithm": self.algorithm.state_dict(), "generation": self.generation}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.algorithm.load_state_dict(state["algorithm"])
        self.generation = state["generation"]


_: type[AskTell] = GenerationView  # GenerationView satisfies the searcher's protocol


def trial_config(
    individual: dict[str, Any],
    *,
    base: dict[str, Any],
    stage: int,
    init_g: str | None,
    init_d: dict[int, str],
) -> dict[str, Any]:
    """The Tune trial config for one NSGA-II individual (module level: Tune pickles it)."""
    ident = individual["individual"]
    genotype = individual["genotype"]
    config = dict(base)
    if stage == 1:
        config.update(g=genotype, init_g=init_g, init_d=init_g)
    else:
        config.update(d=genotype, init_g=init_g, init_d=init_d.get(ident))
    config["row"] = {
        "stage": stage,
        "generation": individual["generation"],
        "individual": ident,
        "parents": list(individual.get("parents") or []),
    }
    return config


def supernet_run_name(generation: int) -> str:
    """The Ray Train run (a folder under ``<out>/supernet``) of one stage-1 round."""
    return f"supernet-g{generation}"


# ----- the driver -------------------------------------------------------------------------------
class EaganSearch(common.Driver):
    """Both stages, generation by generation, with state saved at every boundary."""

    # -- settings
    def base_config(self, stage: int) -> dict[str, Any]:
        a = self.args
        s1 = stage == 1
        return {
            "gf": a.gf,
            "df": a.df,
            "bottom_width": self.bottom_width,
            "dataset": a.dataset,
            "data_root": a.data_root,
            "max_images": a.max_images,
            "g_batch": a.g_batch,
            "d_batch": a.d_batch,
            "steps": a.finetune_steps if s1 else stage2_steps(a),
            "n_critic": a.s1_n_critic if s1 else a.s2_n_critic,
            "g_lr": a.s1_g_lr if s1 else a.s2_lr,
            "d_lr": a.s1_d_lr if s1 else a.s2_lr,
            "seed": a.seed,
            "eval_samples": a.eval_samples,
            "extractor": a.extractor,
            "inception_weights": a.inception_weights,
            "g": self.state.get("g_star"),
            "d": STAGE1_D,
        }

    @property
    def bottom_width(self) -> int:
        return common.bottom_width(self.args.dataset)

    def new_algorithm(self, stage: int) -> NSGA2:
        return NSGA2(
            "nas_cell_g" if stage == 1 else "eagan_d",
            population_size=self.args.population,
            generations=self.args.generations,
            metrics=OBJECTIVES[stage],
            modes=MODES,
            seed=self.args.seed + stage,
            reevaluate_parents=True,
        )

    # -- the steps
    def run(self) -> None:
        from raygan import cluster

        if not self.resume_or_start():
            self.state = {
                "stage": 1,
                "algorithm": None,
                "supernet": None,
                "g_star": None,
                "g_reset": None,
                "d_weights": {},
                "done": False,
            }
        cluster.connect(self.args.address)
        self.prepare_metrics(self.base_config(1), [8 * self.bottom_width])
        stages = [int(s) for s in self.args.stages.split(",")]
        while not self.state["done"]:
            stage = self.state["stage"]
            self.run_stage(stage)
            if stage == 1 and 2 in stages:
                self.begin_stage2()
            else:
                self.state["done"] = True
            self.save()

    def run_stage(self, stage: int) -> None:
        if self.state["algorithm"] is None:
            self.state["algorithm"] = self.new_algorithm(stage).state_dict()
            self.save()
        algorithm = self.new_algorithm(stage)
        algorithm.load_state_dict(self.state["algorithm"])
        while not algorithm.finished:
            generation = algorithm.generation
            total = self.args.generations
            print(f"[eagan] stage {stage}: generation {generation} ({generation + 1} of {total})")
            if stage == 1:
                self.supernet_round(algorithm, generation)
            rows = self.score_generation(algorithm, stage, generation)
            common.append_once(self.out, rows)
            if stage == 2:
                self.reset_weights(rows)
            self.state["algorithm"] = algorithm.state_dict()
            self.save()
            self.prune_weights(stage, generation)
        self.write_best(stage)

    def supernet_round(self, algorithm: NSGA2, generation: int) -> None:
        from raygan import supernet

        a = self.args
        key = supernet_run_name(generation)
        if self.state.get("supernet_done") == key:
            return
        members = [ind["genotype"] for ind in algorithm.population()]
        steps = a.round_steps + (a.warmup_steps if generation == 0 else 0)
        spec = supernet.RoundSpec(
            g_space="nas_cell_g",
            d=STAGE1_D,
            paths=members,
            gf=a.gf,
            df=a.df,
            bottom_width=self.bottom_width,
            steps=steps,
            n_critic=a.s1_n_critic,
            g_batch=a.g_batch,
            d_batch=a.d_batch,
            g_lr=a.s1_g_lr,
            d_lr=a.s1_d_lr,
            dataset=a.dataset,
            data_root=a.data_root,
            max_images=a.max_images,
            seed=a.seed * 1000 + generation,
            init=self.state["supernet"],
            checkpoint_every=max(1, steps // 4),
        )
        from raygan import cluster

        self.state["supernet"] = supernet.run_round(
            spec,
            name=key,
            storage_path=cluster.storage_uri(storage.join(self.out, "supernet")),
            workers=a.workers,
            use_gpu=a.gpus > 0,
            cpus_per_worker=a.cpus,
        )
        self.state["supernet_done"] = key
        self.save()

    def score_generation(self, algorithm: NSGA2, stage: int, generation: int) -> list[dict]:
        """Score every member as a Tune trial; tell NSGA-II; return the generation's rows."""
        from raygan.searchers.base import AskTellSearcher
        from raygan.trainable import row_from_trial, train_pair

        init_g = self.state["supernet"] if stage == 1 else self.state["g_reset"]
        to_trial = functools.partial(
            trial_config,
            base=self.base_config(stage),
            stage=stage,
            init_g=init_g,
            init_d=self.state["d_weights"],
        )
        found = common.fit_trials(
            train_pair,
            lambda: AskTellSearcher(GenerationView(algorithm, to_trial)),
            out=self.out,
            name=f"stage{stage}-gen{generation}",
            args=self.args,
            reuse_actors=True,
        )
        trials = {t.config["nsga2_key"]: t for t in found}
        proposals = []
        while (proposal := algorithm.ask()) is not None:
            proposals.append(proposal)
        for proposal in proposals:  # in individual order: deterministic selection
            trial = trials.get(proposal.key)
            ok = trial is not None and trial.status == "TERMINATED" and trial.last_result
            algorithm.tell(proposal.key, trial.last_result if ok else None)
        history = {h["individual"]: h for h in algorithm.history() if h["generation"] == generation}
        rows = []
        for trial in trials.values():
            row = row_from_trial(trial, self.experiment, "eagan")
            h = history[row["individual"]]
            row.update(rank=h.get("rank"), crowding=h.get("crowding"))
            rows.append(row)
        return sorted(rows, key=lambda r: r["individual"])

    def prune_weights(self, stage: int, generation: int) -> None:
        """``--keep-weights last``: delete the weights no later step reads, i.e. this stage's
        trials of generations before ``generation`` (stage 2 resets from the last generation
        only) and the supernet rounds before ``generation``'s (each round starts from the
        previous one; stage 2 from the last). Called once the saved state no longer points at
        them, so a resume never needs them; each call deletes everything older again, which
        finishes a prune that a crash cut short."""
        if self.args.keep_weights != "last":
            return
        if stage == 1:
            for older in range(generation):
                storage.delete(storage.join(self.out, "supernet", supernet_run_name(older)))
        from raygan.trainable import STATE_FILE

        df = results.load(self.out)
        done = df[(df["stage"] == stage) & (df["generation"] < generation)]
        for checkpoint in done["checkpoint"].dropna():
            storage.delete(storage.join(checkpoint, STATE_FILE))

    def reset_weights(self, rows: list[dict]) -> None:
        """Weight resetting: the best pair's G starts every next trial; Ds keep their own."""
        ok = [r for r in rows if r["status"] == "ok" and r["checkpoint"]]
        if not ok:
            raise RuntimeError("every stage-2 trial of this generation failed; see the table")
        best = pick_best(pd.DataFrame(ok), OBJECTIVES[2])
        self.state["g_reset"] = storage.join(best["checkpoint"], "state.pt")
        self.state["d_weights"] = {
            r["individual"]: storage.join(r["checkpoint"], "state.pt") for r in ok
        }

    def begin_stage2(self) -> None:
        """G* = stage 1's pick, starting from its stage-1 (supernet) weights."""
        self.state.update(stage=2, algorithm=None, g_reset=self.state["supernet"], d_weights={})
        self.save()

    def write_best(self, stage: int) -> None:
        df = results.load(self.out)
        df = df[df["stage"] == stage]
        last = df[df["generation"] == df["generation"].max()]
        front = last[(last["rank"] == 0) & (last["status"] == "ok")]
        if front.empty:
            raise RuntimeError(f"stage {stage} ended with no successful individual")
        best = pick_best(front, OBJECTIVES[stage])
        g = spaces.Genotype.parse(best["g_genotype"])
        d = spaces.Genotype.parse(best["d_genotype"])
        if stage == 1:
            self.state["g_star"] = str(g)
        arch = spaces.Arch(g, d, self.args.final_gf, self.args.final_df, self.bottom_width)
        note = (
            f"EAGAN stage {stage} pick: lowest FID on the last generation's Pareto front\n"
            f"IS {best['is']:.3f}, FID {best['fid']:.3f}, trial {best['trial_id']}\n"
            f"retrain: raygan train --genotype-file THIS_FILE (--width-scale for laptops)"
        )
        names = ["stage1_best.yaml"] if stage == 1 else ["stage2_best.yaml", "best.yaml"]
        for name in names:
            spaces.write_arch_file(storage.join(self.out, name), arch, comment=note)
        print(f"[eagan] stage {stage} pick: {g} / {d} -> {storage.join(self.out, names[-1])}")


def pick_best(front: pd.DataFrame, objectives: tuple[str, ...]) -> pd.Series:
    """The documented rule: lowest FID, then highest IS, then fewest parameters."""
    ordered = front.assign(_neg_is=-front["is"]).sort_values(
        ["fid", "_neg_is", objectives[2]], kind="stable"
    )
    return ordered.iloc[0]


def run(args: argparse.Namespace) -> int:
    validate(args)
    common.check_dataset(args)
    return common.run_driver("eagan", EaganSearch(args))


# ----- analysis ---------------------------------------------------------------------------------
def hypervolume_by_generation(df: pd.DataFrame, stage: int) -> pd.DataFrame:
    """Hypervolume of each generation's front, against one reference point per stage."""
    from raygan.pareto import hypervolume, pareto_front

    objectives = OBJECTIVES[stage]
    rows = df[(df["stage"] == stage) & (df["status"] == "ok")].dropna(subset=list(objectives))
    if rows.empty:
        return pd.DataFrame(columns=["generation", "hypervolume", "front_size"])
    signs = np.array([-1.0 if m == "max" else 1.0 for m in MODES])
    F = rows[list(objectives)].to_numpy(float) * signs
    lo, hi = F.min(axis=0), F.max(axis=0)
    scale = np.where(hi > lo, hi - lo, 1.0)
    ref = np.full(len(objectives), 1.1)  # normalised worst + 10%
    out = []
    for generation, group in rows.groupby("generation"):
        front = pareto_front(group, dict(zip(objectives, MODES, strict=True)))
        G = (front[list(objectives)].to_numpy(float) * signs - lo) / scale
        out.append(
            {
                "generation": int(generation),
                "hypervolume": hypervolume(G, ref),
                "front_size": len(front),
            }
        )
    return pd.DataFrame(out)


def analyze(df: pd.DataFrame, out_dir: str) -> str:
    from raygan import plots
    from raygan.pareto import pareto_front

    lines = []
    for stage in sorted(int(s) for s in df["stage"].dropna().unique()):
        objectives = OBJECTIVES[stage]
        rows = df[df["stage"] == stage]
        last = rows[rows["generation"] == rows["generation"].max()]
        front = pareto_front(last, dict(zip(objectives, MODES, strict=True))).sort_values("fid")
        hv = hypervolume_by_generation(df, stage)
        searched = "g_genotype" if stage == 1 else "d_genotype"
        lines.append(
            f"EAGAN stage {stage}: {len(rows)} trials, "
            f"{rows['generation'].nunique()} generations, "
            f"{(rows['status'] != 'ok').sum()} failed"
        )
        lines.append(
            f"Pareto front of generation {int(last['generation'].max())} "
            f"({', '.join(f'{o} {m}' for o, m in zip(objectives, MODES, strict=True))}):"
        )
        show = front[[*objectives, searched, "checkpoint"]]
        lines.append(show.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        lines.append("hypervolume per generation (normalised objectives, ref 1.1):")
        lines.append(hv.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
        ok = rows[rows["status"] == "ok"]
        written = plots.scatter(
            ok,
            "is",
            "fid",
            os.path.join(out_dir, f"pareto_stage{stage}.png"),
            color="generation",
            highlight=front,
            highlight_label="Pareto front (last generation, 3 objectives)",
            invert_x=True,
            title=f"EAGAN stage {stage}: every individual (IS up, FID down)",
        )
        written += plots.line(
            hv,
            "generation",
            "hypervolume",
            os.path.join(out_dir, f"hypervolume_stage{stage}.png"),
            title=f"EAGAN stage {stage}: hypervolume per generation",
        )
        written += plots.image_panels(
            front_samples(front, searched),
            os.path.join(out_dir, f"front_samples_stage{stage}.png"),
            title=f"EAGAN stage {stage}: samples of the last generation's Pareto front",
        )
        lines += [f"plot: {p}" for p in written]
        lines.append("")
    return "\n".join(lines)


def front_samples(front: pd.DataFrame, searched: str) -> list[tuple[bytes, str]]:
    """Each front member's sample grid (saved with its trial's final checkpoint), captioned
    with its scores and genotype; members whose checkpoint is gone are left out."""
    from raygan.trainable import SAMPLES_FILE

    panels = []
    for _, row in front.iterrows():
        if not isinstance(row["checkpoint"], str):
            continue
        path = storage.join(row["checkpoint"], SAMPLES_FILE)
        if storage.exists(path):
            genes = str(row[searched]).split(":", 1)[-1]
            caption = f"IS {row['is']:.2f}, FID {row['fid']:.1f}\n{genes}"
            panels.append((storage.read_bytes(path), caption))
    return panels
