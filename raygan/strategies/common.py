"""The driver loop every search runs (:class:`Driver`), so that each method module holds only
its method; the checks every spec gets before Ray starts are :mod:`raygan.strategies.options`.

The work between two boundaries is at most one shared-weights round (a Ray Train job, once
per boundary) and the boundary's candidate trials. The driver asks the search for a batch of
proposals, saves them, and runs them as one Tune experiment; each trial's outcome and each
checkpoint it reports go into the driver's state as they happen. A driver that restarts
(``--resume``) never restores a Tune experiment (``Tuner.restore`` unpickles what it finds):
it submits the batch's unfinished trials, and those that errored, to a new experiment, each
continuing from its last checkpoint, and tells the search the batch's results in proposal
order once all are in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from raygan import faults, results, state, storage
from raygan.errors import UsageError
from raygan.searchers.asktell import AskTell, Suggestion
from raygan.spec import Spec
from raygan.strategies import batches, options
from raygan.strategies.batches import Outcome


class SearchFailed(RuntimeError):
    """Every trial of a boundary failed: something systemic (data, metrics, weights), not a
    bad architecture. The boundary is not recorded; ``--resume`` repeats it."""


class LeaseLost(RuntimeError):
    """Another driver took this experiment's lease over: this one stops writing."""


