"""The training loop: reproducible on CPU, resumable, divergence reported, EMA as specified."""

import copy

import pytest
import torch

from raygan import data, nn, spaces
from raygan.train import Diverged, GANTrainer, TrainConfig, ema_update, init_weights

G = spaces.Genotype.parse("nas_cell_g:1,1,1,0,3,3,1/1,1,0,1,3,3,3/0,1,0,3,3,0,3")
D = spaces.Genotype.parse("eagan_d:3,0,3,0,2,0,0/1,0,3,0,1,-1,-1/3,0,3,0,1,-1,-1")
CFG = dict(steps=4, n_critic=2, g_batch=8, d_batch=8, seed=3)


def make(cfg: TrainConfig, seed: int = 0) -> tuple[GANTrainer, data.DeviceBatches]:
    torch.manual_seed(seed)
    g = nn.build_generator(G, width=16)
    d = nn.build_discriminator(D, width=16)
    init_weights(g)
    init_weights(d)
    images = data.load("shapes", resolution=32, max_images=64, seed=0)
    return GANTrainer(g, d, cfg), data.DeviceBatches(images, "cpu", seed=cfg.seed)


def params(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_same_seed_same_weights_and_resume_is_exact():
    a, batches_a = make(TrainConfig(**CFG))
    a.run(batches_a, 4)
    b, batches_b = make(TrainConfig(**CFG))
    b.run(batches_b, 2)
    state = copy.deepcopy({**b.state_dict(), "data": batches_b.state_dict()})
    c, batches_c = make(TrainConfig(**CFG), seed=99)  # different init, overwritten by the state
    c.load_state_dict(state)
    batches_c.load_state_dict(state["data"])
    c.run(batches_c, 2)
    assert torch.equal(params(a.G), params(c.G))
    assert torch.equal(params(a.G_ema), params(c.G_ema))
    assert torch.equal(params(a.D), params(c.D))
    d, batches_d = make(TrainConfig(**{**CFG, "seed": 4}))
    d.run(batches_d, 4)
    assert not torch.equal(params(a.G), params(d.G))


def test_nan_loss_is_reported_as_divergence():
    trainer, batches = make(TrainConfig(**CFG))
    with torch.no_grad():
        next(trainer.D.parameters()).fill_(float("nan"))
    with pytest.raises(Diverged, match="loss is nan"):
        trainer.run(batches, 1)


def test_loss_variance_collapse_is_detected():
    trainer, batches = make(TrainConfig(**{**CFG, "collapse_window": 3, "collapse_variance": 1e9}))
    with pytest.raises(Diverged, match="mode collapse"):
        trainer.run(batches, 3)


def test_ema_follows_the_specified_decay():
    model = torch.nn.Linear(2, 2)
    ema = copy.deepcopy(model)
    before = ema.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema_update(ema, model, 0.999)
    assert torch.allclose(ema.weight, before * 0.999 + model.weight * 0.001)


def test_init_matches_methods():
    torch.manual_seed(0)
    g = nn.build_generator(spaces.Genotype.parse("autogan:1,1,1,1/1,1,0,1,1/1,1,1,0,3"), width=32)
    init_weights(g)
    bns = [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d) and m.affine]
    assert bns
    w = torch.cat([m.weight.detach() for m in bns])
    assert abs(float(w.mean()) - 1.0) < 0.02 and 0.005 < float(w.std()) < 0.04
    assert all(float(m.bias.detach().abs().sum()) == 0 for m in bns)
