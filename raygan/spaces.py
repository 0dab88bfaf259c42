"""Search spaces as data, and the genotypes that live in them.

A space is read from ``search_spaces/*.yaml``: per cell, an ordered list of genes; each gene
indexes a list of named choices (an op list or plain values). Per-cell rules express the
validity constraints of METHODS.md (``not_all_none``: at least one of these edges is an op;
``absent_together``: EAGAN's coupled down genes are both -1 or neither).

A :class:`Genotype` is plain, immutable, hashable data: the space's name and one tuple of ints
per cell. Its canonical string form (``nas_cell_g:1,1,1,0,3,3,1/...``) round-trips through
:meth:`Genotype.parse` and is what trial tables and genotype files store.

Cells are independent of each other (every rule is within one cell), so sampling each cell
uniformly among its valid settings samples the whole space uniformly, and the space's size is
the product of its cells' sizes.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import yaml

from raygan import storage
from raygan.errors import one_line

ABSENT = -1
"""Gene value meaning "this edge does not exist" (only where a gene allows it)."""


class InvalidGenotype(ValueError):
    """A genotype that does not belong to its space; the message names cell, gene and value."""


@dataclass(frozen=True, order=True)
class Genotype:
    """One architecture: the space's name and one tuple of gene values per cell."""

    space: str
    cells: tuple[tuple[int, ...], ...]

    def __str__(self) -> str:
        return f"{self.space}:" + "/".join(",".join(map(str, cell)) for cell in self.cells)

    @classmethod
    def parse(cls, text: str) -> Genotype:
        """Inverse of ``str()``; validated against the named space."""
        space, sep, body = text.strip().partition(":")
        if not sep:
            raise InvalidGenotype(f"genotype {text!r} has no 'space:' prefix")
        try:
            cells = [[int(v) for v in cell.split(",")] for cell in body.split("/")] if body else []
        except ValueError as err:
            raise InvalidGenotype(f"genotype {text!r}: genes must be integers") from err
        return get(space).genotype(cells)

    def to_list(self) -> list[list[int]]:
        return [list(cell) for cell in self.cells]

    def flat(self) -> list[int]:
        """All genes in one list (AutoGAN's 14-int encoding for the ``autogan`` space)."""
        return [v for cell in self.cells for v in cell]


@dataclass(frozen=True)
class Gene:
    """One decision in a cell: which of ``choices`` (by index) an edge or option takes."""

    name: str
    choices: tuple[str, ...]
    allow: tuple[int, ...]
    absent: bool = False
    doc: str = ""

    @property
    def options(self) -> tuple[int, ...]:
        return self.allow + ((ABSENT,) if self.absent else ())

    def describe(self, value: int) -> str:
        return "absent" if value == ABSENT else self.choices[value]

    def allowed_text(self) -> str:
        return ", ".join(f"{v} ({self.describe(v)})" for v in self.options)


@dataclass(frozen=True)
class Rule:
    """A validity rule over gene positions within one cell."""

    kind: str  # "not_all_none" | "absent_together"
    positions: tuple[int, ...]

    def holds(self, cell: Sequence[int]) -> bool:
        values = [cell[p] for p in self.positions]
        if self.kind == "not_all_none":
            return any(v != 0 for v in values)  # op 0 is `none` in every op list that has it
        return all(v == ABSENT for v in values) or all(v != ABSENT for v in values)

    def explain(self, cell_no: int, genes: Sequence[Gene]) -> str:
        names = ", ".join(f"{p} ({genes[p].name})" for p in self.positions)
        if self.kind == "not_all_none":
            return f"cell {cell_no}: genes {names} are all 'none'; at least one must be an op"
        return f"cell {cell_no}: genes {names} must be absent (-1) together or present together"


_RULE_KINDS = ("not_all_none", "absent_together")


