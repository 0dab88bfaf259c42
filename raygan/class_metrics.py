"""Scores of a class-conditional generator: IS and FID of class-balanced samples, the
intra-FID, and the share of samples classified as the class they were drawn for.

The pipeline, one way:

    class-balanced samples, made once (z seeded; y = 0, 1, .., C-1, 0, 1, ..), as uint8
      -> IS and FID against the whole reference (metrics.score_images)
      -> intra-FID: each class's FID against that class's own reference images
         (Reference(label=c), statistics cached once like any reference), averaged over
         the classes (Miyato & Koyama, ICLR 2018)
      -> class accuracy, where the extractor classifies the dataset's own classes
         (raygan-shapes-v1 on shapes): argmax of its logits against the class drawn

The generator is called as ``generator(z, y)``. This module imports no Ray.
"""

from __future__ import annotations

import dataclasses
import os

import torch
from torch import nn

from raygan import metrics

CLASSIFIES = {metrics.SHAPES_EXTRACTOR: "shapes"}
"""Extractor -> the dataset whose classes its logits are (for the class accuracy)."""


@torch.no_grad()
def balanced_samples(
    generator: nn.Module,
    num_samples: int,
    num_classes: int,
    *,
    seed: int,
    batch_size: int = 100,
    bf16: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``num_samples`` uint8 images (as torch-fidelity reads them) with their classes, every
    class drawn equally often (the first ``num_samples % num_classes`` once more); ``bf16``:
    the generator runs under bf16 autocast (:func:`raygan.metrics.generator_autocast`)."""
    device = next(generator.parameters()).device
    labels = torch.arange(num_samples) % num_classes
    z = torch.randn(
        num_samples, generator.latent_dim, generator=torch.Generator().manual_seed(seed)
    )
    was_training = generator.training
    generator.eval()
    try:
        with metrics.generator_autocast(device, bf16):
            parts = [
                generator(zs.to(device), ys.to(device))
                for zs, ys in zip(z.split(batch_size), labels.split(batch_size), strict=True)
            ]
        parts = [x.float().add(1).mul(127.5).add(0.5).clamp(0, 255) for x in parts]
    finally:
        generator.train(was_training)
    return torch.cat(parts).to(torch.uint8).cpu(), labels


def class_accuracy(images: torch.Tensor, labels: torch.Tensor) -> float:
    """The share of ``images`` that ``raygan-shapes-v1`` classifies as their ``labels``."""
    net = metrics.ShapesNet()
    weights = metrics.shapes_extractor_weights()
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    net.eval()
    with torch.no_grad(), torch.autocast("cpu", enabled=False):  # fp32, as metrics' extractor
        logits = torch.cat([net(metrics.ShapesNet.prepare(x))[1] for x in images.split(500)])
    return float((logits.argmax(1) == labels).float().mean())


def evaluate(
    generator: nn.Module,
    *,
    reference: metrics.Reference,
    num_classes: int,
    num_samples: int,
    extractor: str = metrics.AUTO,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    inception_weights: str | os.PathLike | None = None,
    bf16: bool = False,
) -> dict:
    """IS and FID (as :func:`raygan.metrics.evaluate`'s), ``intra_fid`` (and ``class_fid``,
    each class's) and, where the extractor knows the classes, ``class_accuracy``; ``bf16``:
    the generator alone runs under bf16 autocast, the extractor in fp32."""
    chosen = metrics.resolve_extractor(extractor, inception_weights=inception_weights)
    images, labels = balanced_samples(generator, num_samples, num_classes, seed=seed, bf16=bf16)
    device = next(generator.parameters()).device
    options = {"extractor": chosen, "device": device, "seed": seed, "cache_dir": cache_dir}
    out = metrics.score_images(images, reference=reference, **options)
    per_class = []
    for c in range(num_classes):
        own = dataclasses.replace(reference, label=c)
        per_class.append(metrics.score_images(images[labels == c], reference=own, isc=False,
                                              **options)["fid"])  # fmt: skip
    out.update(intra_fid=sum(per_class) / num_classes, class_fid=per_class)
    if CLASSIFIES.get(chosen.name) == reference.dataset:
        out["class_accuracy"] = class_accuracy(images, labels)
    return out
