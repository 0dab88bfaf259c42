"""Tiny configurations of every search, rerun and compared with committed expected values.

The expected tables (``tests/golden/<strategy>.json``) pin the objective columns of one tiny
search per strategy on the CPU. A change that moves code must leave them as they are; a change
that alters numbers on purpose regenerates them in a commit of its own that says why::

    python tests/test_golden.py            # rewrite tests/golden/*.json from fresh runs
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile

import pytest

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")

TINY: dict[str, list[str]] = {
    "eagan": [
        "--population", "4", "--generations", "2", "--gf", "8", "--df", "8",
        "--warmup-steps", "0", "--round-steps", "6", "--s2-steps", "3", "--g-batch", "8",
        "--d-batch", "8", "--eval-samples", "40", "--max-images", "200", "--workers", "2",
    ],
    "autogan": [
        "--gf", "8", "--df", "8", "--iterations", "3", "--grow-at", "1,2",
        "--controller-steps", "1", "--controller-batch", "2", "--round-steps", "4",
        "--n-critic", "1", "--g-batch", "8", "--d-batch", "8", "--candidates", "3",
        "--keep", "2", "--eval-samples", "40", "--max-images", "200", "--workers", "1",
        "--reset-window", "0",
    ],
    "adversarialnas": [
        "--workers", "2", "--epochs", "2", "--batch", "16", "--gf", "8", "--df", "8",
        "--n-critic", "2", "--max-images", "48", "--eval-samples", "20",
    ],
}  # fmt: skip

KEYS = ["stage", "generation", "step", "individual", "g_genotype", "d_genotype"]
"""What orders the rows: Tune's trial ids and finishing order differ between runs."""
VALUES = ["is", "fid", "reward", "entropy", "g_params", "d_params", "rank", "crowding"]
"""The objective columns (and what selection derived from them) that must not move."""


def run_tiny(strategy: str, out: str) -> list[dict]:
    """Run one tiny search in this process; its rows as plain dicts, in a stable order."""
    from raygan import results
    from raygan.cli import main

    assert main(["search", strategy, *TINY[strategy], "--out", out]) == 0
    df = results.load(out)
    rows = []
    for record in df[KEYS + VALUES].to_dict("records"):
        rows.append({k: clean(v) for k, v in record.items()})
    return sorted(rows, key=lambda r: json.dumps([r[k] for k in KEYS]))


def clean(value):
    """JSON-able and comparable: NaN/None become None, numpy scalars plain numbers."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def same(a, b) -> bool:
    """Equal to the digit: integers and strings exactly, floats to 12 significant digits."""
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-12)
    return a == b


@pytest.mark.slow
@pytest.mark.parametrize("strategy", sorted(TINY))
def test_tiny_search_matches_its_expected_table(strategy, ray_local, tmp_path):
    with open(os.path.join(GOLDEN, f"{strategy}.json")) as f:
        expected = json.load(f)
    got = run_tiny(strategy, str(tmp_path / strategy))
    assert len(got) == len(expected)
    for row, want in zip(got, expected, strict=True):
        for column in KEYS + VALUES:
            assert same(row[column], want[column]), (column, row, want)


if __name__ == "__main__":
    import ray

    os.environ.setdefault("RAYGAN_CACHE", tempfile.mkdtemp(prefix="raygan-golden-cache-"))
    import torch

    torch.set_num_threads(1)  # as the suite's conftest does
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    for name in sys.argv[1:] or sorted(TINY):
        rows = run_tiny(name, os.path.join(tempfile.mkdtemp(), name))
        with open(os.path.join(GOLDEN, f"{name}.json"), "w") as f:
            json.dump(rows, f, indent=1)
        print(f"{name}: {len(rows)} rows")