@dataclass(frozen=True)
class Space:
    """A named search space: per-cell genes and rules, with sampling and variation."""

    name: str
    role: str  # "generator" | "discriminator"
    cells: tuple[tuple[Gene, ...], ...]
    rules: tuple[Rule, ...]
    description: str = ""

    # ----- validity -------------------------------------------------------------------------
    def genotype(self, cells: Iterable[Iterable[int]]) -> Genotype:
        """Build a validated genotype from nested lists."""
        g = Genotype(self.name, tuple(tuple(int(v) for v in cell) for cell in cells))
        self.validate(g)
        return g

    def validate(self, g: Genotype) -> None:
        """Raise :class:`InvalidGenotype` naming cell, gene, value and what is allowed."""
        if g.space != self.name:
            raise InvalidGenotype(f"genotype of space {g.space!r} given where {self.name!r} is")
        if len(g.cells) != len(self.cells):
            raise InvalidGenotype(
                f"{self.name}: {len(g.cells)} cells given, the space has {len(self.cells)}"
            )
        for i, (cell, genes) in enumerate(zip(g.cells, self.cells, strict=True), start=1):
            if len(cell) != len(genes):
                raise InvalidGenotype(
                    f"{self.name} cell {i}: {len(cell)} genes given, expected {len(genes)} "
                    f"({', '.join(gene.name for gene in genes)})"
                )
            for pos, (value, gene) in enumerate(zip(cell, genes, strict=True)):
                if value not in gene.options:
                    raise InvalidGenotype(
                        f"{self.name} cell {i} gene {pos} ({gene.name}) = {value}: "
                        f"allowed {gene.allowed_text()}"
                    )
            for rule in self.rules:
                if not rule.holds(cell):
                    raise InvalidGenotype(f"{self.name} {rule.explain(i, genes)}")

    def is_valid_cell(self, cell: Sequence[int]) -> bool:
        return all(rule.holds(cell) for rule in self.rules)

    # ----- size -----------------------------------------------------------------------------
    def cell_size(self, index: int) -> int:
        """Exact number of valid settings of cell ``index`` (0-based), counted not assumed.

        Positions linked by a rule are enumerated together; free positions multiply in.
        """
        genes = self.cells[index]
        groups = _linked_groups(len(genes), [r.positions for r in self.rules])
        total = 1
        for group in groups:
            count = 0
            for combo in itertools.product(*(genes[p].options for p in group)):
                cell = [0] * len(genes)
                for p, v in zip(group, combo, strict=True):
                    cell[p] = v
                rules = [r for r in self.rules if set(r.positions) <= set(group)]
                count += all(r.holds(cell) for r in rules)
            total *= count
        return total

    def size(self) -> int:
        """Exact number of valid genotypes in the space."""
        return math.prod(self.cell_size(i) for i in range(len(self.cells)))

    # ----- sampling and variation -----------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Genotype:
        """Uniform over valid genotypes (per-cell rejection sampling)."""
        cells = []
        for genes in self.cells:
            while True:
                cell = tuple(int(rng.choice(gene.options)) for gene in genes)
                if self.is_valid_cell(cell):
                    cells.append(cell)
                    break
        return Genotype(self.name, tuple(cells))

    def edges(self, cell: int) -> list[tuple[int, ...]]:
        """The variation units of a cell: single genes, except coupled genes move together."""
        coupled = [r.positions for r in self.rules if r.kind == "absent_together"]
        units: list[tuple[int, ...]] = [c for c in coupled]
        taken = {p for c in coupled for p in c}
        units += [(p,) for p in range(len(self.cells[cell])) if p not in taken]
        return sorted(units)

    def _unit_values(self, cell: int, unit: tuple[int, ...]) -> list[tuple[int, ...]]:
        genes = self.cells[cell]
        combos = itertools.product(*(genes[p].options for p in unit))
        if len(unit) == 1:
            return list(combos)
        return [c for c in combos if all(v == ABSENT for v in c) or ABSENT not in c]

    def mutate(self, g: Genotype, rng: np.random.Generator, max_tries: int = 100) -> Genotype:
        """Change one edge (one gene, or one coupled gene pair) to another valid value."""
        for _ in range(max_tries):
            ci = int(rng.integers(len(self.cells)))
            units = [u for u in self.edges(ci) if len(self._unit_values(ci, u)) > 1]
            if not units:
                continue
            unit = units[int(rng.integers(len(units)))]
            current = tuple(g.cells[ci][p] for p in unit)
            choices = [v for v in self._unit_values(ci, unit) if v != current]
            new = choices[int(rng.integers(len(choices)))]
            cell = list(g.cells[ci])
            for p, v in zip(unit, new, strict=True):
                cell[p] = v
            if self.is_valid_cell(cell):
                cells = list(g.cells)
                cells[ci] = tuple(cell)
                return Genotype(self.name, tuple(cells))
        raise RuntimeError(f"{self.name}: no valid one-edge mutation of {g} found")

    def crossover(
        self, a: Genotype, b: Genotype, rng: np.random.Generator
    ) -> tuple[Genotype, Genotype] | None:
        """Swap one edge between two parents; ``None`` if no swap gives two new valid children."""
        candidates = []
        for ci in range(len(self.cells)):
            for unit in self.edges(ci):
                va = tuple(a.cells[ci][p] for p in unit)
                vb = tuple(b.cells[ci][p] for p in unit)
                if va == vb:
                    continue
                ca, cb = list(a.cells[ci]), list(b.cells[ci])
                for p, x, y in zip(unit, va, vb, strict=True):
                    ca[p], cb[p] = y, x
                if self.is_valid_cell(ca) and self.is_valid_cell(cb):
                    candidates.append((ci, tuple(ca), tuple(cb)))
        if not candidates:
            return None
        ci, ca, cb = candidates[int(rng.integers(len(candidates)))]
        cells_a, cells_b = list(a.cells), list(b.cells)
        cells_a[ci], cells_b[ci] = ca, cb
        return Genotype(self.name, tuple(cells_a)), Genotype(self.name, tuple(cells_b))

    # ----- as a Ray Tune search space ------------------------------------------------------
    def gene_keys(self, prefix: str = "") -> list[tuple[str, int, int]]:
        """``(key, cell, position)`` of every gene: keys ``c<cell>_<position>`` (1-based cell),
        after ``prefix``."""
        return [
            (f"{prefix}c{ci + 1}_{p}", ci, p)
            for ci, genes in enumerate(self.cells)
            for p in range(len(genes))
        ]

    def from_tune(self, config: dict[str, Any], prefix: str = "") -> Genotype:
        """The genotype of a Tune config (one choice of its allowed values per gene, keys
        :meth:`gene_keys`; ``raygan.searchers.tune_searcher.tune_space``), repaired where a
        rule fails, in a fixed way: ``not_all_none`` (every edge of the rule ``none``) sets
        the rule's first gene to its first op that is not ``none``; under ``absent_together``
        the rule's first gene decides: absent, the others become absent too; present, each
        absent other takes its first value that is not absent. A valid proposal is kept as
        it is."""
        cells = [[0] * len(genes) for genes in self.cells]
        for key, ci, p in self.gene_keys(prefix):
            cells[ci][p] = int(config[key])
        for ci, genes in enumerate(self.cells):
            for rule in self.rules:
                if rule.holds(cells[ci]):
                    continue
                if rule.kind == "not_all_none":
                    first = rule.positions[0]
                    cells[ci][first] = next(v for v in genes[first].options if v not in (0, ABSENT))
                elif cells[ci][rule.positions[0]] == ABSENT:
                    for q in rule.positions:
                        cells[ci][q] = ABSENT
                else:
                    for q in rule.positions:
                        if cells[ci][q] == ABSENT:
                            cells[ci][q] = next(v for v in genes[q].options if v != ABSENT)
        return self.genotype(cells)

    def to_config(self, g: Genotype, prefix: str = "") -> dict[str, int]:
        """The Tune config that stands for ``g`` (what a searcher is told it proposed)."""
        return {key: g.cells[ci][p] for key, ci, p in self.gene_keys(prefix)}


