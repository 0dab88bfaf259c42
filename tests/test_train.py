"""The training loop: reproducible on CPU, resumable, divergence reported, EMA as specified."""

import copy
import itertools
import math
from typing import Any

import pytest
import torch

from raygan import data, nn, spaces
from raygan.train import (
    ArchConfig,
    Architect,
    Diverged,
    GANTrainer,
    TrainConfig,
    ema_update,
    init_weights,
)

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


def test_init_touches_only_conv2d_weights_and_batch_norm():
    """As the authors' codes: Linear and ConvTranspose2d weights and every conv/linear bias
    keep PyTorch's default initialisation; spectral-norm convs get xavier on the raw weight."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(64, 256),
        torch.nn.ConvTranspose2d(8, 8, 4),
        torch.nn.Conv2d(256, 256, 3),
        torch.nn.utils.spectral_norm(torch.nn.Conv2d(256, 256, 3)),
        torch.nn.BatchNorm2d(8),
    )
    before = {k: v.clone() for k, v in net.state_dict().items()}
    init_weights(net)
    after = net.state_dict()
    kept = ["0.weight", "0.bias", "1.weight", "1.bias", "2.bias", "3.bias"]
    assert all(torch.equal(before[k], after[k]) for k in kept)
    bound = math.sqrt(6 / (256 * 9 + 256 * 9))  # xavier_uniform's for a 256->256 3x3 conv
    for key in ("2.weight", "3.weight_orig"):
        assert not torch.equal(before[key], after[key])
        assert float(after[key].abs().max()) <= bound
        assert float(after[key].abs().max()) > 0.9 * bound
    assert float(after["4.bias"].abs().sum()) == 0 and 0.005 < float(after["4.weight"].std()) < 0.04


# ----- AdversarialNAS's Architect around the trainer (built as supernet.MixedRound builds it) ----
def mixed(
    n_critic: int = 2, seed: int = 0, total: int = 10, **arch: Any
) -> tuple[GANTrainer, Architect]:
    """Two tiny mixed-op supernets, their logits, the trainer and the architect, as
    ``raygan.supernet.MixedRound`` builds them on one worker (no DDP: plain modules)."""
    torch.manual_seed(seed)
    g = nn.build_supernet("nas_cell_g", width=8, bottom_width=4)
    d = nn.build_supernet("adversarialnas_d", width=8)
    alpha_g, alpha_d = nn.ArchLogits(g), nn.ArchLogits(d)
    cfg = TrainConfig(n_critic=n_critic, g_batch=4, collapse_window=0, d_joint_batch=True)
    trainer = GANTrainer(g, d, cfg, "cpu", noise_seed=7)
    architect = Architect(trainer, alpha_g, alpha_d, ArchConfig(**arch), total_iterations=total)
    return trainer, architect


def real_batch(n: int = 8, seed: int = 0) -> torch.Tensor:
    images = data.load("shapes", resolution=32, max_images=32, seed=seed)
    return data.DeviceBatches(images, "cpu", seed=seed).sample(n)


def parameter_groups(trainer: GANTrainer, architect: Architect) -> dict[str, torch.nn.Module]:
    return {
        "g": trainer.G,
        "d": trainer.D,
        "g_arch": architect.alpha_g,
        "d_arch": architect.alpha_d,
        "g_ema": trainer.G_ema,
    }


def test_temperature_anneals_from_start_to_end():
    _, architect = mixed(gumbel=True, tau_start=2.0, tau_end=0.5)
    assert architect.tau() == pytest.approx(2.0)
    architect.iterations = 5
    assert architect.tau() == pytest.approx(1.0)
    architect.iterations = 10
    assert architect.tau() == pytest.approx(0.5)
    architect.iterations = 15  # past the schedule: stays at the end
    assert architect.tau() == pytest.approx(0.5)
    assert mixed()[1].tau() is None  # plain softmax


def test_architect_steps_each_change_only_their_own_parameters():
    """Through :meth:`Architect.iteration`: every optimiser step is watched, and what changed
    between one step and the next is that step's work (the EMA follows the G step)."""
    trainer, architect = mixed(n_critic=2)
    groups = parameter_groups(trainer, architect)
    optimisers = {
        "d_arch": architect.opt_d,
        "d": trainer.opt_d,
        "g_arch": architect.opt_g,
        "g": trainer.opt_g,
    }
    log: list[tuple[str, dict[str, torch.Tensor]]] = []

    def snapshot() -> dict[str, torch.Tensor]:
        return {k: params(m).clone() for k, m in groups.items()}

    for name, opt in optimisers.items():

        def step(*args, _name=name, _step=opt.step, **kwargs):
            log.append((_name, snapshot()))
            return _step(*args, **kwargs)

        opt.step = step
    real = real_batch(8)
    for _ in range(4):  # later iterations run with grads left over from earlier ones
        architect.iteration(real)
    log.append(("end", snapshot()))
    names = [name for name, _ in log]
    assert names == ["d_arch", "d", "d_arch", "d", "g_arch", "g"] * 2 + ["end"]
    expected = {"d_arch": {"d_arch"}, "d": {"d"}, "g_arch": {"g_arch"}, "g": {"g", "g_ema"}}
    for (name, before), (_, after) in itertools.pairwise(log):
        changed = {k for k in groups if not torch.equal(before[k], after[k])}
        assert changed == expected[name], name


