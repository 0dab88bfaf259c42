"""AutoGAN's RL search: an LSTM controller trained by REINFORCE, grown cell by cell (MLAS).

Pure torch, no Ray: :class:`ControllerSearch` satisfies ``raygan.searchers.asktell.AskTell``, so
the search driver runs it (its proposals as Tune trials) and tests run it on its own.
The method is METHODS.md section 1; the choices it leaves open are fixed here:

- **Reward.** A metric of the trial result (``"is"`` by default) or a callable over several
  metrics (e.g. ``lambda r: r["is"] - 0.1 * r["fid"]``). A failed trial, a missing or
  non-finite metric, or a non-finite reward scores ``penalty``: 0.0 for the default IS reward,
  below every attainable Inception Score (IS >= 1), so a failure always ranks under the worst
  working architecture; any other reward must name its own penalty.
- **On-policy updates under out-of-order completion.** Proposals are keyed and ``ask`` hands
  out nothing while a batch is out, so the weights that sampled a batch are the weights that
  update on it. The update therefore recomputes each sample's log-prob from its stored actions
  (identical to the sampling-time value, with a fresh autograd graph) instead of storing
  log-probs: the result does not depend on completion order (the batch is processed in
  proposal order) and pending proposals stay plain data that survive ``state_dict``.
- **Baseline.** Exponential moving average of the batch-mean total reward (reward plus
  ``entropy_weight`` x the sample's summed entropy), initialised to the first batch's mean;
  each advantage is taken against the baseline of earlier batches, then the baseline moves.
- **MLAS.** Stage ``s`` searches cell ``s`` (0-based) only. At a stage's end ``candidates``
  samples are proposed and scored, and the ``keep`` best distinct prefixes are kept with the
  controller's recurrent state after them. The next stage gets a freshly initialised
  controller (new weights, optimiser and baseline: its reward scale is a new resolution's)
  whose every sample continues from a kept prefix chosen uniformly at random. The last stage
  ends the same way; its kept prefixes (full genotypes) are the search's answer.
- **Unsearched cells.** A proposal is always a full, valid genotype: cells after the current
  stage are filled from ``filler`` (default: every gene's first option, all zeros in the
  ``autogan`` space). The config says how many cells are real (``active_cells``); a trainable
  that honours MLAS builds only those, at the stage's resolution.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from raygan import spaces
from raygan.searchers.asktell import Suggestion
from raygan.spaces import Genotype, Space


class LSTMState(NamedTuple):
    """The controller's recurrent state between decisions: hidden, cell and the next input."""

    h: Tensor
    c: Tensor
    x: Tensor


class Rollout(NamedTuple):
    """One pass over some cells' decisions: the actions per cell, summed log-prob and entropy."""

    actions: tuple[tuple[int, ...], ...]
    log_prob: Tensor
    entropy: Tensor
    state: LSTMState


