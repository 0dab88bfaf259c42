"""What only a CUDA GPU shows: a supernet round continues from the last one's optimiser state
on the GPU (one NCCL worker), trials share one GPU by fractions, and their GPU checkpoints
load on the CPU. Skipped where no GPU is present (CI has none); run on a GPU machine with
``python -m pytest tests/test_gpu.py``."""

import dataclasses

import pytest
import torch

from raygan import results, supernet, trainable

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

G = "nas_cell_g:1,1,1,0,2,3,1/1,1,0,1,3,0,5/0,1,0,3,0,0,3"
D = "autogan_d:"
ROUND_STATE = {"G", "D", "G_ema", "opt_g", "opt_d", "step", "noise", "losses", "round_step"}


def test_supernet_round_continues_on_the_gpu(ray_local, tmp_path):
    spec = supernet.RoundSpec(
        g_space="nas_cell_g", d=D, paths=[G], gf=8, df=8, steps=3, n_critic=1,
        g_batch=6, d_batch=6, max_images=60,
    )  # fmt: skip
    first = supernet.train_round(
        spec, name="r0", storage_path=str(tmp_path), use_gpu=True, max_failures=0
    )
    assert first.metrics["round_step"] == 3
    state = torch.load(first.state, weights_only=True)
    assert set(state) >= ROUND_STATE and len(state["streams"]) == 1  # one worker's streams
    adam = next(iter(state["opt_g"]["state"].values()))
    assert adam["exp_avg"].is_cuda  # the round trained on the GPU
    second = supernet.train_round(
        dataclasses.replace(spec, init=first.state, seed=1),
        name="r1",
        storage_path=str(tmp_path),
        use_gpu=True,
        max_failures=0,
    )
    after = torch.load(second.state, map_location="cpu", weights_only=True)
    before = torch.load(first.state, map_location="cpu", weights_only=True)
    assert after["step"] == before["step"] + 3  # the EMA step count carried over
    assert any(not torch.equal(before["G"][k], after["G"][k]) for k in before["G"])


def test_trials_share_one_gpu_and_their_checkpoints_load_on_the_cpu(ray_local, tmp_path):
    from ray import tune

    config = {
        "g": G, "d": D, "gf": 16, "df": 16, "steps": 4, "n_critic": 1, "g_batch": 8,
        "d_batch": 8, "max_images": 200, "eval_samples": 100, "checkpoint_every": 2,
    }  # fmt: skip
    trials = trainable.fit_trials(
        str(tmp_path),
        "shared",
        resources={"cpu": 1, "gpu": 0.5},
        param_space={**config, "seed": tune.grid_search([0, 1])},
    )
    row = trainable.row_fields
    rows = [results.row(row(t), experiment="gpu", strategy="train") for t in trials]
    assert [r["status"] for r in rows] == ["ok", "ok"], [r["error"] for r in rows]
    for row in rows:
        path = f"{row['checkpoint']}/{trainable.STATE_FILE}"
        assert all(t.is_cuda for t in torch.load(path, weights_only=True)["G"].values())
        on_cpu = torch.load(path, map_location="cpu", weights_only=True)
        g, _ = trainable.build_pair(trainable.full_config(config))
        g.load_state_dict(on_cpu["G_ema"])
        assert torch.isfinite(g(torch.randn(2, g.latent_dim))).all()


def graphed_pair(cuda_graphs: bool):
    from raygan import data, nn, spaces
    from raygan.train import GANTrainer, TrainConfig, init_weights

    torch.manual_seed(0)
    g = nn.build_generator(spaces.Genotype.parse(G), width=16)
    d = nn.build_discriminator(spaces.Genotype.parse(D), width=16)
    init_weights(g)
    init_weights(d)
    cfg = TrainConfig(n_critic=2, g_batch=8, d_batch=8, seed=1, cuda_graphs=cuda_graphs)
    images = data.load("shapes", resolution=32, max_images=64, seed=0)
    return GANTrainer(g, d, cfg, "cuda"), data.DeviceBatches(images, "cuda", seed=1)


def test_a_graphed_step_trains_as_the_eager_step_does():
    """``cuda_graphs``: after its eager warm-up the step is one graph's replay, drawing the
    same batches and noise as eager steps, so the weights follow the eager run's; a loaded
    state is captured again."""
    (eager, eager_data), (graphed, graphed_data) = graphed_pair(False), graphed_pair(True)
    a, b = eager.run(eager_data, 6), graphed.run(graphed_data, 6)
    assert graphed.graphed.graph is not None and graphed.step == 6
    assert b["g_loss"] == pytest.approx(a["g_loss"], rel=1e-3, abs=1e-4)
    for p, q in zip(eager.G_ema.parameters(), graphed.G_ema.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-3, atol=1e-4)
    graphed.load_state_dict(eager.state_dict())
    assert graphed.graphed.graph is None
    graphed.run(graphed_data, 3)
    assert graphed.step == 9 and graphed.graphed.graph is not None
