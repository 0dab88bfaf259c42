"""``raygan search random``: the random-search baseline with weight sharing (Li & Talwalkar,
UAI 2019), on EAGAN's space and pipeline.

Everything but the proposals is EAGAN's (:mod:`raygan.strategies.eagan`): both stages, the
shared supernet rounds, the budgets, the trials, survival of the best half and the final pick
by the same rule. Only each generation's new members differ: drawn uniformly from the space
(``NSGA2(offspring="uniform")``) instead of bred from the survivors. A search and its baseline
with the same preset and seed therefore spend the same budget, and their tables compare
directly (``raygan compare``). The from-scratch shape, ``--from-scratch``, is the Tune
search's random searcher (:func:`raygan.cli.from_scratch`).
"""

from __future__ import annotations

import argparse

from raygan.spec import Spec
from raygan.strategies import common, eagan

HELP = (
    "random baseline with weight sharing: EAGAN's stages and budgets, members drawn uniformly "
    "(--from-scratch: without weight sharing)"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    eagan.add_arguments(p)
    p.add_argument(
        "--from-scratch",
        action="store_true",
        default=argparse.SUPPRESS,  # never reaches the spec: the command line rewrites it
        help="the baseline without weight sharing instead: `raygan search tune --searcher "
        "random`, with its options (--trials, --trial-steps, --search, --asha)",
    )


validate = eagan.validate
estimate = eagan.estimate  # the same rounds and trials: what breeding costs is nothing


class RandomSearch(eagan.EaganSearch):
    """EAGAN's driver, whose generations are refilled by uniform draws."""

    OFFSPRING = "uniform"


def run(args: Spec) -> int:
    """Search with ``args``, a spec that :func:`validate` passed."""
    return common.run_driver("random", RandomSearch(args, "random"))
