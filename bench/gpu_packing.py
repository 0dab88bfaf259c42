"""Trials packed on one GPU: the training throughput of K concurrent Tune trials, each given
1/K of the GPU, against one trial alone (K = 1) in the same run; and one trial's throughput
in float32, bf16 autocast and bf16 + channels-last.

Run from the repository root on a machine with a CUDA GPU:

    python bench/gpu_packing.py [--sizes quick,paper] [--packs 1,2,4,8] [--seconds 10]

A trial is raygan's own ``train_pair`` (an EAGAN stage-2 pair: a searched G against
AutoGAN-D) at the quick preset's size (gf/df 16, batches 32/16) or the paper's (gf 256,
df 128, batches 128/64), n_critic 5. Each size's step count is calibrated so that a lone
trial trains about ``--seconds``. Two aggregate throughputs, in real images through D per
second: "sum" adds the trials' own training rates (exact when the trials overlap fully, an
upper bound otherwise) and "e2e" divides every image by the wall time of the whole
``fit_trials`` (trial start, evaluation and Ray's bookkeeping included: a lower bound). The
GPU's peak memory in use (all processes) comes from ``nvidia-smi``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import ray
from gpu_monitor import GPUMonitor
from gpu_training import SIZES
from gpu_training import VARIANTS as TRAINING
from ray import tune

from raygan.trainable import fit_trials

PAIR = {
    "g": "nas_cell_g:1,1,1,0,2,3,1/1,1,0,1,3,0,5/0,1,0,3,0,0,3",
    "d": "autogan_d:",
    "n_critic": 5,
    "max_images": 10_000,
    "eval_samples": 100,
    "extractor": "raygan-shapes-v1",
}
VARIANTS = {name: TRAINING[name] for name in ("fp32", "bf16", "bf16+cl")}


def fit(config: dict, trials: int, gpu_share: float) -> tuple[list[dict], float, GPUMonitor]:
    """``trials`` copies of the pair (seeds 0..) at once; their last results, wall, GPU use."""
    with tempfile.TemporaryDirectory() as storage, GPUMonitor() as gpu:
        start = time.perf_counter()
        grid = fit_trials(
            storage,
            "packing",
            resources={"cpu": 1, "gpu": gpu_share},
            param_space={**config, "seed": tune.grid_search(list(range(trials)))},
        )
        wall = time.perf_counter() - start
    results = [r.metrics for r in grid]
    bad = [r.get("status") for r in results if r.get("status") != "ok"]
    if bad or len(results) != trials:
        raise RuntimeError(f"{len(results)} results of {trials}, statuses not ok: {bad}")
    return results, wall, gpu


def images(result: dict, config: dict) -> int:
    return result["steps"] * config["n_critic"] * config["d_batch"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="quick,paper")
    parser.add_argument("--packs", default="1,2,4,8", help="trials per GPU to try")
    parser.add_argument("--seconds", type=float, default=10.0, help="a lone trial's training")
    args = parser.parse_args()
    ray.init(include_dashboard=False, log_to_driver=False)
    lines = []
    for size in args.sizes.split(","):
        config = {**PAIR, **SIZES[size]}
        (probe,), _, _ = fit({**config, "steps": 20}, 1, 1.0)  # also warms the caches
        steps = max(20, int(20 * args.seconds / probe["train_wall_s"]))
        config["steps"] = steps
        base = None
        for k in (int(v) for v in args.packs.split(",")):
            results, wall, gpu = fit(config, k, 1.0 / k)
            total = sum(r["img_per_s"] for r in results)
            e2e = sum(images(r, config) for r in results) / wall
            base = base or (total, e2e)
            lines.append(
                f"{size:<6} {'fp32':<8} {k:>3} {steps:>6} {total:>10.0f} {total / base[0]:>6.2f} "
                f"{e2e:>9.0f} {e2e / base[1]:>6.2f} {wall:>7.1f} {gpu.peak_mib:>9.0f} "
                f"{gpu.mean_util:>6.1f}"
            )
            print(lines[-1], flush=True)
        fp32 = None
        for variant, options in VARIANTS.items():
            (r,), wall, gpu = fit({**config, **options}, 1, 1.0)
            fp32 = fp32 or r["img_per_s"]
            lines.append(
                f"{size:<6} {variant:<8} {1:>3} {steps:>6} {r['img_per_s']:>10.0f} "
                f"{r['img_per_s'] / fp32:>6.2f} {'':>9} {'':>6} {wall:>7.1f} {gpu.peak_mib:>9.0f} "
                f"{gpu.mean_util:>6.1f}   FID {r['fid']:.1f}"
            )
            print(lines[-1], flush=True)
    print(f"command: python {' '.join(sys.argv)}")
    print(
        f"{'size':<6} {'variant':<8} {'K':>3} {'steps':>6} {'sum img/s':>10} {'ratio':>6} "
        f"{'e2e img/s':>9} {'ratio':>6} {'wall s':>7} {'peak MiB':>9} {'util%':>6}"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
