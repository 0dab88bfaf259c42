"""AdversarialNAS on Ray Train: the options, and ``raygan search adversarialnas`` end to end on
2 gloo workers (rows, genotypes, best.yaml, analysis, resume), with a worker killed mid-round
that the round survives exactly.

The pure-torch parts are elsewhere: mixed ops, Gumbel-softmax, derivation and entropy in
``test_mixed.py``; the architect's update order and steps in ``test_train.py``.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_golden import TINY as GOLDEN_TINY

from raygan import cli, results, spaces, supernet
from raygan.strategies import adversarialnas as an
from raygan.strategies.common import Driver

TINY = GOLDEN_TINY["adversarialnas"]
"""3 D iterations per epoch (48 // 16), a G step every 2: G steps 1 and 3 after epochs 1, 2."""


# ----- options ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options, message",
    [
        (["--batch", "6"], "multiple of 2 x --workers"),
        (["--epochs", "0"], "--epochs must be"),
        (["--max-images", "8"], "less than one --batch"),
        (["--tau-start", "0.1", "--tau-end", "1"], "--tau-end"),
        (["--workers", "1000", "--batch", "2000", "--max-images", "4000"], "CPUs"),
    ],
)
def test_bad_options_stop_before_ray(options, message, tmp_path, capsys):
    code = cli.main(["search", "adversarialnas", "--out", str(tmp_path / "x"), *options])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


# ----- on Ray Train -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def search(golden_search):
    """The golden tiny search of tests/test_golden.py (2 epochs of 3 D iterations on 2 gloo
    workers, a G step every 2, Gumbel weights), killed twice and resumed to its end; read as a
    user would."""
    out = golden_search("adversarialnas")
    return SimpleNamespace(out=out, args=["search", "adversarialnas", "--out", out, *TINY])


def test_search_command_end_to_end(search, capsys):
    table = results.load(search.out)
    assert table["generation"].tolist() == [1, 2]  # one row per epoch, none twice
    assert table["trial_id"].tolist() == ["epoch1", "epoch2"]
    assert (table["strategy"] == "adversarialnas").all() and (table["status"] == "ok").all()
    assert np.isfinite(table["is"]).all() and np.isfinite(table["fid"]).all()
    assert table["budget_steps"].tolist() == [1, 3]
    extra = results.extra(table)
    assert extra["d_iterations"].tolist() == [3, 6] and (extra["workers"] == 2).all()
    assert extra["tau"].tolist() == pytest.approx([0.1**0.5, 0.1])  # annealed over both epochs
    for g, d in zip(table["g_genotype"], table["d_genotype"], strict=True):
        assert spaces.Genotype.parse(g).space == an.G_SPACE
        assert spaces.Genotype.parse(d).space == an.D_SPACE

    # one mixed round per epoch (epoch 2 went on from epoch 1: d_iterations above); each trained
    assert sorted(os.listdir(os.path.join(search.out, "train"))) == ["epoch001", "epoch002"]
    assert extra["replica_digest"].nunique() == 2
    assert (table["kind"] == "epoch").all() and (table["train_flops"] > 0).all()

    arch = spaces.read_arch_file(os.path.join(search.out, "best.yaml"))
    assert str(arch.g) == table["g_genotype"].iloc[-1]
    assert str(arch.d) == "autogan_d:" and (arch.gf, arch.df) == (256, 128)

    capsys.readouterr()
    assert cli.main(["analyze", search.out]) == 0
    text = capsys.readouterr().out
    assert "AdversarialNAS: 2 epochs" in text
    assert f"derived after epoch 2: G {table['g_genotype'].iloc[-1]}" in text
    for name in ("adversarialnas_curves.png", "adversarialnas_genotypes.png"):
        path = os.path.join(search.out, name)
        assert os.path.getsize(path) > 1000 and f"plot: {path}" in text


def test_finished_search_resumes_to_nothing_and_keeps_its_settings(search, capsys):
    rows = results.load(search.out)
    trained = sorted(os.listdir(os.path.join(search.out, "train")))
    assert cli.main([*search.args, "--resume"]) == 0  # a finished search: nothing more to do
    assert results.load(search.out).equals(rows)
    assert sorted(os.listdir(os.path.join(search.out, "train"))) == trained  # no new round
    capsys.readouterr()
    assert cli.main(search.args) == 2  # without --resume, an existing search is not overwritten
    err = capsys.readouterr().err
    assert "already holds" in err and "--resume" in err and len(err.strip().splitlines()) == 1
    assert cli.main([*search.args, "--resume", "--gf", "16"]) == 2  # not the networks it holds
    err = capsys.readouterr().err
    assert "--gf was 8, now 16" in err and len(err.strip().splitlines()) == 1


