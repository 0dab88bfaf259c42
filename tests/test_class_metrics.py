"""Scores of a class-conditional generator: class-balanced samples, the intra-FID against a
computation by hand (torch-fidelity's FID of each class's samples against that class's real
images, averaged), and the class accuracy under raygan's shapes classifier."""

from __future__ import annotations

import pytest
import torch
import torch_fidelity
from test_metrics import precision_log
from torch import nn

from raygan import class_metrics, data, metrics

REFERENCE = metrics.Reference("shapes", 32, num_images=1600, seed=0)


class Lookup(nn.Module):
    """A conditional "generator" that answers class ``y`` with a real image of class
    ``y + shift`` (another seed's shapes), picked by its noise: ``shift`` 0 draws the right
    classes, 1 every class's neighbour."""

    latent_dim, resolution = 8, 32

    def __init__(self, shift: int = 0):
        super().__init__()
        found = data.load_labelled("shapes", resolution=32, max_images=1600, seed=7)
        self.by_class = [found.images[found.labels == c] for c in range(len(found.classes))]
        self.shift = shift
        self.anchor = nn.Parameter(torch.zeros(()))  # a device to run on, as a network has

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = []
        for zi, yi in zip(z, y, strict=True):
            pool = self.by_class[(int(yi) + self.shift) % len(self.by_class)]
            out.append(pool[int(abs(zi[0].item()) * 1e4) % len(pool)])
        return torch.stack(out).float().div(127.5).sub(1)


def test_samples_are_class_balanced():
    images, labels = class_metrics.balanced_samples(Lookup(), 21, 8, seed=0)
    assert images.dtype == torch.uint8 and images.shape == (21, 3, 32, 32)
    assert torch.bincount(labels).tolist() == [3] * 5 + [2] * 3


def by_hand(images: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """Each class's FID from torch-fidelity directly: its samples against its real images."""
    real = data.load_labelled("shapes", resolution=32, max_images=1600, seed=0)
    extractor = metrics.resolve_extractor(metrics.SHAPES_EXTRACTOR)
    fids = []
    for c in range(len(real.classes)):
        result = torch_fidelity.calculate_metrics(
            input1=metrics._Images(images[labels == c]),
            input2=metrics._Images(real.images[real.labels == c]),
            fid=True,
            feature_extractor=extractor.name,
            feature_extractor_weights_path=str(extractor.weights),
            cuda=False,
            batch_size=100,
            verbose=False,
            cache=False,
            save_cpu_ram=True,
        )
        fids.append(result[torch_fidelity.KEY_METRIC_FID])
    return fids


@pytest.mark.parametrize("shift", [0, 1])
def test_intra_fid_is_the_mean_of_each_classs_fid_computed_by_hand(shift):
    g = Lookup(shift)
    scores = class_metrics.evaluate(
        g, reference=REFERENCE, num_classes=8, num_samples=400, extractor=metrics.SHAPES_EXTRACTOR
    )
    images, labels = class_metrics.balanced_samples(g, 400, 8, seed=0)
    expected = by_hand(images, labels)
    assert scores["class_fid"] == pytest.approx(expected, rel=1e-6)
    assert scores["intra_fid"] == pytest.approx(sum(expected) / 8, rel=1e-6)
    assert {"is", "fid", "class_accuracy"} <= scores.keys()
    if shift == 0:  # real images of the class asked for: the classifier agrees
        assert scores["class_accuracy"] > 0.9
    else:  # the neighbouring class's real images: FID cannot tell, intra-FID and accuracy do
        right = class_metrics.evaluate(
            Lookup(0), reference=REFERENCE, num_classes=8, num_samples=400,
            extractor=metrics.SHAPES_EXTRACTOR,
        )  # fmt: skip
        assert scores["class_accuracy"] < 0.1
        assert scores["intra_fid"] > 3 * right["intra_fid"]
        assert scores["fid"] == pytest.approx(right["fid"], rel=0.5)


def test_bf16_runs_the_generator_under_autocast_and_the_classifier_in_fp32(monkeypatch):
    g = Lookup()
    g.num_classes = 8  # as a conditional network has: metrics.evaluate then scores it here
    seen = precision_log(g, monkeypatch)
    scores = metrics.evaluate(
        g, reference=REFERENCE, num_samples=16, extractor=metrics.SHAPES_EXTRACTOR, bf16=True
    )
    assert seen["generator"] == {True} and seen["made"] == {torch.float32}  # Lookup's own
    assert seen["extractor"] == {False} and seen["given"] == {torch.float32}
    assert {"is", "fid", "intra_fid", "class_accuracy"} <= scores.keys()
    # Lookup's output has no op that autocast changes: the same images either way
    fp32 = class_metrics.balanced_samples(g, 16, 8, seed=0)
    assert torch.equal(class_metrics.balanced_samples(g, 16, 8, seed=0, bf16=True)[0], fp32[0])