def _linked_groups(n: int, links: Sequence[Sequence[int]]) -> list[list[int]]:
    """Partition positions 0..n-1 into groups connected by the given links (union-find)."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for link in links:
        for p in link[1:]:
            parent[find(p)] = find(link[0])
    groups: dict[int, list[int]] = {}
    for p in range(n):
        groups.setdefault(find(p), []).append(p)
    return list(groups.values())


# ----- loading --------------------------------------------------------------------------------
def _parse_space(name: str, spec: dict[str, Any], ops: dict[str, list[str]]) -> Space:
    genes: dict[str, Gene] = {}
    for gname, gspec in (spec.get("genes") or {}).items():
        if "ops" in gspec:
            choices = tuple(ops[gspec["ops"]])
        else:
            choices = tuple(str(v) for v in gspec["values"])
        allow = tuple(gspec.get("allow", range(len(choices))))
        if any(not 0 <= v < len(choices) for v in allow):
            raise ValueError(f"space {name}: gene {gname} allows values outside its choices")
        genes[gname] = Gene(
            gname, choices, allow, bool(gspec.get("absent", False)), gspec.get("doc", "")
        )
    cells = tuple(tuple(genes[g] for g in cell) for cell in spec.get("cells") or [])
    rules = []
    for rspec in spec.get("rules") or []:
        ((kind, positions),) = rspec.items()
        if kind not in _RULE_KINDS:
            raise ValueError(f"space {name}: unknown rule {kind!r}; allowed {_RULE_KINDS}")
        rules.append(Rule(kind, tuple(positions)))
    return Space(name, spec["role"], cells, tuple(rules), spec.get("description", "").strip())


@functools.cache
def registry() -> dict[str, Space]:
    """Every space defined in the packaged ``search_spaces/*.yaml`` files, by name."""
    spaces: dict[str, Space] = {}
    for entry in sorted(
        resources.files("raygan").joinpath("search_spaces").iterdir(), key=lambda e: e.name
    ):
        if not entry.name.endswith(".yaml"):
            continue
        doc = yaml.safe_load(entry.read_text())
        ops = doc.pop("ops", {})
        for name, spec in doc.items():
            spaces[name] = _parse_space(name, spec, ops)
    return spaces


def get(name: str) -> Space:
    """The space called ``name``; a clear error listing the known spaces otherwise."""
    try:
        return registry()[name]
    except KeyError:
        raise InvalidGenotype(
            f"unknown search space {name!r}; known: {', '.join(sorted(registry()))}"
        ) from None


def validate(g: Genotype) -> Genotype:
    get(g.space).validate(g)
    return g


def table_columns(prefix: str, g: Genotype) -> dict[str, Any]:
    """A genotype as trial-table columns: canonical string plus nested int lists."""
    return {f"{prefix}_genotype": str(g), f"{prefix}_genome": g.to_list()}


def from_columns(prefix: str, row: dict[str, Any]) -> Genotype:
    """Inverse of :func:`table_columns` (reads the canonical string, the authoritative form)."""
    return Genotype.parse(row[f"{prefix}_genotype"])


# ----- genotype files ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Arch:
    """A generator/discriminator pair with the widths to build it: what a genotype file holds."""

    g: Genotype
    d: Genotype
    gf: int
    df: int
    bottom_width: int = 4
    latent_chunks: int | None = None  # nas_cell_g only: EAGAN's STL-10 G keeps 3 chunks


def write_arch_file(path: str, arch: Arch, comment: str = "") -> None:
    """Write ``arch`` as YAML that ``raygan train --genotype-file`` reads back."""
    lines = [f"# {line}" for line in comment.splitlines()]
    lines += [
        f'g: "{arch.g}"',
        f'd: "{arch.d}"',
        f"gf: {arch.gf}",
        f"df: {arch.df}",
        f"bottom_width: {arch.bottom_width}",
    ]
    if arch.latent_chunks is not None:
        lines.append(f"latent_chunks: {arch.latent_chunks}")
    storage.write_text(path, "\n".join(lines) + "\n")


ARCH_FILE_KEYS = ("g", "d", "gf", "df", "bottom_width", "latent_chunks")
"""What a genotype file holds: ``g`` and ``d`` (required), widths ``gf`` (default 256) and
``df`` (128), ``bottom_width`` (4) and, for ``nas_cell_g`` only, ``latent_chunks``."""

LATENT_CHUNKS = (1, 2, 3)
"""``latent_chunks`` a ``nas_cell_g`` generator takes: one chunk per cell at most (3 cells),
each a whole share of its 120 latent dimensions."""


class BadArchFile(InvalidGenotype):
    """A genotype file that cannot be used: ``path`` and the ``problem`` (one line)."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"genotype file {path}: {problem}")
        self.path = path
        self.problem = problem


def _whole(
    doc: dict, key: str, default: int | None, allowed: str, ok: Callable[[int], bool]
) -> int | None:
    """``doc[key]`` (``default`` when absent), a whole number for which ``ok`` holds."""
    value = doc.get(key, default)
    if value is None and default is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not ok(value):
        raise ValueError(f"{key} must be {allowed}, got {value!r}")
    return value


def _arch_genotype(doc: dict, key: str, role: str) -> Genotype:
    text = doc[key]
    if not isinstance(text, str):
        raise ValueError(f"{key} must be a genotype string ('space:genes'), got {text!r}")
    genotype = Genotype.parse(text)
    if get(genotype.space).role != role:
        fitting = ", ".join(sorted(n for n, sp in registry().items() if sp.role == role))
        raise ValueError(
            f"{key} must be a {role} genotype (spaces: {fitting}), got {text!r}, a "
            f"{get(genotype.space).role} of space {genotype.space}"
        )
    return genotype


def read_arch_file(path: str) -> Arch:
    """Read a genotype file (local path or URI); every problem is a :class:`BadArchFile`
    naming the file, the key, its value and what is allowed."""
    try:
        doc = yaml.safe_load(storage.read_bytes(path))
    except (OSError, ValueError) as err:  # missing, a folder, unknown scheme, no access
        raise BadArchFile(path, f"cannot read it ({one_line(err)})") from None
    except yaml.YAMLError as err:
        raise BadArchFile(path, f"not valid YAML ({one_line(err)})") from None
    if not isinstance(doc, dict):
        raise BadArchFile(
            path, f"must be a YAML mapping of {', '.join(ARCH_FILE_KEYS)}, got {type(doc).__name__}"
        )
    unknown = sorted(str(k) for k in doc if k not in ARCH_FILE_KEYS)
    if unknown:
        raise BadArchFile(path, f"unknown key {unknown[0]!r}; allowed: {', '.join(ARCH_FILE_KEYS)}")
    missing = [k for k in ("g", "d") if k not in doc]
    if missing:
        raise BadArchFile(path, f"needs keys g and d (and gf, df); {missing[0]} is missing")
    try:
        g = _arch_genotype(doc, "g", "generator")
        d = _arch_genotype(doc, "d", "discriminator")
        positive = "a whole number >= 1"
        gf = _whole(doc, "gf", 256, positive, lambda v: v >= 1)
        df = _whole(doc, "df", 128, positive, lambda v: v >= 1)
        bottom_width = _whole(doc, "bottom_width", 4, positive, lambda v: v >= 1)
        if g.space != "nas_cell_g" and doc.get("latent_chunks") is not None:
            raise ValueError(
                f"latent_chunks is for nas_cell_g generators only, got {doc['latent_chunks']!r} "
                f"with space {g.space}"
            )
        chunks = _whole(
            doc,
            "latent_chunks",
            None,
            f"one of {', '.join(map(str, LATENT_CHUNKS))}",
            lambda v: v in LATENT_CHUNKS,
        )
    except ValueError as err:  # InvalidGenotype too
        raise BadArchFile(path, one_line(err)) from None
    return Arch(g, d, gf, df, bottom_width, chunks)
