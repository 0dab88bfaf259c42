"""``raygan search tune --searcher NAME``: any Tune searcher on raygan's spaces, from scratch.

The searcher (:mod:`raygan.searchers.tune_searcher`: Optuna's NSGA-II or TPE through Tune's
``OptunaSearch``, or Tune's random sampling) proposes ``--batch`` architectures at a time on
the Tune form of the space; each trains from scratch for ``--trial-steps`` in its own trial
(the one trial function) and is scored on IS (max) and FID (min), which the searcher is told
before it proposes the next batch. A batch is the driver's boundary, so resume, the table and
the cluster options are every search's. Every row records the searcher and its settings
(``searcher``, ``searcher_settings`` and ``scheduler`` in the row's ``extra``). ``--searcher
random`` is the from-scratch random baseline (also ``raygan search random --from-scratch``).

``--asha``: Tune's ASHA scheduler (reduction factor 2) stops the worst trials of each batch
early: every trial scores IS and FID at :func:`rungs` too, ASHA compares trials there on FID,
and a trial it stops is a row of status ``stopped`` with its last rung's scores, which the
searcher is told. ``best.yaml``: lowest FID, then highest IS, then fewer parameters, among
the trials that trained their whole budget.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import Any

import pandas as pd

from raygan import results, spaces, storage, zoo
from raygan.errors import UsageError
from raygan.searchers.tune_searcher import TuneSearch
from raygan.spec import Spec
from raygan.strategies import common, options
from raygan.strategies.selection import objectives, pick_best

HELP = "any Tune searcher (Optuna NSGA-II / TPE, random) on raygan's spaces, trials from scratch"

OPTIONS = options.method_options("tune")
OBJECTIVES, MODES = ("is", "fid"), ("max", "min")
SPACES = {"g": "nas_cell_g", "d": "eagan_d"}
"""The space searched on each side; the side not searched is fixed to :data:`FIXED`."""
FIXED = {"g": str(zoo.EAGAN_G), "d": "autogan_d:"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    options.add_options(p, OPTIONS)


def validate(args: Spec) -> None:
    """Every problem in the spec, before Ray starts."""
    options.validate(args, OPTIONS)
    if "g" not in searched(args) and options.layout(args, SPACES["g"]).space != SPACES["g"]:
        raise UsageError(
            f"--resolution {options.resolution(args)} needs a four-cell generator: search it "
            "(--search g or both); the fixed one is EAGAN's three-cell G"
        )
    if args.asha and args.trial_steps < 4:
        raise UsageError(
            f"--asha needs --trial-steps of 4 or more (its rungs are a quarter and a "
            f"half of it), got {args.trial_steps}"
        )


def rungs(trial_steps: int) -> tuple[int, int]:
    """Where ASHA compares trials: its grace period (a quarter of the budget) and the next
    rung (half); its last rung is the budget's end, where every trial scores anyway."""
    grace = trial_steps // 4
    return grace, 2 * grace


def scheduler(args: Spec) -> Any | None:
    """Tune's ASHA on FID at :func:`rungs`, or None (every trial trains its budget)."""
    if not args.asha:
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="steps",
        metric="fid",
        mode="min",
        max_t=args.trial_steps,
        grace_period=rungs(args.trial_steps)[0],
        reduction_factor=2,
    )


def searched(args: Spec) -> list[str]:
    return ["g", "d"] if args.search == "both" else [args.search]


def searched_space(args: Spec, side: str) -> str:
    """The space searched on ``side``: G's is the family member for the size (four cells at
    128 px)."""
    return options.layout(args, SPACES["g"]).space if side == "g" else SPACES[side]


def new_search(args: Spec) -> TuneSearch:
    return TuneSearch(
        {side: spaces.get(searched_space(args, side)) for side in searched(args)},
        searcher=args.searcher,
        trials=args.trials,
        batch=args.batch,
        metrics=OBJECTIVES,
        modes=MODES,
        seed=args.seed,
    )


def generation_over(search: TuneSearch, *, generation: int) -> bool:
    return search.finished or search.generation != generation