class Controller(nn.Module):
    """AutoGAN's LSTM policy: one decision per gene, cell after cell.

    Decision ``d`` (numbered over all cells' genes) has its own linear head and its own rows of
    one shared embedding table, starting at ``offsets[d]``: the embedding of the action just
    taken is the next step's input, so later choices condition on earlier ones. A fresh rollout
    starts from zeros; an MLAS rollout continues from a kept prefix's :class:`LSTMState`.
    Actions index a gene's options (``Gene.options``), not its values. Weights use PyTorch's
    default initialisation.
    """

    def __init__(self, choices: Sequence[Sequence[int]], hidden: int = 100):
        super().__init__()
        counts = [n for cell in choices for n in cell]
        starts = list(itertools.accumulate(len(cell) for cell in choices))
        self.cell_decisions = tuple(
            tuple(range(end - len(cell), end)) for cell, end in zip(choices, starts, strict=True)
        )
        self.offsets = tuple(itertools.accumulate([0, *counts[:-1]]))
        self.hidden = hidden
        self.lstm = nn.LSTMCell(hidden, hidden)
        self.embedding = nn.Embedding(sum(counts), hidden)
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in counts)

    @classmethod
    def for_space(cls, space: Space, hidden: int = 100) -> Controller:
        return cls([[len(gene.options) for gene in cell] for cell in space.cells], hidden)

    def initial_state(self) -> LSTMState:
        zeros = torch.zeros(1, self.hidden)
        return LSTMState(zeros, zeros, zeros)

    def sample(
        self,
        generator: torch.Generator,
        cells: Sequence[int] | None = None,
        prefix_state: LSTMState | None = None,
    ) -> Rollout:
        """Draw actions for ``cells`` (default: all) from the softmax, without gradients."""
        with torch.no_grad():
            return self._rollout(self._cells(cells), prefix_state, None, generator)

    def evaluate(
        self,
        actions: Sequence[Sequence[int]],
        cells: Sequence[int] | None = None,
        prefix_state: LSTMState | None = None,
    ) -> Rollout:
        """Log-prob and entropy of given actions, with gradients (for the update)."""
        return self._rollout(self._cells(cells), prefix_state, actions, None)

    def _cells(self, cells: Sequence[int] | None) -> tuple[int, ...]:
        return tuple(range(len(self.cell_decisions))) if cells is None else tuple(cells)

    def _rollout(
        self,
        cells: tuple[int, ...],
        prefix_state: LSTMState | None,
        actions: Sequence[Sequence[int]] | None,
        generator: torch.Generator | None,
    ) -> Rollout:
        h, c, x = prefix_state or self.initial_state()
        log_prob, entropy = torch.zeros(()), torch.zeros(())
        taken = []
        for i, cell in enumerate(cells):
            cell_actions = []
            for j, d in enumerate(self.cell_decisions[cell]):
                h, c = self.lstm(x, (h, c))
                logp = F.log_softmax(self.heads[d](h), dim=-1)[0]
                if actions is None:
                    a = int(torch.multinomial(logp.exp(), 1, generator=generator))
                else:
                    a = int(actions[i][j])
                log_prob = log_prob + logp[a]
                entropy = entropy - (logp.exp() * logp).sum()
                x = self.embedding.weight[self.offsets[d] + a].unsqueeze(0)
                cell_actions.append(a)
            taken.append(tuple(cell_actions))
        return Rollout(tuple(taken), log_prob, entropy, LSTMState(h, c, x))


def reinforce_loss(log_probs: Tensor, advantages: Tensor) -> Tensor:
    """Batch mean of ``-(advantage * sum of the sample's log-probs)``.

    One scalar advantage per sample times that sample's summed log-prob; not the reference
    code's (1, T) x (T, 1) broadcast, which mixes every decision with every advantage.
    """
    return -(advantages.detach() * log_probs).mean()


@dataclass(frozen=True)
class Prefix:
    """Cells fixed by earlier MLAS stages (gene values), with the controller state after them."""

    cells: tuple[tuple[int, ...], ...]
    state: LSTMState
    reward: float


@dataclass
class _Proposal:
    """A proposal out for scoring: enough to rebuild its rollout exactly at update time."""

    index: int
    actions: tuple[tuple[int, ...], ...]
    prefix: int | None  # index into ``kept``; None: a rollout from the zero state
    reward: float | None = None


