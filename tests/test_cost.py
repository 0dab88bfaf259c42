"""What training costs: FLOP counting, a trial's cost columns, the estimate and its probe, and
the fast-path options that run on the CPU (bf16 autocast).

The estimate is checked against a real search's measured FLOPs in test_eagan_search.py.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from raygan import analysis, cost, data, estimate, nn, spaces, trainable
from raygan.cli import main
from raygan.train import GANTrainer, TrainConfig, init_weights

G = spaces.Genotype.parse("nas_cell_g:1,1,1,0,3,3,1/1,1,0,1,3,3,3/0,1,0,3,3,0,3")
D = spaces.Genotype.parse("eagan_d:3,0,3,0,2,0,0/1,0,3,0,1,-1,-1/3,0,3,0,1,-1,-1")
CFG = TrainConfig(steps=3, n_critic=2, g_batch=6, d_batch=4, seed=1)


def pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    g, d = nn.build_generator(G, width=8), nn.build_discriminator(D, width=8)
    init_weights(g)
    init_weights(d)
    return g, d


def trainer(cfg: TrainConfig = CFG) -> tuple[GANTrainer, data.DeviceBatches]:
    images = data.load("shapes", resolution=32, max_images=32, seed=0)
    return GANTrainer(*pair(), cfg), data.DeviceBatches(images, seed=cfg.seed)


def test_the_counter_counts_what_torchs_flop_counter_counts():
    linear = torch.nn.Linear(5, 7)
    x = torch.zeros(3, 5)
    assert cost.counted(lambda: linear(x))[1] == 2 * 3 * 5 * 7
    t, batches = trainer()
    real = batches.sample(CFG.d_batch)
    with FlopCounterMode(display=False) as reference:
        t.d_loss(real, None, None).backward()
    assert cost.counted(lambda: t.d_loss(real, None, None).backward())[1] == (
        reference.get_total_flops()
    )


def test_a_step_is_counted_once_per_kind_and_counting_changes_no_number():
    counted, batches = trainer()
    plain, plain_batches = trainer()
    counted.run(batches, 3)
    for _ in range(3):
        plain.train_step(plain_batches)
    assert counted.flops.steps == 3 and list(counted.flops.per_kind) == ["None"]
    assert counted.flops.total == 3 * counted.flops.per_kind["None"] > 0
    for a, b in zip(counted.G.parameters(), plain.G.parameters(), strict=True):
        assert torch.equal(a, b)


def test_step_flops_extended_from_small_batches_equal_a_full_batch_count():
    d, g = cost.pair_step_flops(pair, CFG)
    t, batches = trainer()
    _, d_full = cost.counted(lambda: t.d_loss(batches.sample(CFG.d_batch), None, None).backward())
    _, g_full = cost.counted(lambda: t.g_loss(CFG.g_batch, None, None).backward())
    assert (d, g) == (d_full, g_full)
    step = estimate.step_flops(estimate.Pair(G, D, 8, 8, 4, CFG))
    assert step == CFG.n_critic * d + g


def test_a_trial_records_its_cost(tmp_path):
    config = {"g": str(G), "d": str(D), "gf": 8, "df": 8, "max_images": 32, "eval_samples": 20}
    config["reference_images"] = 64  # scored against few images: the cost is what is tested
    config.update(dataclasses.asdict(CFG))
    reports = []
    result = trainable.run_trial(config, lambda m, c: reports.append(m), share=0.5)
    assert result["status"] == "ok" and result["device"] == "cpu"
    assert result["device_share"] == 0.5
    assert result["device_s"] == pytest.approx(0.5 * result["wall_s"])
    parts = result["train_s"] + result["eval_s"] + result["setup_s"]
    assert result["train_s"] > 0 and result["eval_s"] > 0 and parts <= result["wall_s"]
    d, g = cost.pair_step_flops(pair, CFG)
    assert result["train_flops"] == CFG.steps * (CFG.n_critic * d + g)
    row = trainable.row_fields(
        {"trial_id": "t", "config": config, "metrics": result, "checkpoint": None, "error": None}
    )
    assert {k: row[k] for k in cost.COLUMNS} == {k: result[k] for k in cost.COLUMNS}


def test_bf16_autocast_runs_on_the_cpu():
    t, batches = trainer(dataclasses.replace(CFG, amp_bf16=True))
    with t._autocast():
        assert t.run_g(t.z(2), None).dtype == torch.bfloat16
    losses = t.run(batches, 2)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    assert all(p.dtype == torch.float32 for p in t.G.parameters())  # weights stay fp32


def test_probe_measures_this_machines_rate():
    rate, device = estimate.probe(estimate.Pair(G, D, 8, 8, 4, CFG), seconds=0.5)
    assert device == "cpu" and 1e6 < rate < 1e14


def test_estimate_prints_flops_by_stage_and_starts_nothing(tmp_path, capsys):
    out = tmp_path / "never"
    args = ["search", "autogan", "--out", str(out), "--gf", "8", "--df", "8"]
    assert main([*args, "--estimate", "--tflops", "2"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert [line.split()[:2] for line in lines[1:4]] == [["stage", str(s)] for s in range(3)]
    assert lines[4].startswith("total") and "at 2 TFLOP/s" in text
    total = lines[4].split()
    train, evaluate, hours = (float(x) for x in total[1:4])
    assert hours == pytest.approx((train + evaluate) * 1e15 / 2e12 / 3600, rel=1e-3)
    assert not out.exists()
    assert main([*args, "--estimate"]) == 0  # no rate: FLOPs only, and how to get hours
    assert "--tflops X, or --estimate probe" in capsys.readouterr().out
    assert main([*args, "--estimate", "--tflops", "0"]) == 2


def test_analyze_sums_the_cost_of_every_row():
    rows = [
        {"kind": "round", "device": "cpu", "device_share": 2.0, "device_s": 20.0,
         "train_s": 4.0, "eval_s": 0.0, "train_flops": 8e12},
        {"kind": "trial", "device": "cpu", "device_share": 1.0, "device_s": 10.0,
         "train_s": 0.0, "eval_s": 6.0, "train_flops": 0},
    ]  # fmt: skip
    text = "\n".join(analysis.cost_summary(pd.DataFrame(rows)))
    hours = 30 / 3600
    assert f"cost: {hours:.4g} device-hours on cpu (shared rounds {20 / 3600:.4g}" in text
    assert "training 27%, scoring 20%, set-up and orchestration 53%" in text
    assert "trained 8 TFLOP at 1 TFLOP/s per CPU core while training" in text
    old = pd.DataFrame([{**rows[0], "device_s": None}])  # a table from before the cost columns
    assert analysis.cost_summary(old) == []


def test_the_estimate_of_a_mixed_round_matches_counting_its_iterations():
    from raygan import supernet

    spec = supernet.MixedRoundSpec(gf=4, df=4, batch=6, n_critic=2)
    per_iteration, per_sample = estimate.mixed_flops(spec)
    work = supernet.MixedRound(spec, torch.device("cpu"), 1, 0, 1, wrap=lambda m: m)
    real = torch.zeros(6, 3, 32, 32)
    counts = [cost.counted(lambda: work.architect.iteration(real))[1] for _ in range(2)]
    assert per_iteration == pytest.approx(sum(counts) / 2, rel=1e-9)
    assert per_sample > 0


def test_compiled_training_matches_eager_and_counts_the_same_flops():
    """``--compile`` runs G's forwards through torch.compile (on the CPU too): the same losses
    as eager to float precision, and the FLOPs counted on an eager step."""
    eager, batches = trainer()
    compiled, compiled_batches = trainer(dataclasses.replace(CFG, compile="default"))
    a, b = eager.run(batches, 2), compiled.run(compiled_batches, 2)
    assert b["g_loss"] == pytest.approx(a["g_loss"], rel=1e-3, abs=1e-4)
    assert b["d_loss"] == pytest.approx(a["d_loss"], rel=1e-3, abs=1e-4)
    assert compiled.flops.per_kind == eager.flops.per_kind
    assert compiled.run_g is not compiled._eager[0]  # it did compile


def test_losses_read_back_every_n_steps_still_stop_a_diverged_run_at_its_step():
    """``check_every`` 3: the host reads the losses every third step (and at the end of a
    run), and a loss that went non-finite is reported with the step it went so at."""
    from raygan.train import Diverged

    t, batches = trainer(dataclasses.replace(CFG, check_every=3))
    t.run(batches, 1)  # fewer steps than check_every: run() reads them at its end
    assert t.loss_windows()["g"] and not t._unread
    for group in t.opt_d.param_groups:
        group["lr"] = 1e30  # the weights blow up within a step
    with pytest.raises(Diverged) as err:
        t.run(batches, 5)
    assert t.step in (4, 6) and 2 <= err.value.step <= t.step  # read at step 4, or at the end
    assert "loss is" in str(err.value)


class HostReads(TorchDispatchMode):
    """Counts the host's reads of a tensor's value (``.item()``, ``float()``, ``bool()``): on
    a GPU each one waits for every kernel queued before it. Adam's step counters are left out:
    they are host tensors unless the optimiser is fused (as it is on a GPU)."""

    def __init__(self, *optimisers: torch.optim.Optimizer) -> None:
        super().__init__()
        self.counters = {id(s["step"]) for o in optimisers for s in o.state.values()}
        self.reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.reads += id(args[0]) not in self.counters
        return func(*args, **(kwargs or {}))


def test_no_host_read_inside_the_step_loop_between_checks():
    """A trial's steps and an AdversarialNAS iteration queue their losses on the device; the
    host reads them only when ``check_every`` steps are queued (and at a report point)."""
    from raygan import supernet

    t, batches = trainer(dataclasses.replace(CFG, check_every=3))
    t.run(batches, 1)  # counted for its FLOPs once; the later steps run as a trial's do
    with HostReads(t.opt_g, t.opt_d) as seen:
        t.train_step(batches)
        t.train_step(batches)
    assert seen.reads == 0 and len(t._unread) == 2
    spec = supernet.MixedRoundSpec(gf=4, df=4, batch=4, n_critic=2, check_every=100)
    work = supernet.MixedRound(spec, torch.device("cpu"), 1, 0, 4, wrap=lambda m: m)
    losses = [work.step(batches, i) for i in range(2)]  # every optimiser has stepped
    a = work.architect
    with HostReads(a.opt_g, a.opt_d, work.trainer.opt_g, work.trainer.opt_d) as seen:
        losses += [work.step(batches, i) for i in range(2, 4)]  # the second with a G step
    assert seen.reads == 0 and work.trainer.step == 2
    read = supernet.read_back(losses[-1])  # a report point
    assert sorted(read) == ["d", "d_arch", "g", "g_arch"]
    assert all(type(v) is float and v == v for v in read.values())


def test_cuda_graphs_are_refused_where_there_is_no_gpu(capsys):
    """A whole-step CUDA graph needs a CUDA device: the trainer says so, and every command
    refuses ``--cuda-graphs`` without ``--gpus`` before anything starts."""
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        trainer(dataclasses.replace(CFG, cuda_graphs=True))
    assert main(["search", "eagan", "--cuda-graphs", "--estimate"]) == 2
    assert main(["train", "--arch", "eagan_cifar10", "--cuda-graphs"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("--cuda-graphs" in line and "--gpus" in line for line in err)