class Driver:
    """THE driver loop: ``propose -> (shared round) -> evaluate -> observe -> save``, from
    boundary to boundary (an EAGAN generation, an AutoGAN iteration, an AdversarialNAS epoch).

    A method is a subclass that fills the hooks: :meth:`fresh_state`, :meth:`references`,
    :attr:`finished`, :meth:`boundary`, :meth:`shared_round`, :meth:`search` with
    :meth:`over`, :meth:`trial_config` and :meth:`columns` (what :meth:`evaluate` runs), or
    :meth:`evaluate` itself, then :meth:`observe` and :meth:`finish`.

    The state is plain data in ``<out>/search_state.json`` (its tensors and arrays, if any, in
    a weights-only torch file beside it; :mod:`raygan.state`), written atomically (fsynced
    local rename, or one object-store PUT) after every shared round, every proposed batch,
    every finished trial and checkpoint, and every boundary, with the settings the search
    started with; so a kill at any moment loses no finished trial, ``--resume`` continues
    from there, and nothing under ``--out`` is unpickled. One driver at a time holds
    ``<out>/lease.json`` (:class:`raygan.storage.Lease`). ``--out`` may be a local folder or a
    storage URI (``s3://...``).
    """

    STATE = "search_state.json"
    G_FAMILY = "nas_cell_g"
    """The generator space family searched (its member for the size: :attr:`layout`)."""
    RUN_ONLY = frozenset(
        {"address", "concurrency", "cpus", "gpus", "resume", "out", "max_failures", "download"}
        | {"inception_weights", "data_root", "estimate", "tflops"}
    )
    """Settings that change where or how fast a search runs, not its results: ``--resume``
    may change them; every other setting must be the one the search started with."""
    ROUND_ROW = True
    """Whether a boundary's shared round gets a row of its own (:meth:`round_rows`)."""

    def __init__(self, args: Spec, strategy: str):
        self.args = args
        self.strategy = strategy
        self.out = args.out
        self.experiment = storage.basename(self.out)
        self.state: dict[str, Any] = {}
        self.started_with = self.settings()
        self.restarted = False  # this process resumed a boundary another one began
        self.lease: storage.Lease | None = None

    # -- the hooks a method fills
    def fresh_state(self) -> dict[str, Any]:
        """The state of a search that has not started (plain data)."""
        raise NotImplementedError

    def references(self) -> list[Any]:
        """The real data every score of this search compares with (``metrics.Reference``)."""
        raise NotImplementedError

    @property
    def finished(self) -> bool:
        raise NotImplementedError

    def boundary(self) -> str:
        """The next boundary's name (its Tune experiment); prints what it is about to do."""
        raise NotImplementedError

    def shared_round(self) -> dict[str, Any] | None:
        """Train the shared weights of this boundary (a :func:`raygan.supernet.train_round`):
        ``{"state": state.pt, "metrics": {...}}``; None where the method has none."""
        return None

    def search(self) -> AskTell:
        """The authoritative search, loaded from the state."""
        raise NotImplementedError

    def over(self) -> Callable[[AskTell], bool]:
        """Whether a search has reached this boundary."""
        raise NotImplementedError

    def trial_config(self, shared: dict[str, Any]) -> Callable[[dict[str, Any]], dict]:
        """A proposal's trial config, from the proposal's own."""
        raise NotImplementedError

    def columns(self, proposal: Suggestion, outcome: Outcome, search: AskTell) -> dict[str, Any]:
        """The method's own columns of a proposal's row, once the search was told the results
        of the proposal's batch."""
        return {}

    def observe(self, rows: list[dict], shared: dict[str, Any], search: AskTell | None) -> None:
        """Take the boundary's results into the state (saved after the rows land); may add
        columns to the rows."""

    def saved(self) -> None:
        """After a boundary's state was saved (what nothing reads any more may go)."""

    def finish(self) -> None:
        """What the search leaves at its end (genotype files)."""

    # -- the loop
    def run(self) -> None:
        """Check ``--out`` against ``--resume`` (reading only), create it, take the
        experiment's lease, then run to the end."""
        from raygan import cluster

        if self.args.resume and not storage.exists(self.state_path):
            raise UsageError(f"--resume: nothing to resume in {self.out} (no {self.STATE})")
        resumed = self.resume_or_start()
        cluster.check_storage(self.out)
        try:
            self.lease = storage.Lease.acquire(self.out, takeover=self.args.resume)
        except storage.LeaseHeld as err:
            raise UsageError(str(err)) from None
        with self.lease:
            if resumed:  # again: as the lease's last holder left it
                self.load()
            else:
                self.state = {**self.fresh_state(), "round": None, "pending": None}
                self.save()
            self.loop()

    def loop(self) -> None:
        from raygan import cluster

        cluster.connect(self.args.address)
        self.prepare_metrics()
        while not self.finished:
            name = self.boundary()
            if self.state["round"] is None:  # trained once, even across an interruption
                self.state["round"] = self.shared_round() or {}
                self.save()
            rows, search = self.evaluate(name, self.state["round"])
            if not any(r["status"] == "ok" for r in rows):
                self.fail(name, rows)
            self.observe(rows, self.state["round"], search)
            results.append_once(
                self.out, [*self.round_rows(name, self.state["round"], rows), *rows]
            )
            faults.point("rows-appended")
            self.state.update(round=None, pending=None)
            self.save()
            faults.point("state-saved")
            self.saved()
        self.finish()

    def evaluate(
        self, name: str, shared: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], AskTell | None]:
        """Score the boundary's proposals, a batch at a time (what the search proposes before
        it needs results), each batch as one Tune experiment, telling the search each batch's
        results in proposal order; the rows (one per proposal) and the search told. What is
        in flight lives in ``state["pending"]``, saved as it changes."""
        from raygan.trainable import row_fields

        search, over, to_trial = self.search(), self.over(), self.trial_config(shared)
        pending = self.state.get("pending")
        if pending is None:
            pending = {"search": search.state_dict(), "rows": [], "batch": None, "attempt": 0}
            self.state["pending"] = pending
        search.load_state_dict(pending["search"])
        while pending["batch"] is not None or not over(search):
            if pending["batch"] is None:
                pending["batch"] = batches.propose(search, to_trial)
                pending.update(search=search.state_dict(), outcomes={}, checkpoints={})
                self.save()
            outcomes = batches.run_batch(
                pending,
                name,
                rerun_errored=self.restarted,
                save=self.save,
                fit_trials=self.fit_trials,
            )
            self.restarted = False
            for item, outcome in zip(pending["batch"], outcomes, strict=True):
                search.tell(item["key"], outcome["metrics"] if outcome["error"] is None else None)
            for item, outcome in zip(pending["batch"], outcomes, strict=True):
                own = self.columns(Suggestion(item["key"], item["config"]), outcome, search)
                pending["rows"].append(self.row({**row_fields(outcome), **own}))
            pending.update(search=search.state_dict(), batch=None, outcomes={}, checkpoints={})
            self.save()
        return pending["rows"], search

    def fail(self, name: str, rows: list[dict[str, Any]]) -> None:
        """Stop before anything of the boundary is recorded: its proposals and trials are
        dropped, so that ``--resume`` proposes and scores them afresh (its shared round is kept)."""
        attempts = (self.state.get("pending") or {}).get("attempt", 0)
        for attempt in range(max(attempts, 1)):
            storage.delete(storage.join(self.out, "tune", batches.attempt_name(name, attempt)))
        self.state["pending"] = None
        self.save()
        error = next((r["error"] for r in rows if r.get("error")), "no trial reported a score")
        raise SearchFailed(
            f"every trial of {name} failed ({error}); fix the cause and rerun with --resume"
        )

    # -- state, settings, rows, trials
    @property
    def state_path(self) -> str:
        return storage.join(self.out, self.STATE)

    def settings(self) -> dict[str, Any]:
        """The settings that shape results (saved with the state, checked on resume)."""
        return {k: v for k, v in self.args.to_dict().items() if k not in self.RUN_ONLY}

    def save(self) -> None:
        """Save the state, unless another driver took the experiment over: then stop."""
        if self.lease is not None and self.lease.lost:
            raise LeaseLost(self.lease.lost_reason)
        state.save(self.state_path, {**self.state, "settings": self.started_with})

    def load(self) -> None:
        self.state = state.load(self.state_path)
        self.started_with = self.state.pop("settings", {})
        self.restarted = self.state.get("pending") is not None

    def resume_or_start(self) -> bool:
        """Load the saved state under ``--resume`` (True), or check that ``--out`` holds
        nothing but this driver's lease (False: the loop sets up a fresh state); all before
        Ray starts, writing nothing."""
        if holder := storage.lease_holder(self.out):
            raise UsageError(holder)
        if not self.args.resume:
            if earlier := [e for e in storage.names(self.out) if e not in storage.LEASE_FILES]:
                raise UsageError(
                    f"--out {self.out} already holds {', '.join(earlier[:3])}"
                    f"{' ...' if len(earlier) > 3 else ''}; use --resume or a new --out"
                )
            return False
        self.load()
        now, then = self.settings(), self.started_with
        changed = [k for k in sorted(then.keys() | now.keys()) if then.get(k) != now.get(k)]
        if changed:
            raise UsageError(
                "--resume needs the settings the search started with: "
                + "; ".join(
                    f"--{k.replace('_', '-')} was {then.get(k)!r}, now {now.get(k)!r}"
                    for k in changed
                )
            )
        return True

    def prepare_metrics(self) -> None:
        """Resolve the extractor once (every trial uses the same) and cache the reference
        statistics before any trial, so no trial makes a real-data pass. The driver then
        holds a new spec naming the resolved extractor (the spec it was given is never
        changed), so every trial config and row records the one actually used."""
        from raygan import metrics

        a = self.args
        extractor = metrics.resolve_extractor(a.extractor, inception_weights=a.inception_weights)
        self.args = a.replace(extractor=extractor.name)
        for reference in self.references():
            metrics.reference_statistics(reference, extractor)

    def fit_trials(self, name: str, configs: list[dict[str, Any]], **options: Any) -> list:
        """Run ``configs`` as Tune experiment ``name`` of this search (under ``<out>/tune``);
        their outcomes (:func:`raygan.trainable.fit_trials`, ``options`` as there)."""
        from raygan import cluster
        from raygan.trainable import fit_trials

        return fit_trials(
            cluster.storage_uri(storage.join(self.out, "tune")),
            name,
            configs,
            resources=cluster.trial_resources(self.args.cpus, self.args.gpus),
            concurrency=self.args.concurrency,
            max_failures=self.args.max_failures,
            reuse_actors=True,  # a trial often takes less time than a process importing torch
            **options,
        )

    def train_round(self, spec: Any, name: str, folder: str) -> dict[str, Any]:
        """Shared round ``name`` of this search (a Ray Train run under ``<out>/<folder>``):
        its final ``state.pt`` and last metrics. With ``--gpus`` every worker takes a whole
        GPU (NCCL needs one per rank)."""
        from raygan import cluster, cost, supernet

        a = self.args
        done = supernet.train_round(
            spec,
            name=name,
            storage_path=cluster.storage_uri(storage.join(self.out, folder)),
            workers=a.workers,
            use_gpu=a.gpus > 0,
            resources_per_worker={"CPU": a.cpus},
            max_failures=a.max_failures,
        )
        return {
            "state": done.state,
            "metrics": done.metrics,
            "cost": cost.round_fields(
                done.metrics, done.wall_s, a.workers * (1.0 if a.gpus > 0 else a.cpus)
            ),
        }

    @property
    def layout(self) -> Any:
        """The generator space and bottom width of this search's ``--resolution``."""
        return options.layout(self.args, self.G_FAMILY)

    def data_settings(self) -> dict[str, Any]:
        """What every round and trial of this search trains on, and how (spec fields)."""
        a = self.args
        return {
            "gf": a.gf,
            "df": a.df,
            "bottom_width": self.layout.bottom_width,
            "dataset": a.dataset,
            "data_root": a.data_root,
            "max_images": a.max_images,
            "num_classes": options.num_classes(a),
            "amp_bf16": a.bf16,
            "channels_last": a.channels_last,
            "compile": a.compile,
            "check_every": a.check_every,
        }

    def trial_settings(self) -> dict[str, Any]:
        """:meth:`data_settings` plus how every trial of this search is seeded and scored."""
        a = self.args
        return {
            **self.data_settings(),
            "cuda_graphs": a.cuda_graphs,  # a trial's fixed pair only: a round's paths vary
            "seed": a.seed,
            "eval_samples": a.eval_samples,
            "extractor": a.extractor,
            "inception_weights": a.inception_weights,
        }

    def round_rows(
        self, name: str, shared: dict[str, Any], rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The boundary's shared round as a row of its own (``kind`` round: what it cost),
        under the boundary's stage and generation; none where the method has no round, or
        where its rows already carry the round's cost (AdversarialNAS's epoch)."""
        if not self.ROUND_ROW or "cost" not in shared:
            return []
        where = {k: rows[0].get(k) for k in ("stage", "generation")} if rows else {}
        a = self.args
        return [
            self.row(
                {
                    "trial_id": f"round-{name}",
                    "kind": "round",
                    **where,
                    **{"gf": a.gf, "df": a.df, "dataset": a.dataset, "seed": a.seed},
                    "budget_steps": shared["metrics"].get("round_step"),
                    **shared["cost"],
                }
            )
        ]

    def row(self, fields: dict[str, Any]) -> dict[str, Any]:
        """A table row of this experiment from a trial's or an epoch's fields."""
        return results.row(fields, experiment=self.experiment, strategy=self.strategy)


def run_driver(tag: str, driver: Driver) -> int:
    """Run the search; Ctrl-C leaves the saved state and says how to resume (exit 130); a
    boundary whose every trial failed, or a shared round that diverged, stops with its error
    (exit 1)."""
    from raygan.supernet import RoundDiverged

    try:
        driver.run()
    except (SearchFailed, LeaseLost, RoundDiverged) as err:
        print(f"[{tag}] stopped: {err}")
        return 1
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
