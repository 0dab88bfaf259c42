"""Ray Tune searchers for raygan's search algorithms.

Each class here is a thin :class:`~raygan.searchers.base.AskTellSearcher` around one plain
ask/tell algorithm: the algorithm owns the search, the adapter owns the Tune protocol
(suggest, on_trial_complete, save/restore for ``Tuner.restore``). Metrics and modes come
from the algorithm, so ``TuneConfig`` needs neither; keep ``num_samples=-1`` (or large) and let
the searcher end the run. A sketch::

    searcher = NSGA2Searcher("nas_cell_g", population_size=32, generations=19,
                             metrics=["is", "fid"], modes=["max", "min"], seed=0)
    tune.Tuner(trainable, tune_config=tune.TuneConfig(search_alg=searcher, num_samples=-1))

Read the search's own records (``history()``, ``front()``) from ``searcher.algorithm``, or,
after the run, from the experiment directory with ``restore_from_dir``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from raygan.searchers.base import AskTellSearcher
from raygan.searchers.controller import ControllerSearch
from raygan.searchers.nsga2 import NSGA2
from raygan.spaces import Space


class NSGA2Searcher(AskTellSearcher):
    """EAGAN's NSGA-II under Tune: each trial evaluates one individual of one generation.

    Pass an :class:`~raygan.searchers.nsga2.NSGA2`, or the space and the keyword arguments of
    ``NSGA2``. The trial config holds the genotype string under ``config_key`` ("genotype"),
    plus ``generation``, ``individual`` and ``parents``; ``config`` (and Tune's
    ``param_space``) adds fixed fields such as a training budget. A trial that errors, or
    reports a missing or non-finite objective, is a failed (dominated) individual.
    """

    def __init__(
        self,
        space: NSGA2 | Space | str,
        *,
        config: Mapping[str, Any] | None = None,
        **nsga2_kwargs: Any,
    ):
        if isinstance(space, NSGA2):
            if nsga2_kwargs:
                raise TypeError(f"NSGA2Searcher got an NSGA2 and its arguments {nsga2_kwargs}")
            algorithm = space
        else:
            algorithm = NSGA2(space, **nsga2_kwargs)
        super().__init__(algorithm, config=config)


class RLControllerSearcher(AskTellSearcher):
    """AutoGAN's RL controller under Tune: each trial scores one sampled architecture.

    Pass a :class:`~raygan.searchers.controller.ControllerSearch`, or its keyword arguments.
    The trial config holds ``genotype`` (always a full, valid genotype string),
    ``mlas_stage``, ``active_cells`` (the cells searched so far; the rest are filler),
    ``controller_step``, ``phase`` ("search", or "select" for a stage's end candidates) and
    ``entropy``; ``config`` (and Tune's ``param_space``) adds fixed fields. The trainable
    reports the reward metric ("is" by default). A trial that errors or reports no finite
    reward scores the search's ``penalty``. Proposals go out a batch at a time, so at most
    ``batch_size`` trials (``candidates`` at a stage's end) run at once;
    ``algorithm.total_trials`` is the whole search's trial count.
    """

    def __init__(
        self,
        algorithm: ControllerSearch | None = None,
        *,
        config: Mapping[str, Any] | None = None,
        **controller_kwargs: Any,
    ):
        if algorithm is not None and controller_kwargs:
            raise TypeError(
                f"RLControllerSearcher got a ControllerSearch and its arguments {controller_kwargs}"
            )
        if algorithm is None:
            algorithm = ControllerSearch(**controller_kwargs)
        super().__init__(algorithm, config=config)