class TuneDriver(common.Driver):
    """Batch after batch of the searcher's proposals: a batch is a boundary.

    It keeps one search and loads the state into it (:meth:`search`): a Tune searcher's state
    loads by replaying its log, which a search already at that state skips."""

    _search: TuneSearch | None = None

    def fresh_state(self) -> dict[str, Any]:
        return {"algorithm": None, "done": False}

    def references(self) -> list[Any]:
        from raygan.trainable import reference_for

        return [reference_for(self.base_config(), options.resolution(self.args))]

    @property
    def finished(self) -> bool:
        return self.state["done"]

    def search(self) -> TuneSearch:
        if self._search is None:
            self._search = new_search(self.args)
        empty = {"settings": self._search.settings(), "log": []}
        self._search.load_state_dict(self.state["algorithm"] or empty)
        return self._search

    def boundary(self) -> str:
        a, generation = self.args, self.search().generation
        total = -(-a.trials // a.batch)
        print(f"[tune] {a.searcher}: batch {generation + 1} of {total}")
        return f"batch{generation}"

    def over(self) -> Callable[[TuneSearch], bool]:
        return functools.partial(generation_over, generation=self.search().generation)

    def base_config(self) -> dict[str, Any]:
        a = self.args
        return {
            **self.trial_settings(),
            **FIXED,
            "steps": a.trial_steps,
            "n_critic": a.n_critic,
            "g_batch": a.g_batch,
            "d_batch": a.d_batch,
            "g_lr": a.lr,
            "d_lr": a.lr,
            "checkpoint_every": max(1, a.trial_steps // 4),
            "score_at": rungs(a.trial_steps) if a.asha else (),
        }

    def trial_config(self, shared: dict[str, Any]) -> Callable[[dict[str, Any]], dict]:
        base, settings = self.base_config(), self.search().settings()

        def config(proposal: dict[str, Any]) -> dict[str, Any]:
            sides = {side: proposal[side] for side in ("g", "d") if side in proposal}
            where = {k: proposal[k] for k in ("generation", "individual")}
            row = {**where, "searcher": self.args.searcher, "searcher_settings": settings}
            row["scheduler"] = "asha" if self.args.asha else "fifo"
            return {**base, **sides, "row": row}

        return config

    def fit_trials(self, name: str, configs: list[dict[str, Any]], **options: Any) -> list:
        return super().fit_trials(name, configs, scheduler=scheduler(self.args), **options)

    def observe(self, rows: list[dict], shared: dict[str, Any], search: Any) -> None:
        self.state["algorithm"] = search.state_dict()
        self.state["done"] = search.finished

    def finish(self) -> None:
        """``best.yaml``: the pick among every architecture scored."""
        df = results.load(self.out)
        ok = df[(df["kind"] == "trial") & (df["status"] == "ok")].dropna(subset=["is", "fid"])
        if ok.empty:
            raise common.SearchFailed("no architecture was scored")
        best = pick_best(pd.DataFrame(ok), objectives(1))  # the paper's: FID, IS, G size
        a = self.args
        arch = spaces.Arch(
            spaces.Genotype.parse(best["g_genotype"]),
            spaces.Genotype.parse(best["d_genotype"]),
            a.final_gf,
            a.final_df,
            self.layout.bottom_width,
        )
        note = (
            f"raygan search tune ({a.searcher}) pick: lowest FID of {len(ok)} architectures\n"
            f"IS {best['is']:.3f}, FID {best['fid']:.3f}, trial {best['trial_id']}"
        )
        path = storage.join(self.out, "best.yaml")
        spaces.write_arch_file(path, arch, comment=note)
        print(f"[tune] pick: {arch.g} / {arch.d} -> {path}")


def estimate(args: Spec) -> list[Any]:
    """The trials' FLOPs: ``--trials`` pairs of the first proposals' mean, each trained and
    scored once."""
    from raygan import estimate as est
    from raygan.train import TrainConfig

    a, bw = args, options.layout(args, "nas_cell_g").bottom_width
    cfg = TrainConfig(n_critic=a.n_critic, g_batch=a.g_batch, d_batch=a.d_batch)
    search, pairs = new_search(a), []
    while len(pairs) < est.SAMPLED and (proposal := search.ask()) is not None:
        sides = {**FIXED, **proposal.config}
        g, d = (spaces.Genotype.parse(sides[k]) for k in ("g", "d"))
        pairs.append(est.Pair(g, d, a.gf, a.df, bw, cfg))
    extractor = est.extractor_for(a)
    train = a.trials * a.trial_steps * est.mean_flops(pairs)
    per_sample = est.mean_flops(pairs, lambda p: est.sample_flops(p, extractor))
    scoring = a.trials * (a.eval_samples + 64) * per_sample
    return [est.Stage("trials (from scratch)", train, scoring, pairs[0])]


def run(args: Spec) -> int:
    """Search with ``args``, a spec that :func:`validate` passed."""
    return common.run_driver("tune", TuneDriver(args, "tune"))
