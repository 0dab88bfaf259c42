"""The scores a perfect generator would get on ``shapes``: real images, not seen by the
reference, evaluated exactly as a search trial evaluates a generator (IS and FID with the
default extractor against the 32 px reference the EAGAN quick preset uses).

Run from the repository root:

    python bench/investigations/shapes_real_scores.py [--samples 500 1000]

Read a search's scores against these: the quick preset scores with 500 samples.
"""

from __future__ import annotations

import argparse

import torch

from raygan import data, metrics
from raygan.trainable import reference_for

RESOLUTION = 32


class RealImages(torch.nn.Module):
    """Hands out held-out real images in order, through the generator interface."""

    latent_dim = 8
    resolution = RESOLUTION

    def __init__(self, images: torch.Tensor):
        super().__init__()
        self.images = images
        self.next = 0
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives metrics a device to read

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch = self.images[self.next : self.next + len(z)]
        self.next += len(z)
        return batch.float() / 127.5 - 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, nargs="+", default=[500, 1000])
    args = parser.parse_args()
    reference = reference_for({"dataset": "shapes", "data_root": None}, RESOLUTION)
    # a seed other than the reference's (0): images the reference statistics never saw
    held_out = data.load("shapes", resolution=RESOLUTION, max_images=max(args.samples), seed=123)
    for n in args.samples:
        scores = metrics.evaluate(RealImages(held_out), reference=reference, num_samples=n)
        print(
            f"real shapes, {n} samples, {scores['extractor']}: "
            f"IS {scores['is']:.2f}, FID {scores['fid']:.2f} (reference {scores['reference']})"
        )


if __name__ == "__main__":
    main()
