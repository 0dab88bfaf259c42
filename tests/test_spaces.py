"""Search spaces as data: sizes, published genomes, validation messages, variation operators."""

import itertools

import numpy as np
import pytest

from raygan import spaces
from raygan.spaces import ABSENT, Genotype, InvalidGenotype

PUBLISHED = [
    "autogan:1,0,1,1/1,0,0,1,1/1,0,1,0,3",
    "autogan:1,0,1,1/1,0,1,1,1/1,0,1,1,3",
    "autogan:1,1,1,1/1,0,0,1,1/1,0,1,0,3",
    "nas_cell_g:1,1,1,0,3,3,1/1,1,0,1,3,3,3/0,1,0,3,3,0,3",
    "nas_cell_g:1,1,1,0,2,3,1/1,1,0,1,3,0,5/0,1,0,3,0,0,3",
    "eagan_d:3,0,3,0,2,0,0/1,0,3,0,1,-1,-1/3,0,3,0,1,-1,-1",
    "eagan_d:3,0,3,0,2,0,0/4,0,4,0,1,-1,-1/3,0,3,0,1,-1,-1",
    "autogan_d:",
]


def test_sizes_are_computed_exactly():
    assert spaces.get("autogan").size() == 373_248
    assert [spaces.get("autogan").cell_size(i) for i in range(3)] == [36, 72, 144]
    assert spaces.get("nas_cell_g").cell_size(0) == 9 * 48 * 342 == 147_744
    # The unconstrained G space of METHODS.md is (9 x 7^5)^3; the rules remove the rest.
    assert spaces.get("nas_cell_g").size() == 147_744**3
    # EAGAN DisCell: 6 ops for n0->n1, 48 for each 'not both none' pair, 37 coupled down pairs.
    assert spaces.get("eagan_d").cell_size(0) == 6 * 48 * 48 * 37


@pytest.mark.parametrize("text", PUBLISHED)
def test_published_genomes_round_trip(text):
    g = Genotype.parse(text)
    assert str(g) == text
    assert Genotype.parse(str(g)) == g
    assert hash(g) == hash(Genotype.parse(text))
    assert spaces.get(g.space).genotype(g.to_list()) == g


def test_autogan_flat_encoding_is_the_papers_14_ints():
    g = Genotype.parse(PUBLISHED[0])
    assert g.flat() == [1, 0, 1, 1, 1, 0, 0, 1, 1, 1, 0, 1, 0, 3]


def test_op_order_matches_methods():
    gene = spaces.get("nas_cell_g").cells[0][2]
    assert gene.choices == (
        "none",
        "skip",
        "conv1x1",
        "conv3x3",
        "conv5x5",
        "dil_conv3x3",
        "dil_conv5x5",
    )
    assert spaces.get("nas_cell_g").cells[0][0].choices == ("nearest", "bilinear", "deconv")
    assert spaces.get("eagan_d").cells[0][5].choices == (
        "avg_pool",
        "max_pool",
        "conv3x3",
        "conv5x5",
        "dil_conv3x3",
        "dil_conv5x5",
    )
    assert spaces.get("autogan").cells[2][4].choices == ("none", "cell2", "cell1", "both")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "nas_cell_g:1,1,1,0,3,3,9/1,1,0,1,3,3,3/0,1,0,3,3,0,3",
            "cell 1 gene 6 (n2_n3) = 9: allowed 0 (none)",
        ),
        (
            "nas_cell_g:1,1,0,0,3,3,1/1,1,0,1,3,3,3/0,1,0,3,3,0,3",
            "cell 1: genes 2 (n0_n2), 3 (n1_n2) are all 'none'",
        ),
        ("eagan_d:3,0,3,0,2,0,-1/1,0,3,0,1,-1,-1/3,0,3,0,1,-1,-1", "must be absent (-1) together"),
        (
            "eagan_d:0,0,3,0,2,0,0/1,0,3,0,1,-1,-1/3,0,3,0,1,-1,-1",
            "cell 1 gene 0 (n0_n1) = 0: allowed 1 (skip)",
        ),
        ("autogan:1,0,1,1/1,0,0,1/1,0,1,0,3", "cell 2: 4 genes given, expected 5"),
        ("autogan:1,0,1,1/1,0,0,1,1", "2 cells given, the space has 3"),
        ("nope:1,2", "unknown search space 'nope'; known: "),
        ("autogan", "no 'space:' prefix"),
        ("autogan:1,x", "genes must be integers"),
    ],
)
def test_invalid_genotypes_name_what_is_wrong(text, message):
    with pytest.raises(InvalidGenotype, match=message.replace("(", r"\(").replace(")", r"\)")):
        Genotype.parse(text)


@pytest.mark.parametrize("name", ["autogan", "nas_cell_g", "eagan_d", "adversarialnas_d"])
def test_sampling_and_variation_stay_valid(name):
    space = spaces.get(name)
    rng = np.random.default_rng(0)
    population = [space.sample(rng) for _ in range(60)]
    for g in population:
        space.validate(g)
    for a, b in itertools.pairwise(population):
        m = space.mutate(a, rng)
        space.validate(m)
        changed = [
            (ci, p)
            for ci in range(len(a.cells))
            for p in range(len(a.cells[ci]))
            if a.cells[ci][p] != m.cells[ci][p]
        ]
        units = {u for ci in range(len(a.cells)) for u in space.edges(ci)}
        assert changed and len({ci for ci, _ in changed}) == 1
        assert tuple(p for _, p in changed) in units or len(changed) == 1
        children = space.crossover(a, b, rng)
        if children is not None:
            for c in children:
                space.validate(c)
            assert children[0] != a and children[1] != b


def test_mutation_keeps_eagan_down_genes_coupled():
    space = spaces.get("eagan_d")
    rng = np.random.default_rng(1)
    g = Genotype.parse(PUBLISHED[5])
    seen_toggle = False
    for _ in range(300):
        g = space.mutate(g, rng)
        for cell in g.cells:
            assert (cell[5] == ABSENT) == (cell[6] == ABSENT)
        seen_toggle |= any(c[5] == ABSENT for c in g.cells) and any(c[5] != ABSENT for c in g.cells)
    assert seen_toggle


def test_sampling_is_uniform_over_valid_cells():
    # The first autogan cell has 36 settings; 36,000 draws give about 1,000 each.
    space = spaces.get("autogan")
    rng = np.random.default_rng(2)
    counts: dict = {}
    for _ in range(36_000):
        cell = space.sample(rng).cells[0]
        counts[cell] = counts.get(cell, 0) + 1
    assert len(counts) == 36
    assert min(counts.values()) > 850 and max(counts.values()) < 1150


def test_arch_file_round_trip(tmp_path):
    arch = spaces.Arch(Genotype.parse(PUBLISHED[4]), Genotype.parse(PUBLISHED[5]), 256, 128, 4)
    path = tmp_path / "best.yaml"
    spaces.write_arch_file(str(path), arch, comment="from a test")
    assert spaces.read_arch_file(str(path)) == arch
    bad = tmp_path / "bad.yaml"
    bad.write_text('g: "nas_cell_g:1"\nd: "autogan_d:"\n')
    with pytest.raises(InvalidGenotype, match=r"bad\.yaml: nas_cell_g: 1 cells given"):
        spaces.read_arch_file(str(bad))
