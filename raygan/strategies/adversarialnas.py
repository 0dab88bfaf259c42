"""AdversarialNAS (Gao et al., CVPR 2020): differentiable search of G and D together, on Ray Train.

Both players are supernets of the ``nas_cell`` spaces (``nas_cell_g``, ``adversarialnas_d``)
whose every edge is a mixed op, ``sum_i softmax(alpha)_i * op_i(x)``, weighted by architecture
logits kept apart from the networks (:class:`raygan.nn.ArchLogits`). Each iteration is
:meth:`raygan.train.Architect.iteration` (METHODS.md section 2): a D-architecture step on one
half of the real batch, a D-weight step on the other, and every ``n_critic`` iterations a
G-architecture step, then a G-weight step; first-order, hinge loss; ``--gumbel`` draws the
mixed-op weights as Gumbel-softmax samples at an exponentially annealed temperature.

Each epoch (one pass over the capped training images) is one mixed-op round of the one
launcher (:mod:`raygan.supernet`): DDP over ``--workers`` replicas, the real batch sharded, every
gradient (weights and logits) averaged; the next epoch continues from its state, random streams
included, so a search of several rounds trains exactly as one long run. At a round's end rank 0
derives the genotypes and scores the EMA *supernet* generator with the current softmax weights
(the generator the search trained; the derived path's own quality comes from retraining
``best.yaml``, as in the paper). The driver appends the epoch's row and saves its state.

Rows (``trial_id`` ``epoch<n>``, ``generation`` = epoch, 1-based): the derived genotypes,
``entropy`` (mean over every edge of both players; ``extra`` has ``g_entropy``, ``d_entropy``),
the derived networks' sizes at the search widths, ``budget_steps`` = G steps so far.
``best.yaml`` pairs the last epoch's G with AutoGAN-D at the retraining widths (gf 256,
df 128), as the paper retrains; ``--keep-searched-d`` keeps the searched D instead.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from raygan import results, spaces, storage, supernet
from raygan.errors import UsageError
from raygan.nn.arch import edge_specs
from raygan.spec import Spec
from raygan.strategies import common, options

HELP = "AdversarialNAS: differentiable search of G and D together (Ray Train, DDP)"

G_SPACE = "nas_cell_g"
D_SPACE = "adversarialnas_d"
RETRAIN_D = "autogan_d:"
"""The paper retrains the derived generator against the fixed AutoGAN discriminator."""
STRATEGY = "adversarialnas"


OPTIONS = options.method_options("adversarialnas")


def add_arguments(p: argparse.ArgumentParser) -> None:
    options.add_options(p, OPTIONS)


def validate(args: Spec) -> None:
    """Every problem in the options, before Ray starts."""
    options.validate(args, OPTIONS)
    if args.batch % (2 * args.workers):
        raise UsageError(
            f"--batch {args.batch} must split into an even share per worker "
            f"(a multiple of 2 x --workers = {2 * args.workers}): each worker halves its share "
            f"between the architecture and the weight step"
        )
    if args.max_images < args.batch:
        raise UsageError(f"--max-images {args.max_images} is less than one --batch {args.batch}")
    if not args.tau_end <= args.tau_start:
        raise UsageError(f"need 0 < --tau-end <= --tau-start, got {args.tau_end}, {args.tau_start}")


# ----- the driver -------------------------------------------------------------------------------
def round_spec(driver: common.Driver, init: str | None) -> supernet.MixedRoundSpec:
    """One epoch of the search as a mixed-op round (``init``: the last epoch's state)."""
    a = driver.args
    return supernet.MixedRoundSpec(
        **driver.data_settings(),
        g_space=driver.layout.space,
        d_space=D_SPACE,
        batch=a.batch,
        epochs=a.epochs,
        n_critic=a.n_critic,
        arch={"gumbel": a.gumbel, "tau_start": a.tau_start, "tau_end": a.tau_end},
        seed=a.seed,
        init=init,
        eval_samples=a.eval_samples,
        extractor=a.extractor,
        inception_weights=a.inception_weights,
    )


def epoch_row(result: dict[str, Any], epoch: int, spec: supernet.MixedRoundSpec) -> dict:
    """The table row of one finished epoch: derived genotypes, entropies, EMA-mixture scores."""
    g, d = spaces.Genotype.parse(result["g"]), spaces.Genotype.parse(result["d"])
    g_edges, d_edges = len(edge_specs(spec.g_space)), len(edge_specs(D_SPACE))
    entropy = (result["g_entropy"] * g_edges + result["d_entropy"] * d_edges) / (g_edges + d_edges)
    finite = all(math.isfinite(result[k]) for k in ("is", "fid"))
    return {
        "trial_id": f"epoch{epoch}",
        "generation": epoch,
        **spaces.table_columns("g", g),
        **spaces.table_columns("d", d),
        "gf": spec.gf,
        "df": spec.df,
        "resolution": spec.resolution,
        "dataset": spec.dataset,
        "conditional": spec.num_classes is not None,
        "num_classes": spec.num_classes,
        **{k: result[k] for k in ("is", "is_std", "fid", "g_params", "d_params", "extractor")},
        **{k: result.get(k) for k in ("intra_fid", "class_accuracy")},
        "status": "ok" if finite else "failed",
        "entropy": entropy,
        "budget_steps": result["g_steps"],
        "seed": spec.seed,
        "eval_samples": result["num_samples"],
        "wall_s": result["wall_s"],
        "img_per_s": result["timed_steps"] * spec.batch / result["wall_s"],
        **{k: result.get(k) for k in EPOCH_EXTRA},
    }


EPOCH_EXTRA = ("g_entropy", "d_entropy", "d_iterations", "tau", "workers", "replica_digest")
"""What an epoch's row keeps in ``extra``."""


class AdversarialnasSearch(common.Driver):
    """Epoch by epoch, one mixed-op round each: an epoch is a boundary."""

    ROUND_ROW = False  # the epoch's row is its round's, cost included

    def fresh_state(self) -> dict[str, Any]:
        return {"epoch": 0, "supernet": None}

    def references(self) -> list[Any]:
        return [supernet.mixed_reference(round_spec(self, None))]

    @property
    def finished(self) -> bool:
        return self.state["epoch"] >= self.args.epochs

    def boundary(self) -> str:
        a, epoch = self.args, self.state["epoch"] + 1
        print(
            f"[adversarialnas] epoch {epoch} of {a.epochs} on {a.workers} worker(s), "
            f"batch {a.batch}, gf {a.gf}, df {a.df}, {a.dataset}",
            flush=True,
        )
        return f"epoch{epoch:03d}"

    def shared_round(self) -> dict[str, Any]:
        spec = round_spec(self, self.state["supernet"])
        return self.train_round(spec, f"epoch{self.state['epoch'] + 1:03d}", "train")

    def evaluate(self, name: str, shared: dict[str, Any]) -> tuple[list[dict], None]:
        """The epoch was scored at the end of its round: its one row."""
        spec = round_spec(self, None)
        row = epoch_row(shared["metrics"], self.state["epoch"] + 1, spec)
        return [self.row({**row, "kind": "epoch", **shared.get("cost", {})})], None

    def observe(self, rows: list[dict], shared: dict[str, Any], search: None) -> None:
        row = rows[0]
        self.state.update(epoch=row["generation"], supernet=shared["state"])
        print(
            f"[adversarialnas] epoch {row['generation']}: IS {row['is']:.3f}, "
            f"FID {row['fid']:.3f}, G {row['g_genotype']}",
            flush=True,
        )

    def finish(self) -> None:
        """``best.yaml``: the last epoch's derived G with AutoGAN-D (or the searched D)."""
        a = self.args
        table = results.load(self.out)
        last = table[table["strategy"] == STRATEGY].sort_values("generation").iloc[-1]
        g = spaces.Genotype.parse(last["g_genotype"])
        d = spaces.Genotype.parse(last["d_genotype"] if a.keep_searched_d else RETRAIN_D)
        note = (
            f"AdversarialNAS: generator derived after epoch {int(last['generation'])}; "
            f"searched D {last['d_genotype']}\n"
            f"EMA supernet at that epoch: IS {last['is']:.3f}, FID {last['fid']:.3f} "
            f"({last['extractor']})\n"
            f"retrain: raygan train --genotype-file THIS_FILE (--width-scale for laptops)"
        )
        arch = spaces.Arch(g, d, a.final_gf, a.final_df, self.layout.bottom_width)
        spaces.write_arch_file(storage.join(self.out, "best.yaml"), arch, comment=note)


def estimate(args: Spec) -> list[Any]:
    """The search's FLOPs (:mod:`raygan.estimate`): every epoch's D iterations of both mixed-op
    supernets (architecture and weight steps, a G step every ``n_critic``), and the EMA
    mixture scored after each. A probe measures the rate on a derived pair of the same widths
    (fixed networks: the supernets' many small ops may train at another rate)."""
    from raygan import estimate as est
    from raygan.train import TrainConfig

    g_space, bw = options.layout(args, G_SPACE)
    spec = supernet.MixedRoundSpec(
        g_space=g_space, d_space=D_SPACE, gf=args.gf, df=args.df, n_critic=args.n_critic,
        bottom_width=bw, batch=args.batch,
    )  # fmt: skip
    iterations = args.epochs * spec.round_steps(args.max_images)
    train, per_sample = est.mixed_flops(spec)
    scoring = (
        args.epochs
        * args.eval_samples
        * (per_sample + est.extractor_flops(est.extractor_for(args)))
    )
    g, d = (est.sampled(space, args.seed, 1)[0] for space in (g_space, D_SPACE))
    cfg = TrainConfig(n_critic=args.n_critic, g_batch=args.batch, d_batch=args.batch // 2)
    pair = est.Pair(g, d, args.gf, args.df, bw, cfg)
    return [est.Stage("search (mixed-op supernets)", iterations * train, scoring, pair)]


def run(args: Spec) -> int:
    """Search with ``args``, a spec that :func:`validate` passed."""
    return common.run_driver(STRATEGY, AdversarialnasSearch(args, STRATEGY))
