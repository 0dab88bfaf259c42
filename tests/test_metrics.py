"""raygan.metrics: real torch-fidelity runs on small sample counts, offline.

raygan's own extractor is trained for real, once, into a cache shared by this module; the
Inception path runs torch-fidelity's own InceptionV3 class on a weights file written here.
"""

import math
import os

import pytest
import torch
from torch import nn
from torch_fidelity.feature_extractor_inceptionv3 import (
    URL_INCEPTION_V3,
    FeatureExtractorInceptionV3,
)

from raygan import data, metrics

INCEPTION = metrics.INCEPTION


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("raygan-cache")


class Replay(nn.Module):
    """A 'generator' that returns real images, chosen by its noise (so it is deterministic)."""

    latent_dim = 16

    def __init__(self, images: torch.Tensor) -> None:
        super().__init__()
        self.resolution = images.shape[-1]
        self.register_buffer("images", images)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        idx = (z[:, 0].abs() * 1e6).long() % self.images.shape[0]
        return self.images[idx].float() / 127.5 - 1


class Noise(nn.Module):
    """A 'generator' of structureless images."""

    latent_dim = 16
    resolution = 32

    def __init__(self) -> None:
        super().__init__()
        self.project = nn.Linear(self.latent_dim, 3 * 32 * 32)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(4 * self.project(z)).view(-1, 3, 32, 32)


def test_own_extractor_classifies_shapes():
    net = metrics.ShapesNet()
    path = metrics.shapes_extractor_weights()  # shipped with raygan
    net.load_state_dict(torch.load(path, weights_only=True))
    held_out = data.make_shapes(500, 32, seed=123)
    with torch.no_grad():
        features, logits = net.eval()(metrics.ShapesNet.prepare(held_out.images))
    assert features.shape == (500, metrics.ShapesNet.FEATURE_DIM)
    assert (logits.argmax(1) == held_out.labels).float().mean() > 0.85


def test_own_extractor_training_is_deterministic():
    a = metrics.train_shapes_net(steps=10, num_images=400).state_dict()
    b = metrics.train_shapes_net(steps=10, num_images=400).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = metrics.train_shapes_net(steps=10, num_images=400, seed=1).state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_real_images_score_better_than_noise(cache):
    reference = metrics.Reference("shapes", 32, num_images=500)
    real = Replay(data.make_shapes(300, 32, seed=9).images)
    scores = {
        name: metrics.evaluate(g, reference=reference, num_samples=300, cache_dir=cache, kid=True)
        for name, g in (("real", real), ("noise", Noise()))
    }
    for s in scores.values():
        assert s["extractor"] == metrics.SHAPES_EXTRACTOR and s["num_samples"] == 300
        assert s["reference_images"] == 500
        assert all(math.isfinite(s[k]) for k in ("is", "is_std", "fid", "kid", "kid_std"))
        assert s["is"] >= 1 and s["fid"] >= 0
    assert scores["real"]["fid"] * 10 < scores["noise"]["fid"]
    assert scores["real"]["kid"] < scores["noise"]["kid"]
    assert scores["real"]["is"] > 3 > scores["noise"]["is"]


def test_reference_statistics_are_computed_once(cache):
    loads = []

    def loader() -> torch.Tensor:
        loads.append(1)
        return data.make_shapes(200, 32, seed=4).images

    reference = metrics.Reference("counted-shapes", 32, images=loader)
    generator = Replay(data.make_shapes(100, 32, seed=5).images)
    first = metrics.evaluate(generator, reference=reference, num_samples=50, cache_dir=cache)
    cached = sorted((cache / "fidelity").glob("raygan-counted-shapes-*"))
    assert len(cached) == 3  # features for IS and FID, FID statistics
    stamps = [p.stat().st_mtime_ns for p in cached]
    second = metrics.evaluate(generator, reference=reference, num_samples=50, cache_dir=cache)
    assert loads == [1]
    assert [p.stat().st_mtime_ns for p in cached] == stamps
    assert first == second


def test_evaluate_restores_mode_and_checks_its_inputs(cache):
    generator = Replay(data.make_shapes(20, 32, seed=5).images).train()
    reference = metrics.Reference("shapes", 32, num_images=500)
    metrics.evaluate(generator, reference=reference, num_samples=20, cache_dir=cache)
    assert generator.training
    with pytest.raises(ValueError, match="16 px"):
        metrics.evaluate(generator, reference=metrics.Reference("shapes", 16), num_samples=20)
    with pytest.raises(ValueError, match="at least 10"):
        metrics.evaluate(generator, reference="shapes", num_samples=5)


def test_unknown_extractor_names_the_choices():
    with pytest.raises(ValueError, match="auto, inception-v3-compat, raygan-shapes-v1"):
        metrics.resolve_extractor("inception")


