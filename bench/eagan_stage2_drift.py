"""Why an EAGAN search's stage-2 scores fall: replay one stage-2 trial for longer, scoring
its EMA generator every few steps, at several generator learning rates (and one D lr).

A stage-2 trial trains (a copy of G*, one candidate D) and is scored once at the end. This
script rebuilds that trial from the ``config.json`` saved with its checkpoint (same weights
inherited, same seed, data and budget settings, so at the trial's own learning rate and step
count it reproduces the trial's score) and prints IS and FID along the way instead of once.

Run from the repository root, on a finished search (one process; no Ray cluster starts):

    python bench/eagan_stage2_drift.py DIR [--trial CHECKPOINT_DIR] [--g-lr 2e-4 5e-5]
                                          [--d-lr 2e-4] [--steps 120] [--every 20]

Without ``--trial`` it replays generation 0's first stage-2 trial: G* from its stage-1
(supernet) weights against a freshly initialised D.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import torch

from raygan import results, storage
from raygan.train import TrainConfig
from raygan.trainable import CONFIG_FILE, STATE_FILE, run_trial


def first_stage2_trial(search_dir: str) -> str:
    df = results.load(search_dir)
    rows = df[(df["stage"] == 2) & (df["generation"] == 0)].sort_values("individual")
    if rows.empty:
        raise SystemExit(f"{search_dir} has no stage-2 trials")
    return rows.iloc[0]["checkpoint"]


def replay(
    config: dict, g_lr: float, d_lr: float, steps: int, every: int
) -> list[tuple[int, float, float]]:
    """(step, IS, FID) at step 0 and every ``every`` steps up to ``steps``.

    Each point is :func:`raygan.trainable.run_trial` itself, resumed from the previous point's
    final checkpoint (bit-for-bit the same as training straight through), so the replay
    trains and scores exactly as a trial does.
    """
    curve = []
    with tempfile.TemporaryDirectory() as kept:

        def keep_final(result: dict, checkpoint_dir: str | None) -> None:
            if result.get("done") and checkpoint_dir:
                shutil.copy(os.path.join(checkpoint_dir, STATE_FILE), kept)

        resume = None
        for until in range(0, steps + 1, every):
            trial = {**config, "g_lr": g_lr, "d_lr": d_lr, "steps": until, "checkpoint_every": 0}
            final = run_trial(trial, keep_final, resume_dir=resume)
            if final["status"] != "ok":
                print(f"  stopped at step {final['steps']}: {final.get('error', final['status'])}")
                break
            curve.append((until, final["is"], final["fid"]))
            resume = kept
    return curve


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("search_dir", help="a finished `raygan search eagan` folder")
    p.add_argument("--trial", help="a stage-2 trial's checkpoint folder (default: gen 0's first)")
    p.add_argument("--g-lr", type=float, nargs="+", default=[2e-4, 5e-5, 2e-5])
    p.add_argument("--d-lr", type=float, help="D learning rate (default: the trial's own)")
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--every", type=int, default=20)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; a trial ran with one per CPU it held (1 in the quick preset), "
        "and only the same count reproduces its score to the digit",
    )
    args = p.parse_args()

    trial = args.trial or first_stage2_trial(args.search_dir)
    with open(storage.join(trial, CONFIG_FILE)) as f:
        config = json.load(f)
    print(f"trial {trial}")
    print(f"G {config['g']}\nD {config['d']} ({'inherited' if config['init_d'] else 'fresh'})")
    # configs of searches from before the stage-2 lr option lack them: the defaults applied
    trained_g_lr = config.get("g_lr", TrainConfig.g_lr)
    trained_d_lr = config.get("d_lr", TrainConfig.d_lr)
    print(f"the trial trained {config['steps']} steps at G lr {trained_g_lr}, D lr {trained_d_lr}")
    d_lr = trained_d_lr if args.d_lr is None else args.d_lr
    torch.set_num_threads(args.threads)
    for g_lr in args.g_lr:
        start = time.perf_counter()
        curve = replay(config, g_lr, d_lr, args.steps, args.every)
        points = "  ".join(f"{step}: {fid:.0f} ({is_:.2f})" for step, is_, fid in curve)
        wall = time.perf_counter() - start
        print(f"G lr {g_lr:g}, D lr {d_lr:g}, FID (IS) by step: {points}  [{wall:.0f} s]")


if __name__ == "__main__":
    main()