def test_iteration_order_and_batch_halves():
    """D architecture step on the first half, D weight step on the second half, and every
    n_critic iterations the G architecture step, then the G weight step."""
    trainer, architect = mixed(n_critic=3)
    calls: list[tuple[str, Any]] = []
    d_loss, g_loss = trainer.d_loss, trainer.g_loss

    def record_d(real, g_arch, d_arch, labels=None, noise=None):
        calls.append(("d_loss", real))
        return d_loss(real, g_arch, d_arch, labels, noise)

    def record_g(n, g_arch, d_arch, noise=None):
        calls.append(("g_loss", n))
        return g_loss(n, g_arch, d_arch, noise)

    trainer.d_loss, trainer.g_loss = record_d, record_g
    for name, opt in (
        ("step_d_arch", architect.opt_d),
        ("step_d", trainer.opt_d),
        ("step_g_arch", architect.opt_g),
        ("step_g", trainer.opt_g),
    ):
        opt.step = lambda *a, _n=name, _s=opt.step, **k: calls.append((_n, None)) or _s(*a, **k)
    real = real_batch(8)
    losses = [architect.iteration(real) for _ in range(6)]
    d_part = ["d_loss", "step_d_arch", "d_loss", "step_d"]
    g_part = ["g_loss", "step_g_arch", "g_loss", "step_g"]
    assert [n for n, _ in calls] == (d_part * 3 + g_part) * 2
    d_inputs = [x for n, x in calls if n == "d_loss"]
    assert all(torch.equal(x, real[:4]) for x in d_inputs[0::2])  # the architecture's half
    assert all(torch.equal(x, real[4:]) for x in d_inputs[1::2])  # the weights' half
    assert {x for n, x in calls if n == "g_loss"} == {trainer.cfg.g_batch}
    d_only, both = ["d", "d_arch"], ["d", "d_arch", "g", "g_arch"]
    assert [sorted(x) for x in losses] == [d_only, d_only, both] * 2
    assert (architect.iterations, trainer.step) == (6, 2)
    assert all(math.isfinite(v) for x in losses for v in x.values())


def test_architect_with_gumbel_resumes_exactly_from_its_state():
    """Trainer + architect state (with the noise the Gumbel samples are drawn from) and the
    data stream: 1 + 2 iterations equal 3, as a restarted mixed round relies on."""
    options = dict(n_critic=2, gumbel=True, tau_start=1.0, tau_end=0.1)

    def stream() -> data.DeviceBatches:
        return data.DeviceBatches(data.load("shapes", resolution=32, max_images=32), "cpu", seed=5)

    def run(architect: Architect, batches: data.DeviceBatches, n: int) -> None:
        for _ in range(n):
            architect.iteration(batches.sample(4))

    ta, a = mixed(**options)
    run(a, stream(), 3)
    tb, b = mixed(**options)
    batches_b = stream()
    run(b, batches_b, 1)
    state = copy.deepcopy(
        {**tb.state_dict(), "architect": b.state_dict(), "data": batches_b.state_dict()}
    )
    tc, c = mixed(seed=99, **options)  # other initial weights, overwritten by the state
    tc.load_state_dict(state)
    c.load_state_dict(state["architect"])
    batches_c = stream()
    batches_c.load_state_dict(state["data"])
    run(c, batches_c, 2)  # the second is a G iteration
    done_a, done_c = parameter_groups(ta, a), parameter_groups(tc, c)
    for k in done_a:
        assert torch.equal(params(done_a[k]), params(done_c[k])), k
    assert (c.iterations, tc.step) == (3, 1) and c.tau() == pytest.approx(a.tau())
    td, d = mixed(**options)
    td.noise.manual_seed(8)  # other noise, other Gumbel draws: another search
    run(d, stream(), 1)
    assert not torch.equal(params(b.alpha_d), params(d.alpha_d))


@pytest.mark.slow
def test_a_shared_round_with_a_non_finite_loss_fails_and_is_not_saved(ray_local, tmp_path):
    """A round whose loss went non-finite raises, reports no checkpoint, and is not retried
    (it would diverge again); a driver never gets a state.pt to continue from."""
    from raygan import supernet

    spec = supernet.RoundSpec(
        g_space="nas_cell_g",
        d="autogan_d:",
        paths=["nas_cell_g:1,1,1,0,2,3,1/1,1,0,1,3,0,5/0,1,0,3,0,0,3"],
        gf=8,
        df=8,
        steps=8,
        n_critic=1,
        g_batch=8,
        d_batch=8,
        g_lr=1e30,  # one step and the weights are inf
        d_lr=1e30,
        max_images=64,
        checkpoint_every=1,
    )
    with pytest.raises(supernet.RoundDiverged, match=r"loss is (nan|inf).*nothing of it is kept"):
        supernet.train_round(spec, name="bad", storage_path=str(tmp_path), max_failures=2)
    assert not list(tmp_path.rglob(supernet.STATE_FILE))
