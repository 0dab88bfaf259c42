"""EAGAN (Ying et al., ECCV 2022): two-stage NSGA-II search of G, then D, on Ray.

A generation is a boundary of the driver loop (METHODS.md section 3). Stage 1 (many-to-one):
the population's generators share one supernet, trained against AutoGAN-D in a shared round
(every generator step trains one member's path, drawn uniformly); then every member is scored
as a trial that inherits its path's weights (optionally fine-tuning); NSGA-II keeps P/2 and
refills with children. Objectives: IS (max), FID (min), G params (min). Stage 2 (one-to-one
with weight resetting): P copies of the best generator G*, each paired with a candidate D and
trained in its own trial; the best pair's G starts every next trial, a surviving D continues
from its own weights. Objectives: IS, FID, D params.

Departures for parallelism (docs/methods.md): the paper interleaves a stage-2 round's pairs
batch by batch, here each pair trains its share at once in its own trial; stage-1 candidates
are scored by trials after the shared round instead of inside it. Each stage's pick (lowest
FID on the last generation's front, then higher IS, then fewer parameters) is written as
``stage1_best.yaml`` / ``stage2_best.yaml`` (= ``best.yaml``) at the published widths.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any

import pandas as pd

from raygan import results, spaces, storage
from raygan.errors import UsageError
from raygan.searchers.asktell import Suggestion
from raygan.searchers.nsga2 import NSGA2
from raygan.spec import Spec
from raygan.strategies import common, options
from raygan.strategies.selection import PAPER_SCORES, lowest, objectives, pick_best

HELP = "EAGAN: two-stage NSGA-II evolution of G (shared supernet), then D (weight resetting)"

STAGE1_D = "autogan_d:"
"""Stage 1's single fixed discriminator: the paper's AutoGAN-D (not the reference code's
small conv/BN D, METHODS.md)."""

OPTIONS = options.method_options("eagan")


def add_arguments(p: argparse.ArgumentParser) -> None:
    options.add_options(p, OPTIONS)
    p.add_argument(
        "--s2-steps",
        type=options.argument_type(int, 1),
        help="stage-2 steps each pair trains per generation (default: --s2-round-steps "
        "shared by the P pairs, as in the paper)",
    )
    p.add_argument(
        "--stages", default="1,2", choices=["1,2", "1"], help="both stages, or stage 1 only"
    )


def stage2_steps(args: Spec) -> int:
    """Steps each stage-2 pair trains per generation: ``--s2-steps``, else the round's budget
    shared by the P pairs (the paper interleaves all pairs within one round)."""
    if args.s2_steps is not None:
        return args.s2_steps
    return args.s2_round_steps // args.population


def validate(args: Spec) -> None:
    """Every problem in the spec, before Ray starts."""
    options.validate(args, OPTIONS)
    if args.population % 2:
        raise UsageError(f"--population must be even and at least 4, got {args.population}")
    check_objectives(args)
    if (steps := stage2_steps(args)) < 1:
        shared = f" ({args.s2_round_steps} round steps / {args.population} pairs)"
        raise UsageError(
            f"--s2-steps must be a whole number >= 1, got {steps}"
            + ("" if args.s2_steps is not None else shared)
        )


def check_objectives(args: Spec) -> None:
    """Conditional scores only for a conditional search that records them."""
    options.check_scores(args, "--objectives", args.objectives, args.objectives.split(","))


# ----- the driver -------------------------------------------------------------------------------
def trial_config(
    individual: dict[str, Any],
    *,
    base: dict[str, Any],
    stage: int,
    init_g: str | None,
    init_d: dict[int, str],
    scores: str = PAPER_SCORES,
) -> dict[str, Any]:
    """The Tune trial config for one NSGA-II individual (its row records the ``scores`` it
    is selected on, so that its table is analysed under them)."""
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
        "objectives": scores,
    }
    return config


def new_search(args: Spec, stage: int, offspring: str = "bred") -> NSGA2:
    """A stage's NSGA-II before its first generation: G's space in stage 1, D's in stage 2;
    ``offspring`` as :class:`NSGA2`'s (``uniform``: the random baseline)."""
    return NSGA2(
        options.layout(args, "nas_cell_g").space if stage == 1 else "eagan_d",
        population_size=args.population,
        generations=args.generations,
        metrics=tuple(objectives(stage, args.objectives)),
        modes=tuple(objectives(stage, args.objectives).values()),
        seed=args.seed + stage,
        reevaluate_parents=True,
        offspring=offspring,
    )


def first_members(args: Spec, stage: int) -> list[spaces.Genotype]:
    """The first members of a stage's first population (what ``--estimate`` counts on)."""
    from raygan.estimate import SAMPLED

    members = new_search(args, stage).population()[:SAMPLED]
    return [spaces.Genotype.parse(m["genotype"]) for m in members]