def same(a, b) -> bool:
    """Nested state (dicts, lists, tensors, numbers) equal exactly."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


def test_killed_worker_continues_the_round_exactly(search, tmp_path, monkeypatch):
    """Epoch 2 of the search again, from epoch 1's state, with a checkpoint after every step;
    rank 1's process dies once before its last checkpoint. FailureConfig restarts the worker
    group from a checkpoint (every worker's noise and data streams gathered in it),
    and the round ends exactly where the uninterrupted epoch 2 of the search ended: the same
    weights, logits, optimiser moments, streams, genotypes and scores. Every worker notes a
    digest of its weights and logits at every checkpoint: the two DDP replicas always agree,
    although each trains on its own shard of the data."""
    spec, uninterrupted, original = epoch_two(search.out)
    marker, notes = str(tmp_path / "killed"), tmp_path / "notes"
    notes.mkdir()

    def killing_loop(config):
        import ray.train

        from raygan import supernet as worker_supernet  # the worker's own, unpatched

        real_report = worker_supernet.report
        rank = ray.train.get_context().get_world_rank()

        def report(work, batches, metrics, done, *args, **kwargs):
            if rank == 1 and done == 3 and not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)  # a killed worker process, not a Python exception
            note = {"rank": rank, "done": done, "pid": os.getpid(), "digest": work.digest()}
            (notes / f"{rank}-{done}-{os.getpid()}.json").write_text(json.dumps(note))
            real_report(work, batches, metrics, done, *args, **kwargs)

        worker_supernet.report = report
        worker_supernet.train_loop_per_worker(config)

    monkeypatch.setattr(supernet, "train_loop_per_worker", killing_loop)
    replay = dataclasses.replace(spec, checkpoint_every=1)
    done = supernet.train_round(
        replay,
        name="replay",
        storage_path=str(tmp_path / "train"),
        workers=2,
        resources_per_worker={"CPU": 1.0},
        max_failures=1,
    )
    assert os.path.exists(marker)

    noted = [json.loads(p.read_text()) for p in notes.glob("*.json")]
    attempts = {}  # rank -> the steps each of its processes checkpointed, by first step
    for rank in (0, 1):
        pids = {n["pid"] for n in noted if n["rank"] == rank}
        runs = [sorted(n["done"] for n in noted if n["pid"] == pid) for pid in pids]
        attempts[rank] = sorted(runs)
    # rank 1 died before its last checkpoint; the group restarted from a checkpoint, not from
    # the round's start: step 1's at least (Ray registers one once it polled every rank's
    # report, and a worker's second report waits for that), step 2's if Ray polled it in time
    assert attempts[1] in ([[1, 2], [2, 3]], [[1, 2], [3]])
    assert attempts[0][1] == attempts[1][1]  # rank 0 restarted with it
    by_step: dict[int, set[str]] = {}
    for n in noted:
        by_step.setdefault(n["done"], set()).add(n["digest"])
    assert sorted(by_step) == [1, 2, 3] and all(len(d) == 1 for d in by_step.values())

    assert done.metrics["round_step"] == original["round_step"] == 3
    for key, value in uninterrupted.items():
        assert done.metrics[key] == value, key
    assert by_step[3] == {uninterrupted["replica_digest"]}
    assert same(torch.load(done.state, weights_only=True), original)


def epoch_two(out: str) -> tuple[supernet.MixedRoundSpec, dict, dict]:
    """The search's epoch 2 as it ran: its round spec (from epoch 1's state), what its row
    recorded of the round's result, and its final state."""
    from raygan import metrics, state
    from raygan.spec import build_spec

    args = cli.build_parser().parse_args(["search", "adversarialnas", "--out", out, *TINY])
    spec = build_spec("adversarialnas", args)
    driver = an.AdversarialnasSearch(spec.replace(extractor=metrics.SHAPES_EXTRACTOR), an.STRATEGY)
    (epoch1,) = glob.glob(os.path.join(out, "train", "epoch001", "checkpoint_*", "state.pt"))
    table = results.load(out).sort_values("generation").reset_index(drop=True)
    row, extra = table.iloc[1], results.extra(table).iloc[1]
    recorded = {"g": row["g_genotype"], "d": row["d_genotype"], "is": row["is"]}
    recorded.update(fid=row["fid"], g_steps=row["budget_steps"])
    recorded.update({k: extra[k] for k in ("replica_digest", "d_iterations", "tau")})
    final = state.load(os.path.join(out, Driver.STATE))["supernet"]
    return an.round_spec(driver, epoch1), recorded, torch.load(final, weights_only=True)