def test_auto_uses_inception_only_where_its_weights_are(tmp_path, monkeypatch, cache):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("RAYGAN_INCEPTION_WEIGHTS", raising=False)
    assert metrics.resolve_extractor(cache_dir=cache).name == metrics.SHAPES_EXTRACTOR

    hub_copy = tmp_path / "torch" / "hub" / "checkpoints" / os.path.basename(URL_INCEPTION_V3)
    hub_copy.parent.mkdir(parents=True)
    hub_copy.write_bytes(b"weights")
    assert metrics.resolve_extractor(cache_dir=cache) == metrics.Extractor(
        metrics.INCEPTION, hub_copy
    )

    local = tmp_path / "inception.pth"
    local.write_bytes(b"other weights")
    monkeypatch.setenv("RAYGAN_INCEPTION_WEIGHTS", str(local))
    chosen = metrics.resolve_extractor(cache_dir=cache)
    assert chosen.weights == local and chosen.tag != metrics.Extractor(INCEPTION, hub_copy).tag
    with pytest.raises(FileNotFoundError):
        metrics.resolve_extractor(inception_weights=tmp_path / "absent.pth")


class _Unloaded(FeatureExtractorInceptionV3):
    """torch-fidelity's InceptionV3 built without loading any weights: only to learn the
    exact state-dict layout its constructor then loads."""

    def load_state_dict(self, state_dict, strict=True, assign=False):
        return None


def test_inception_runs_from_a_local_weights_file(tmp_path):
    torch.save({}, tmp_path / "empty.pt")
    torch.manual_seed(0)
    layout = _Unloaded(INCEPTION, ["2048"], feature_extractor_weights_path=tmp_path / "empty.pt")
    weights = tmp_path / "inception.pth"
    torch.save(layout.state_dict(), weights)
    del layout

    reference = metrics.Reference("shapes", 32, num_images=10)
    generator = Replay(data.make_shapes(10, 32, seed=3).images)
    scores = metrics.evaluate(
        generator,
        reference=reference,
        num_samples=10,
        extractor=INCEPTION,
        inception_weights=weights,
        cache_dir=tmp_path / "cache",
    )
    assert scores["extractor"] == INCEPTION and scores["num_samples"] == 10
    assert math.isfinite(scores["is"]) and scores["is"] >= 1 - 1e-6
    assert math.isfinite(scores["fid"]) and scores["fid"] >= -1e-6


class Blurred(Replay):
    """Replay's real images through a 3x3 box blur: a convolution, which bf16 autocast runs
    in bf16 (Replay alone has no op that autocast changes)."""

    def __init__(self, images: torch.Tensor) -> None:
        super().__init__(images)
        self.blur = nn.Conv2d(3, 3, 3, padding=1, padding_mode="replicate", groups=3, bias=False)
        nn.init.constant_(self.blur.weight, 1 / 9)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.blur(super().forward(z))


def precision_log(generator: nn.Module, monkeypatch: pytest.MonkeyPatch) -> dict[str, set]:
    """Records whether CPU autocast was on in ``generator`` and in raygan's extractor
    (ShapesNet), the dtype the generator made and the dtype the extractor was given."""
    log: dict[str, set] = {"generator": set(), "made": set(), "extractor": set(), "given": set()}
    generator.register_forward_pre_hook(
        lambda module, args: log["generator"].add(torch.is_autocast_enabled("cpu"))
    )
    generator.register_forward_hook(lambda module, args, out: log["made"].add(out.dtype))
    forward = metrics.ShapesNet.forward

    def recorded(self: metrics.ShapesNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log["extractor"].add(torch.is_autocast_enabled("cpu"))
        log["given"].add(x.dtype)
        return forward(self, x)

    monkeypatch.setattr(metrics.ShapesNet, "forward", recorded)
    return log


def test_bf16_runs_the_generator_under_autocast_and_the_extractor_in_fp32(cache, monkeypatch):
    generator = Blurred(data.make_shapes(20, 32, seed=5).images)
    log = precision_log(generator, monkeypatch)
    reference = metrics.Reference("shapes", 32, num_images=500)
    metrics.evaluate(generator, reference=reference, num_samples=20, cache_dir=cache, bf16=True)
    assert log["generator"] == {True} and log["made"] == {torch.bfloat16}
    assert log["extractor"] == {False} and log["given"] == {torch.float32}


@pytest.mark.parametrize("enclosing", [False, True], ids=["plain", "under-callers-autocast"])
def test_without_bf16_nothing_runs_under_autocast(cache, monkeypatch, enclosing):
    generator = Blurred(data.make_shapes(20, 32, seed=5).images)
    log = precision_log(generator, monkeypatch)
    reference = metrics.Reference("shapes", 32, num_images=500)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enclosing):
        metrics.evaluate(generator, reference=reference, num_samples=20, cache_dir=cache)
    assert log["generator"] == {False} and log["made"] == {torch.float32}
    assert log["extractor"] == {False} and log["given"] == {torch.float32}


def test_bf16_scores_are_close_to_fp32s(cache):
    # measured on a CPU (this generator, 100 samples): IS 0.11 % and FID 0.08 % apart (300
    # samples: 0.01 % and 0.17 %); 2 % leaves ten times that
    generator = Blurred(data.make_shapes(300, 32, seed=9).images)
    reference = metrics.Reference("shapes", 32, num_images=500)
    fp32, bf16 = (
        metrics.evaluate(generator, reference=reference, num_samples=100, cache_dir=cache, bf16=b)
        for b in (False, True)
    )
    assert all(math.isfinite(bf16[k]) for k in ("is", "is_std", "fid"))
    assert bf16["is"] == pytest.approx(fp32["is"], rel=0.02)
    assert bf16["fid"] == pytest.approx(fp32["fid"], rel=0.02)
    assert bf16["fid"] != fp32["fid"]  # the generator did run in bf16
