"""Why an EAGAN search's scores fall or wander: replay one trial for longer, scoring its EMA
generator every few steps, at several generator learning rates (and one D lr).

A stage-2 trial trains (a copy of G*, one candidate D) and is scored once at the end. This
script rebuilds that trial from the ``config.json`` saved with its checkpoint (same weights
inherited, same seed, data and budget settings, so at the trial's own learning rate and step
count it reproduces the trial's score) and prints IS and FID along the way instead of once.

Run from the repository root, on a finished search (one process; no Ray cluster starts):

    python bench/investigations/eagan_stage2_drift.py DIR [--trial CHECKPOINT_DIR]
        [--g-lr 2e-4 5e-5] [--d-lr 2e-4] [--steps 120] [--every 20]

Without ``--trial`` it replays generation 0's first stage-2 trial: G* from its stage-1
(supernet) weights against a freshly initialised D. ``--trial`` also takes a stage-1 trial's
checkpoint folder. ``--fresh`` trains the trial's G and D from their initialisation instead of
inheriting weights, and ``--set KEY=VALUE`` (repeatable, VALUE as JSON) changes any trial
config key first (``g``, ``n_critic``, ``betas``, ``bottom_width``, ...): together they show how
one architecture trains from scratch under the search's budget, e.g.

    python bench/investigations/eagan_stage2_drift.py DIR --trial STAGE1_TRIAL --fresh --g-lr 2e-4 \
        --set n_critic=1 --set 'betas=[0.5, 0.999]' --steps 600 --every 100
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
    trains and scores exactly as a trial does. Step 0 is a trial of zero steps: the generator
    scored as inherited (as a stage-1 candidate is), whose checkpoint holds only that
    generator; the first trained point therefore starts from the inherited weights afresh.
    """
    curve = []
    with tempfile.TemporaryDirectory() as kept:

        def keep_final(result: dict, checkpoint_dir: str | None) -> None:
            if result.get("done") and checkpoint_dir:
                shutil.copy(os.path.join(checkpoint_dir, STATE_FILE), kept)

        for until in range(0, steps + 1, every):
            trial = {**config, "g_lr": g_lr, "d_lr": d_lr, "steps": until, "checkpoint_every": 0}
            resume = kept if until > every else None  # a zero-step checkpoint cannot resume
            final = run_trial(trial, keep_final, resume_dir=resume)
            if final["status"] != "ok":
                print(f"  stopped at step {final['steps']}: {final.get('error', final['status'])}")
                break
            curve.append((until, final["is"], final["fid"]))
    return curve


def parse_overrides(items: list[str]) -> dict:
    """``["n_critic=1", "betas=[0.5, 0.999]", "g=nas_cell_g:..."]`` -> config updates."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set takes KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("search_dir", help="a finished `raygan search eagan` folder")
    p.add_argument("--trial", help="a stage-2 trial's checkpoint folder (default: gen 0's first)")
    p.add_argument("--g-lr", type=float, nargs="+", default=[2e-4, 5e-5, 2e-5])
    p.add_argument("--d-lr", type=float, help="D learning rate (default: the trial's own)")
    p.add_argument("--fresh", action="store_true", help="train G and D from initialisation")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one trial config key (VALUE as JSON, else a string); repeatable",
    )
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
    if args.fresh:
        config.update(init_g=None, init_d=None)
    config.update(parse_overrides(args.set))
    print(f"trial {trial}" + (" (from initialisation)" if args.fresh else ""))
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