class ControllerSearch:
    """AutoGAN's controller search with an ask/tell interface (see the module docstring).

    Args:
        space: a search space without validity rules (the controller samples genes freely).
        reward: the result metric to maximise, or a callable from ``metrics`` to the reward.
        metrics: the metrics the callable reads (required with a callable reward).
        penalty: reward of a failed trial; defaults to 0.0 only for the ``"is"`` reward.
        mlas: search cell by cell (one stage per cell); False searches all cells at once.
        steps: controller updates per stage (one int for every stage, or one per stage).
        batch_size: proposals per update (1 in the paper; more runs trials in parallel).
        candidates, keep: scored samples at a stage's end, and distinct prefixes kept.
        filler: genotype whose cells stand in for cells not searched yet.
        seed: seeds sampling, prefix choice and every stage's controller initialisation.
    """

    def __init__(
        self,
        space: str = "autogan",
        *,
        reward: str | Callable[[Mapping[str, float]], float] = "is",
        metrics: Sequence[str] | None = None,
        penalty: float | None = None,
        mlas: bool = True,
        steps: int | Sequence[int] = 30,
        batch_size: int = 1,
        candidates: int = 10,
        keep: int = 5,
        lr: float = 3.5e-4,
        betas: tuple[float, float] = (0.0, 0.9),
        baseline_decay: float = 0.9,
        entropy_weight: float = 1e-3,
        hidden: int = 100,
        filler: Genotype | str | None = None,
        seed: int = 0,
    ):
        self.space = spaces.get(space)
        if self.space.rules:
            raise ValueError(
                f"space {space!r} has validity rules; the controller cannot honour them"
            )
        if callable(reward):
            if not metrics or penalty is None:
                raise ValueError("a callable reward needs `metrics` (what it reads) and `penalty`")
            self.metrics = tuple(metrics)
            self.modes: tuple[str, ...] = ("obs",) * len(self.metrics)
        else:
            self.metrics, self.modes = (reward,), ("max",)
            if penalty is None:
                if reward != "is":
                    raise ValueError(f"reward {reward!r} needs an explicit `penalty`")
                penalty = 0.0
        self._reward = reward
        self.penalty = float(penalty)
        n_cells = len(self.space.cells)
        self.stages = tuple((i,) for i in range(n_cells)) if mlas else (tuple(range(n_cells)),)
        self.mlas = mlas
        self.steps = (steps,) * len(self.stages) if isinstance(steps, int) else tuple(steps)
        if len(self.steps) != len(self.stages) or min(self.steps) < 0:
            raise ValueError(f"steps: one count >= 0 per stage ({len(self.stages)}), got {steps}")
        if batch_size < 1 or not 1 <= keep <= candidates:
            raise ValueError("need batch_size >= 1 and 1 <= keep <= candidates")
        self.batch_size, self.candidates, self.keep = batch_size, candidates, keep
        self.lr, self.betas = lr, tuple(betas)
        self.baseline_decay, self.entropy_weight = baseline_decay, entropy_weight
        self.hidden = hidden
        self.filler = self._filler(filler)

        self._generator = torch.Generator().manual_seed(seed)
        self.stage = 0
        self.total_updates = 0
        self.kept: list[Prefix] = []
        self._batch: dict[str, _Proposal] = {}
        self._counter = 0
        self._new_controller()

    # ----- ask/tell -------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.phase == "done"

    @property
    def total_trials(self) -> int:
        """Proposals the whole search makes (a bound for Tune's ``num_samples``)."""
        return sum(self.steps) * self.batch_size + len(self.stages) * self.candidates

    def ask(self) -> Suggestion | None:
        """The next proposal, or ``None`` while the current batch is out (or when finished)."""
        if self.finished or len(self._batch) >= self._batch_target():
            return None
        prefix = None
        if self.kept:
            prefix = int(torch.randint(len(self.kept), (1,), generator=self._generator))
        rollout = self.controller.sample(
            self._generator, self.stages[self.stage], self._prefix_state(prefix)
        )
        proposal = _Proposal(self._counter, rollout.actions, prefix)
        key = f"p{self._counter}"
        self._counter += 1
        self._batch[key] = proposal
        cells = self._searched_cells(proposal)
        genotype = self.space.genotype(list(cells) + list(self.filler[len(cells) :]))
        return Suggestion(
            key,
            {
                "genotype": str(genotype),
                "mlas_stage": self.stage if self.mlas else None,
                "active_cells": len(cells),
                "controller_step": self.step,
                "phase": self.phase,
                "entropy": float(rollout.entropy),
            },
        )

    def tell(self, key: str, result: Mapping[str, Any] | None) -> None:
        """Score proposal ``key``; ``None`` or an unusable result scores ``penalty``."""
        proposal = self._batch.get(key)
        if proposal is None:
            raise KeyError(f"no open proposal {key!r}")
        if proposal.reward is not None:
            raise ValueError(f"proposal {key!r} was already told")
        proposal.reward = self.reward_of(result)
        batch = self._batch.values()
        if len(batch) == self._batch_target() and all(p.reward is not None for p in batch):
            self._close_batch()

    def sample_paths(self, n: int, seed: int) -> list[str]:
        """``n`` architectures from the controller's current policy for a shared round.

        Drawn like the search's own proposals (a kept prefix chosen uniformly, then the stage's
        cell), but from a generator of their own: the search's random state, and so its next
        proposals, stay what they would be without the round.
        """
        generator = torch.Generator().manual_seed(seed)
        cells = self.stages[self.stage]
        out = []
        for _ in range(n):
            prefix = None
            if self.kept:
                prefix = self.kept[int(torch.randint(len(self.kept), (1,), generator=generator))]
            rollout = self.controller.sample(generator, cells, prefix.state if prefix else None)
            sampled = tuple(
                tuple(gene.options[a] for gene, a in zip(self.space.cells[c], acts, strict=True))
                for c, acts in zip(cells, rollout.actions, strict=True)
            )
            chosen = (prefix.cells if prefix else ()) + sampled
            out.append(str(self.space.genotype([*chosen, *self.filler[len(chosen) :]])))
        return out

    # ----- MLAS -----------------------------------------------------------------------------
    def top_k(self, k: int) -> list[Prefix]:
        """The ``k`` best distinct searched prefixes among the open batch's scored proposals.

        At a stage's end the open batch is the selection candidates. Ties go to the earlier
        proposal; fewer than ``k`` come back when fewer distinct prefixes were scored.
        """
        scored = sorted(
            (p for p in self._batch.values() if p.reward is not None),
            key=lambda p: (-p.reward, p.index),
        )
        best: dict[tuple[tuple[int, ...], ...], Prefix] = {}
        for p in scored:
            cells = self._searched_cells(p)
            if cells in best:
                continue
            with torch.no_grad():
                state = self.controller.evaluate(
                    p.actions, self.stages[self.stage], self._prefix_state(p.prefix)
                ).state
            best[cells] = Prefix(cells, state, p.reward)
            if len(best) == k:
                break
        return list(best.values())

    def grow(self, keep: Sequence[Prefix]) -> None:
        """Start the next stage from ``keep``, with a freshly initialised controller."""
        if self.stage + 1 >= len(self.stages):
            raise ValueError("the last stage is already running; there is nothing to grow into")
        if self._batch:
            raise RuntimeError("cannot grow while proposals are out")
        n_fixed = self.stages[self.stage][-1] + 1
        if not keep or any(len(p.cells) != n_fixed for p in keep):
            raise ValueError(f"grow needs at least one prefix of {n_fixed} cells")
        self.kept = list(keep)
        self.stage += 1
        self._new_controller()

    # ----- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The whole search state as plain data (numbers, lists, dicts, numpy arrays)."""
        return {
            "space": self.space.name,
            "stage": self.stage,
            "step": self.step,
            "phase": self.phase,
            "total_updates": self.total_updates,
            "baseline": self.baseline,
            "counter": self._counter,
            "generator": self._generator.get_state().numpy().copy(),
            "controller": _to_plain(self.controller.state_dict()),
            "optimizer": _to_plain(self.optimizer.state_dict()),
            "kept": [
                {
                    "cells": [list(c) for c in p.cells],
                    "reward": p.reward,
                    **{name: _to_plain(t) for name, t in p.state._asdict().items()},
                }
                for p in self.kept
            ],
            "batch": {key: asdict(p) for key, p in self._batch.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output into a search built with the same options."""
        if state["space"] != self.space.name:
            raise ValueError(f"state of space {state['space']!r} loaded into {self.space.name!r}")
        self.stage, self.step, self.phase = state["stage"], state["step"], state["phase"]
        self.total_updates, self.baseline = state["total_updates"], state["baseline"]
        self._counter = state["counter"]
        self._generator.set_state(torch.tensor(state["generator"]))
        self.controller.load_state_dict(_from_plain(state["controller"]))
        self.optimizer.load_state_dict(_from_plain(state["optimizer"]))
        self.kept = [
            Prefix(
                tuple(tuple(c) for c in p["cells"]),
                LSTMState(*(_from_plain(p[name]) for name in LSTMState._fields)),
                p["reward"],
            )
            for p in state["kept"]
        ]
        self._batch = {
            key: _Proposal(
                p["index"], tuple(tuple(a) for a in p["actions"]), p["prefix"], p["reward"]
            )
            for key, p in state["batch"].items()
        }

    # ----- internals ------------------------------------------------------------------------
    def _filler(self, filler: Genotype | str | None) -> tuple[tuple[int, ...], ...]:
        if filler is None:
            return tuple(_first_options(self.space, i) for i in range(len(self.space.cells)))
        g = Genotype.parse(filler) if isinstance(filler, str) else filler
        self.space.validate(g)
        return g.cells

    def _new_controller(self) -> None:
        """A fresh controller, optimiser and baseline for the current stage, seeded from ours."""
        init_seed = int(torch.randint(2**62, (1,), generator=self._generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            self.controller = Controller.for_space(self.space, self.hidden)
        self.optimizer = torch.optim.Adam(
            self.controller.parameters(), lr=self.lr, betas=self.betas
        )
        self.baseline: float | None = None
        self.step = 0
        self.phase = "search" if self.steps[self.stage] > 0 else "select"

    def _batch_target(self) -> int:
        return self.batch_size if self.phase == "search" else self.candidates

    def _prefix_state(self, prefix: int | None) -> LSTMState | None:
        return None if prefix is None else self.kept[prefix].state

    def _searched_cells(self, p: _Proposal) -> tuple[tuple[int, ...], ...]:
        """The proposal's cells up to the current stage's, as gene values."""
        before = self.kept[p.prefix].cells if p.prefix is not None else ()
        sampled = tuple(
            tuple(gene.options[a] for gene, a in zip(self.space.cells[ci], acts, strict=True))
            for ci, acts in zip(self.stages[self.stage], p.actions, strict=True)
        )
        return before + sampled

    def reward_of(self, result: Mapping[str, Any] | None) -> float:
        """The reward of a trial result: ``penalty`` for a failed or unusable one."""
        if result is None:
            return self.penalty
        values = {}
        for m in self.metrics:
            try:
                values[m] = float(result[m])
            except (KeyError, TypeError, ValueError):
                return self.penalty
            if not math.isfinite(values[m]):
                return self.penalty
        reward = float(self._reward(values)) if callable(self._reward) else values[self._reward]
        return reward if math.isfinite(reward) else self.penalty

    def _close_batch(self) -> None:
        if self.phase == "search":
            self._update(sorted(self._batch.values(), key=lambda p: p.index))
            self._batch.clear()
            self.step += 1
            self.total_updates += 1
            if self.step == self.steps[self.stage]:
                self.phase = "select"
        else:
            keep = self.top_k(self.keep)
            self._batch.clear()
            if self.stage + 1 < len(self.stages):
                self.grow(keep)
            else:
                self.kept = keep
                self.phase = "done"

    def _update(self, batch: list[_Proposal]) -> None:
        """One REINFORCE step on a fully scored batch, then the baseline moves."""
        cells = self.stages[self.stage]
        rollouts = [
            self.controller.evaluate(p.actions, cells, self._prefix_state(p.prefix)) for p in batch
        ]
        totals = [
            p.reward + self.entropy_weight * float(r.entropy.detach())
            for p, r in zip(batch, rollouts, strict=True)
        ]
        mean = sum(totals) / len(totals)
        baseline = mean if self.baseline is None else self.baseline
        advantages = torch.tensor([t - baseline for t in totals])
        loss = reinforce_loss(torch.stack([r.log_prob for r in rollouts]), advantages)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.baseline = self.baseline_decay * baseline + (1 - self.baseline_decay) * mean


def _first_options(space: Space, index: int) -> tuple[int, ...]:
    """Every gene's first option: valid in a space without rules (all zeros in ``autogan``)."""
    return tuple(gene.options[0] for gene in space.cells[index])


def _to_plain(obj: Any) -> Any:
    """Tensors to numpy copies (copies: torch updates its buffers in place), recursively."""
    if isinstance(obj, Tensor):
        return obj.detach().numpy().copy()
    if isinstance(obj, Mapping):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_plain(v) for v in obj)
    return obj


def _from_plain(obj: Any) -> Any:
    """Inverse of :func:`_to_plain`; tensors are copies, so the state given stays untouched."""
    if isinstance(obj, np.ndarray):
        return torch.tensor(obj)
    if isinstance(obj, Mapping):
        return {k: _from_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_from_plain(v) for v in obj)
    return obj