def generation_over(search: NSGA2, *, generation: int) -> bool:
    """Whether NSGA-II has closed ``generation``."""
    return search.finished or search.generation != generation


def supernet_run_name(generation: int) -> str:
    """The Ray Train run (a folder under ``<out>/supernet``) of one stage-1 round."""
    return f"supernet-g{generation}"


class EaganSearch(common.Driver):
    """Both stages, generation by generation: a generation is a boundary."""

    OFFSPRING = "bred"
    """How each generation's new members are made (:data:`raygan.searchers.nsga2.OFFSPRING`)."""

    def fresh_state(self) -> dict[str, Any]:
        """Stage 2 adds ``g_reset`` (the G every next pair starts from) and ``d_weights``."""
        return {"stage": 1, "algorithm": None, "supernet": None, "g_star": None}

    def references(self) -> list[Any]:
        from raygan.trainable import reference_for

        return [reference_for(self.base_config(1), options.resolution(self.args))]

    @property
    def finished(self) -> bool:
        return self.state["stage"] is None

    @property
    def bottom_width(self) -> int:
        return self.layout.bottom_width

    def search(self) -> NSGA2:
        algorithm = new_search(self.args, self.state["stage"], self.OFFSPRING)
        if self.state["algorithm"] is not None:
            algorithm.load_state_dict(self.state["algorithm"])
        return algorithm

    def boundary(self) -> str:
        stage, generation = self.state["stage"], self.search().generation
        total, tag = self.args.generations, self.strategy
        print(f"[{tag}] stage {stage}: generation {generation} ({generation + 1} of {total})")
        return f"stage{stage}-gen{generation}"

    def over(self) -> Callable[[NSGA2], bool]:
        return functools.partial(generation_over, generation=self.search().generation)

    def base_config(self, stage: int) -> dict[str, Any]:
        a, s1 = self.args, stage == 1
        return {
            **self.trial_settings(),
            "g_batch": a.g_batch,
            "d_batch": a.d_batch,
            "steps": a.finetune_steps if s1 else stage2_steps(a),
            "n_critic": a.s1_n_critic if s1 else a.s2_n_critic,
            "g_lr": a.s1_g_lr if s1 else a.s2_lr,
            "d_lr": a.s1_d_lr if s1 else a.s2_lr,
            "g": self.state.get("g_star"),
            "d": STAGE1_D,
        }

    def trial_config(self, shared: dict[str, Any]) -> Callable[[dict[str, Any]], dict]:
        stage = self.state["stage"]
        return functools.partial(
            trial_config,
            base=self.base_config(stage),
            stage=stage,
            init_g=shared["state"] if stage == 1 else self.state["g_reset"],
            init_d=self.state.get("d_weights", {}),
            scores=self.args.objectives,
        )

    def shared_round(self) -> dict[str, Any] | None:
        """Stage 1: the supernet round of this generation, on its members' paths."""
        from raygan import supernet

        if self.state["stage"] != 1:
            return None
        a, search = self.args, self.search()
        steps = a.round_steps + (a.warmup_steps if search.generation == 0 else 0)
        spec = supernet.RoundSpec(
            g_space=self.layout.space,
            d=STAGE1_D,
            paths=[ind["genotype"] for ind in search.population()],
            **self.data_settings(),
            steps=steps,
            n_critic=a.s1_n_critic,
            g_batch=a.g_batch,
            d_batch=a.d_batch,
            g_lr=a.s1_g_lr,
            d_lr=a.s1_d_lr,
            seed=a.seed * 1000 + search.generation,
            init=self.state["supernet"],
            checkpoint_every=max(1, steps // 4),
        )
        return self.train_round(spec, supernet_run_name(search.generation), "supernet")

    def columns(self, proposal: Suggestion, outcome: dict, search: NSGA2) -> dict[str, Any]:
        """Where selection put the individual: its Pareto rank and crowding distance."""
        key = (proposal.config["generation"], proposal.config["individual"])
        h = next(h for h in search.history() if (h["generation"], h["individual"]) == key)
        return {"rank": h.get("rank"), "crowding": h.get("crowding")}

    def observe(self, rows: list[dict], shared: dict[str, Any], search: NSGA2) -> None:
        stage = self.state["stage"]
        self.state["algorithm"] = search.state_dict()
        if stage == 1:
            self.state["supernet"] = shared["state"]
        else:
            self.reset_weights(rows)
        if search.finished:
            self.write_best(stage, rows)
            self.begin_next_stage()

    def saved(self) -> None:
        """``--keep-weights last``: delete the weights no later step reads, i.e. this stage's
        trials of generations before the last one told (stage 2 resets from the last
        generation only) and the supernet rounds before it (each round starts from the
        previous one; stage 2 from the last). Runs once the saved state no longer points at
        them; each call deletes everything older again, finishing a prune a crash cut short."""
        if self.args.keep_weights != "last":
            return
        from raygan.trainable import STATE_FILE

        df = results.load(self.out)
        last = df[df["stage"] == df["stage"].max()]
        stage, generation = int(last["stage"].max()), int(last["generation"].max())
        if stage == 1:
            for older in range(generation):
                storage.delete(storage.join(self.out, "supernet", supernet_run_name(older)))
        done = df[(df["stage"] == stage) & (df["generation"] < generation)]
        for checkpoint in done["checkpoint"].dropna():
            storage.delete(storage.join(checkpoint, STATE_FILE))

    def reset_weights(self, rows: list[dict]) -> None:
        """Weight resetting: the best pair's G starts every next trial; Ds keep their own."""
        ok = [r for r in rows if r["status"] == "ok" and r["checkpoint"]]
        best = pick_best(pd.DataFrame(ok), objectives(2, self.args.objectives))
        self.state["g_reset"] = storage.join(best["checkpoint"], "state.pt")
        self.state["d_weights"] = {
            r["individual"]: storage.join(r["checkpoint"], "state.pt") for r in ok
        }

    def begin_next_stage(self) -> None:
        """Stage 2's G* starts from its stage-1 (supernet) weights; or the search is done."""
        if self.state["stage"] == 1 and "2" in self.args.stages.split(","):
            self.state.update(stage=2, algorithm=None, g_reset=self.state["supernet"])
            self.state["d_weights"] = {}
        else:
            self.state["stage"] = None

    def write_best(self, stage: int, rows: list[dict]) -> None:
        front = pd.DataFrame([r for r in rows if r["rank"] == 0 and r["status"] == "ok"])
        if front.empty:
            raise common.SearchFailed(f"stage {stage} ended with no successful individual")
        senses = objectives(stage, self.args.objectives)
        best = pick_best(front, senses)
        low = lowest(senses)
        scores = ", ".join(f"{name} {best[name]:.3f}" for name in list(senses)[:2])
        g = spaces.Genotype.parse(best["g_genotype"])
        d = spaces.Genotype.parse(best["d_genotype"])
        if stage == 1:
            self.state["g_star"] = str(g)
        arch = spaces.Arch(g, d, self.args.final_gf, self.args.final_df, self.bottom_width)
        note = (
            f"{self.strategy} stage {stage} pick: lowest {low} on the last generation's front\n"
            f"{scores}, trial {best['trial_id']}\n"
            f"retrain: raygan train --genotype-file THIS_FILE (--width-scale for laptops)"
        )
        names = ["stage1_best.yaml"] if stage == 1 else ["stage2_best.yaml", "best.yaml"]
        for name in names:
            spaces.write_arch_file(storage.join(self.out, name), arch, comment=note)
        written = storage.join(self.out, names[-1])
        print(f"[{self.strategy}] stage {stage} pick: {g} / {d} -> {written}")


def estimate(args: Spec) -> list[Any]:
    """The two stages' FLOPs (:mod:`raygan.estimate`): P members per generation, each stage-1
    G step one member's path against AutoGAN-D, each stage-2 pair G* against a member D;
    averaged over the first members of each stage's first population (G*: stage 1's
    first)."""
    from raygan import estimate as est
    from raygan.train import TrainConfig

    a, scored = args, args.population * args.generations
    bw = options.layout(args, "nas_cell_g").bottom_width
    extractor = est.extractor_for(a)
    batches = {"g_batch": a.g_batch, "d_batch": a.d_batch}
    d, stages = spaces.Genotype.parse(STAGE1_D), []
    s1 = TrainConfig(n_critic=a.s1_n_critic, **batches)
    paths = [est.Pair(g, d, a.gf, a.df, bw, s1) for g in first_members(a, 1)]
    shared = a.warmup_steps + a.round_steps * a.generations + a.finetune_steps * scored
    per_sample = est.mean_flops(paths, lambda p: est.sample_flops(p, extractor))
    rescored = a.eval_samples + 64 + (0 if a.finetune_steps else est.RECALIBRATION_SAMPLES)
    stages.append(
        est.Stage(
            "stage 1 (supernet, G)",
            shared * est.mean_flops(paths),
            scored * rescored * per_sample,
            paths[0],
        )
    )
    if "2" in a.stages.split(","):
        s2 = TrainConfig(n_critic=a.s2_n_critic, **batches)
        g_star = paths[0].g
        pairs = [est.Pair(g_star, x, a.gf, a.df, bw, s2) for x in first_members(a, 2)]
        train = scored * stage2_steps(a) * est.mean_flops(pairs)
        scoring = scored * (a.eval_samples + 64) * per_sample
        stages.append(est.Stage("stage 2 (pairs, D)", train, scoring, pairs[0]))
    return stages


def run(args: Spec) -> int:
    """Search with ``args``, a spec that :func:`validate` passed."""
    return common.run_driver("eagan", EaganSearch(args, "eagan"))
