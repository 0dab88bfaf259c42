"""How long one trial's evaluation takes: ``raygan.metrics.evaluate`` (IS and FID) on the GPU
and on the CPU, with torch-fidelity's InceptionV3 and with raygan's own shapes extractor,
against the shapes extractor on the GPU in the same run.

Run from the repository root:

    python bench/gpu_metrics.py [--samples 5000] [--cpu-samples 500]

The generator is a paper-width one (gf 256, a searched cell genotype), so its sampling is part
of the time, as in a trial. No Inception weights can be downloaded here, so the InceptionV3
runs on weights drawn at random and saved in torch-fidelity's own layout: the same network and
work, meaningless scores. The reference statistics are computed and cached by a first, untimed
call; the timed calls read them from the cache, as every trial after a search's first does.
Throughput is samples per second, the median of ``--repeats`` calls.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from raygan import metrics, nn, spaces

GENOTYPE = "nas_cell_g:1,1,1,0,2,3,1/1,1,0,1,3,0,5/0,1,0,3,0,0,3"


class _LayoutOnly(FeatureExtractorInceptionV3):
    """torch-fidelity's InceptionV3 constructed without loading weights (to save its layout)."""

    def load_state_dict(self, state_dict, strict=True, assign=False):  # type: ignore[override]
        return None


def random_inception_weights(folder: Path) -> Path:
    empty = folder / "empty.pt"
    torch.save({}, empty)
    torch.manual_seed(0)
    net = _LayoutOnly(metrics.INCEPTION, ["2048"], feature_extractor_weights_path=str(empty))
    path = folder / "inception-random.pth"
    torch.save(net.state_dict(), path)
    return path


def samples_per_s(generator, reference, extractor, weights, device, samples, repeats, cache):
    def once() -> float:
        start = time.perf_counter()
        metrics.evaluate(
            generator,
            reference=reference,
            num_samples=samples,
            extractor=extractor,
            inception_weights=weights,
            device=device,
            cache_dir=cache,
        )
        return time.perf_counter() - start

    once()  # reference statistics into the cache; kernels and extractor loaded
    return samples / statistics.median(once() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5000, help="on the GPU (paper: 5000)")
    parser.add_argument("--cpu-samples", type=int, default=500, help="on the CPU")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference-images", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = random_inception_weights(tmp)
        reference = metrics.Reference("shapes", 32, num_images=args.reference_images)
        generator = nn.build_generator(spaces.Genotype.parse(GENOTYPE), width=256)
        extractors = (metrics.SHAPES_EXTRACTOR, metrics.INCEPTION)
        runs = [(d, e) for d in ("cuda", "cpu") for e in extractors]
        rows = []
        for device, extractor in runs:
            if device == "cuda" and not torch.cuda.is_available():
                continue
            samples = args.samples if device == "cuda" else args.cpu_samples
            rate = samples_per_s(
                generator.to(device),
                reference,
                extractor,
                weights,
                device,
                samples,
                args.repeats,
                tmp,
            )
            rows.append((device, extractor, samples, rate))
            print(rows[-1], flush=True)
    base = rows[0][3]
    print(f"command: python {' '.join(sys.argv)}")
    print(f"torch threads on the CPU: {torch.get_num_threads()}")
    per = f"s per {args.samples}"
    print(f"{'device':<6} {'extractor':<20} {'samples':>7} {'samples/s':>10} {per:>10} ratio")
    for device, extractor, samples, rate in rows:
        print(
            f"{device:<6} {extractor:<20} {samples:>7} {rate:>10.0f} {args.samples / rate:>10.1f} "
            f"{rate / base:>6.2f}"
        )


if __name__ == "__main__":
    main()
