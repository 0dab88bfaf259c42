"""How much disk an EAGAN search's weights take, with ``--keep-weights all`` and ``last``.

Every trial that trains saves a resumable ``state.pt`` (G, its EMA copy, D, both optimisers,
RNG and data state), a trial of zero steps only the generator it was scored with (its EMA
copy and the step), and every stage-1 round a supernet checkpoint (supernet G, its EMA, D,
both Adam states, and small RNG and data streams). This script builds the published EAGAN
CIFAR-10 generator with each stage's discriminator at a preset's search widths, saves a trial
checkpoint exactly as a trial does (a stage-2 trial after one training step, so that Adam
holds its moments; a stage-1 trial as scored, untrained, unless the preset fine-tunes it),
saves the supernet's weights and adds its two Adam moments (two float32 tensors per
parameter: an upper bound, since Adam keeps them only for the ops that some trained path
used), then multiplies by the preset's trial and round counts. One process, no
Ray; a few seconds at the paper's widths:

    python bench/investigations/eagan_disk.py [--preset paper|quick]
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile

import torch

from raygan import data, nn, spaces, zoo
from raygan.spec import load_preset, preset_names
from raygan.strategies.eagan import STAGE1_D
from raygan.train import GANTrainer, TrainConfig
from raygan.trainable import STATE_FILE, build_pair, full_config, save_state

MB = 1e6


def trial_bytes(g: str, d: str, gf: int, df: int, images: int, trained: bool) -> int:
    """Bytes of one trial's ``state.pt`` for this pair at these widths: a trained trial's data
    state holds a permutation of the ``images`` training images; an untrained one has none
    (``save_state`` then keeps only the scored generator)."""
    config = full_config({"g": g, "d": d, "gf": gf, "df": df})
    generator, discriminator = build_pair(config)
    trainer = GANTrainer(generator, discriminator, TrainConfig(g_batch=2, d_batch=2, n_critic=1))
    batches = None
    if trained:
        batches = data.DeviceBatches(torch.zeros(images, 3, 32, 32, dtype=torch.uint8), "cpu")
        trainer.train_step(batches)
    with tempfile.TemporaryDirectory() as tmp:
        save_state(trainer, batches, config, tmp)
        return os.path.getsize(os.path.join(tmp, STATE_FILE))


def supernet_round_bytes(gf: int, df: int) -> int:
    """Bytes of one round's checkpoint: weights saved, plus Adam's two moments per parameter."""
    g = nn.build_supernet("nas_cell_g", width=gf, bottom_width=4)
    d = nn.build_discriminator(spaces.Genotype.parse(STAGE1_D), width=df)
    # a real copy for the EMA: torch.save stores tensors shared between entries once
    state = {"G": g.state_dict(), "G_ema": copy.deepcopy(g).state_dict(), "D": d.state_dict()}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, STATE_FILE)
        torch.save(state, path)
        saved = os.path.getsize(path)
    return saved + 2 * 4 * (nn.count_params(g) + nn.count_params(d))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=preset_names("eagan"), default="paper")
    args = p.parse_args()
    preset = load_preset("eagan", args.preset)
    gf, df = preset["gf"], preset["df"]
    P, gens = preset["population"], preset["generations"]
    published = zoo.get("eagan_cifar10")
    g = str(published.g)
    images = preset["max_images"]
    s1 = trial_bytes(g, STAGE1_D, gf, df, images, trained=preset["finetune_steps"] > 0)
    s2 = trial_bytes(g, str(published.d), gf, df, images, trained=True)
    rnd = supernet_round_bytes(gf, df)
    print(f"preset {args.preset}: P {P}, {gens} generations per stage, gf {gf}, df {df}")
    print(f"  stage-1 trial {s1 / MB:.0f} MB, stage-2 trial {s2 / MB:.0f} MB (published G)")
    print(f"  supernet round {rnd / MB:.0f} MB")
    every = P * gens * (s1 + s2) + gens * rnd
    # 'last' at its fullest: a generation running while the previous one is still needed
    peak_s1 = 2 * P * s1 + 2 * rnd
    peak_s2 = P * s1 + 2 * P * s2 + rnd
    final = P * (s1 + s2) + rnd
    print(f"  --keep-weights all: {every / 1e9:.1f} GB at the end")
    print(
        f"  --keep-weights last: {max(peak_s1, peak_s2) / 1e9:.1f} GB at most, "
        f"{final / 1e9:.1f} GB at the end"
    )


if __name__ == "__main__":
    main()
