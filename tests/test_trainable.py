"""One trial as a plain function: checkpoints resume exactly, divergence is a recorded status."""

import math

import torch

from raygan import nn
from raygan.train import GANTrainer
from raygan.trainable import build_pair, full_config, inherit_weights, run_trial, train_config

CONFIG = {
    "g": "nas_cell_g:1,1,1,0,2,3,1/1,1,0,1,3,0,5/0,1,0,3,0,0,3",
    "d": "autogan_d:",
    "gf": 16,
    "df": 16,
    "steps": 6,
    "n_critic": 1,
    "g_batch": 8,
    "d_batch": 8,
    "max_images": 200,
    "eval_samples": 100,
    "seed": 1,
}


class Recorder:
    """Collects what a trial reports and keeps a copy of each checkpoint's state."""

    def __init__(self):
        self.reports = []

    def __call__(self, metrics, checkpoint_dir):
        state = None
        if checkpoint_dir:
            state = torch.load(f"{checkpoint_dir}/state.pt", map_location="cpu", weights_only=True)
        self.reports.append((metrics, state, checkpoint_dir))


def test_resume_from_a_mid_run_checkpoint_is_exact(tmp_path, deterministic_kernels):
    whole = Recorder()
    final = run_trial({**CONFIG, "checkpoint_every": 3}, whole)
    assert final["status"] == "ok" and math.isfinite(final["fid"])
    assert [m["steps"] for m, _, _ in whole.reports] == [3, 6]
    mid_state = whole.reports[0][1]

    resume_dir = tmp_path / "ckpt"
    resume_dir.mkdir()
    torch.save(mid_state, resume_dir / "state.pt")
    resumed = Recorder()
    run_trial({**CONFIG, "checkpoint_every": 3}, resumed, resume_dir=str(resume_dir))
    a, b = whole.reports[-1][1], resumed.reports[-1][1]
    for key in ("G", "D", "G_ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    assert resumed.reports[-1][0]["fid"] == final["fid"]


def test_divergence_ends_as_a_status_not_a_crash():
    rec = Recorder()
    # learning rates this large blow the weights up within a step or two
    final = run_trial({**CONFIG, "d_lr": 1e30, "g_lr": 1e30}, rec)
    assert final["status"] == "diverged" and "loss is" in final["error"]
    assert "fid" not in final


def test_inherited_weights_train_from_g_and_score_from_its_ema(tmp_path):
    rec = Recorder()
    run_trial({**CONFIG, "checkpoint_every": 6}, rec)
    state = rec.reports[-1][1]
    assert any(not torch.equal(state["G"][k], state["G_ema"][k]) for k in state["G"])
    torch.save(state, tmp_path / "state.pt")
    config = full_config({**CONFIG, "seed": 2})
    trainer = GANTrainer(*build_pair(config), train_config(config))
    inherit_weights(trainer, str(tmp_path / "state.pt"), str(tmp_path / "state.pt"))
    for key, module in (("G", trainer.G), ("G_ema", trainer.G_ema), ("D", trainer.D)):
        for name, value in module.state_dict().items():
            assert torch.equal(value, state[key][name]), (key, name)


def test_a_worker_reads_a_checkpoint_once_for_the_trials_that_inherit_it(tmp_path, monkeypatch):
    """A reused worker scoring the next candidate of the same round does not read the
    supernet again; another checkpoint is read (and the oldest of more than two let go)."""
    from raygan import storage, trainable

    torch.manual_seed(0)
    g, d = build_pair(full_config(CONFIG))
    for name in ("a", "b", "c"):
        torch.save({"G": g.state_dict(), "D": d.state_dict()}, tmp_path / f"{name}.pt")
    reads = []
    load = storage.load_torch
    monkeypatch.setattr(
        storage, "load_torch", lambda path, **kw: reads.append(path) or load(path, **kw)
    )
    monkeypatch.setattr(trainable, "_READ", {})
    config = full_config(CONFIG)
    for name in ("a", "a", "b", "a", "c", "a"):
        trainer = GANTrainer(*build_pair(config), train_config(config))
        path = str(tmp_path / f"{name}.pt")
        inherit_weights(trainer, path, path)
        for key, value in trainer.G.state_dict().items():
            assert torch.equal(value, g.state_dict()[key])
    assert [p.rsplit("/", 1)[1] for p in reads] == ["a.pt", "b.pt", "c.pt", "a.pt"]


def test_a_path_scored_as_inherited_does_not_depend_on_the_supernets_batch_norm_state(tmp_path):
    """Every path shares the supernet's BatchNorm statistics, which the paths that trained last
    accumulated: a candidate scored without training gets its own instead."""
    torch.manual_seed(0)
    supernet = nn.build_supernet("nas_cell_g", width=CONFIG["gf"])
    finals = []
    for mean, var in ((0.0, 1.0), (3.0, 50.0)):
        for m in supernet.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.fill_(mean)
                m.running_var.fill_(var)
        path = tmp_path / f"supernet-{mean}.pt"
        torch.save({"G": supernet.state_dict()}, path)
        rec = Recorder()
        finals.append(run_trial({**CONFIG, "steps": 0, "init_g": str(path)}, rec))
        assert set(rec.reports[-1][1]) == {"G_ema", "step"}  # untrained: what it was scored with
        scored = rec.reports[-1][1]["G_ema"]
        assert all(scored[k].mean() != var for k in scored if k.endswith("running_var"))
    assert finals[0]["status"] == finals[1]["status"] == "ok"
    assert finals[0]["fid"] == finals[1]["fid"] and finals[0]["is"] == finals[1]["is"]


def test_fit_trials_hands_back_outcomes_and_never_reads_a_pickled_error(ray_local, tmp_path):
    """Outcomes come back in the configs' order as plain data; a trial that raised is an
    outcome with its error's last line (its first failure's: no retries here), and Tune is
    left no pickled exception to read back (its ResultGrid would unpickle one from storage)."""
    from ray.tune.experiment.trial import Trial

    from raygan.trainable import fit_trials

    calls = []
    original = Trial.get_pickled_error

    def spy(self):
        calls.append(original(self))
        return calls[-1]

    good = {"g": "nas_cell_g:1,1,1,0,2,3,1/1,1,0,1,3,0,5/0,1,0,3,0,0,3", "d": "autogan_d:"}
    good.update(gf=8, df=8, steps=0, eval_samples=10, max_images=64, reference_images=64)
    bad = {**good, "g": "nas_cell_g:9"}
    Trial.get_pickled_error = spy
    try:
        outcomes = fit_trials(
            str(tmp_path), "run", [bad, good], resources={"CPU": 1}, max_failures=0
        )
    finally:
        Trial.get_pickled_error = original
    assert [o["index"] for o in outcomes] == [0, 1]
    assert outcomes[0]["error"] and "nas_cell_g" in outcomes[0]["error"]
    assert outcomes[1]["error"] is None and outcomes[1]["metrics"]["status"] == "ok"
    assert outcomes[1]["checkpoint"] and outcomes[0]["checkpoint"] is None
    assert outcomes[1]["config"]["g"] == good["g"] and "index" not in outcomes[1]["config"]
    assert calls and all(c is None for c in calls)  # asked, and given nothing to unpickle
