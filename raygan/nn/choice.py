"""How one module family serves both fixed networks and supernets.

Every searchable decision keeps its candidates in an ``nn.ModuleDict`` keyed by choice name
(``conv3x3``, ``pre``, ...). A supernet makes every allowed candidate; a fixed network, built
from a genotype, makes only the chosen one. The state-dict key of a candidate is therefore the
same in both, so a fixed network's keys are a subset of its supernet's and a candidate inherits
its weights by plain key lookup (:func:`raygan.nn.inherit`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from raygan.nn.ops import OP_LISTS, OpFactory, op_list_of
from raygan.spaces import ABSENT, Gene

Pick = int | torch.Tensor | None
"""What an edge is told to do: a choice index (single path), a weight per choice (mixed op),
or ``None`` (a fixed network runs the one candidate it has)."""


def candidates(gene: Gene, chosen: int | None, make: Callable[[str], nn.Module]) -> nn.ModuleDict:
    """All allowed candidates of ``gene`` (``chosen is None``: supernet) or only the chosen one.

    ``chosen == ABSENT`` (a gene that may be absent) makes none.
    """
    if chosen is None:
        indices: tuple[int, ...] = gene.allow
    else:
        indices = () if chosen == ABSENT else (chosen,)
    return nn.ModuleDict({gene.choices[i]: make(gene.choices[i]) for i in indices})


class Edge(nn.Module):
    """One op-choice edge of a cell, run single-path or as a mixed op.

    Single path (an int ``pick``, or ``None`` in a fixed network) runs the chosen op. Mixed
    (a 1-D ``pick`` of one weight per choice of the gene, in genome order) returns
    ``sum_i w_i * op_i(x)`` over the candidates this edge has. Choices the gene does not allow
    (the first AdversarialNAS discriminator cell allows only convs) have no candidate, so their
    weights are ignored: search code should mask those logits (see ``edges()`` of a supernet) so
    that the allowed weights sum to one.
    """

    def __init__(
        self,
        gene: Gene,
        ops: Mapping[str, OpFactory],
        chosen: int | None,
        c_in: int,
        c_out: int,
        **options: bool,
    ) -> None:
        super().__init__()
        self.choices = gene.choices
        self.chosen = chosen
        self.ops = candidates(gene, chosen, lambda name: ops[name](c_in, c_out, **options))

    def forward(self, x: torch.Tensor, pick: Pick = None) -> torch.Tensor:
        if isinstance(pick, torch.Tensor):
            if pick.shape != (len(self.choices),):
                raise ValueError(
                    f"mixed-op weights of shape {tuple(pick.shape)} for an edge with "
                    f"{len(self.choices)} choices"
                )
            return sum(
                pick[i] * self.ops[name](x)
                for i, name in enumerate(self.choices)
                if name in self.ops
            )
        index = self.chosen if pick is None else pick
        return self.ops[self.choices[index]](x)


def make_edges(
    genes: Sequence[Gene],
    chosen: Sequence[int] | None,
    c_in: Sequence[int],
    c_out: int,
    **opts: Sequence[bool],
) -> nn.ModuleDict:
    """One :class:`Edge` per gene, keyed by gene name, each reading ``c_in[position]`` channels.

    ``opts`` maps option names to one value per gene position (``sn``, ``relu``).
    """
    chosen = chosen or [None] * len(genes)
    return nn.ModuleDict(
        {
            gene.name: Edge(
                gene,
                OP_LISTS[op_list_of(gene.choices)],
                chosen[p],
                c_in[p],
                c_out,
                **{k: v[p] for k, v in opts.items()},
            )
            for p, gene in enumerate(genes)
        }
    )
