"""How much of an EAGAN stage-1 score is the supernet's BatchNorm state rather than the path.

Every path of the stage-1 supernet shares its BatchNorm running statistics, so at the end of
a round they describe whichever paths trained last. A candidate scored in eval mode with them
is normalised with another architecture's statistics. raygan recomputes them for each
candidate before scoring (``raygan.nn.recalibrate_batch_norm``); this script re-scores every
stage-1 row of a finished search both ways from the same supernet checkpoint and prints the
two scores side by side, then each generation's hypervolume under either.

Run from the repository root, on a finished search (one process; no Ray cluster starts):

    python bench/investigations/eagan_bn_recalibration.py DIR
"""

from __future__ import annotations

import argparse
import functools
import json
import os

import pandas as pd
import torch

from raygan import metrics, nn, results, storage
from raygan.analysis import hypervolume_by_generation
from raygan.train import scored_generator
from raygan.trainable import CONFIG_FILE, build_pair, full_config, reference_for

WAYS = ("inherited", "recalibrated")


@functools.cache
def supernet_state(path: str) -> dict:
    """One round's checkpoint, read once for all the rows (and both ways) that inherit it."""
    if not storage.exists(path):
        raise SystemExit(
            f"{path} is gone: re-scoring needs every supernet round, i.e. a search run with "
            "--keep-weights all (the quick preset's default)"
        )
    return storage.load_torch(path, map_location="cpu")


def score(config: dict, way: str) -> dict:
    generator, _ = build_pair(config)
    nn.inherit(generator, scored_generator(supernet_state(config["init_g"])))
    if way == "recalibrated":
        nn.recalibrate_batch_norm(generator, seed=config["seed"])
    return metrics.evaluate(
        generator,
        reference=reference_for(config, generator.resolution),
        num_samples=config["eval_samples"],
        extractor=config["extractor"],
        inception_weights=config["inception_weights"],
        seed=config["seed"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("search_dir")
    args = parser.parse_args()
    df = results.load(args.search_dir)
    stage1 = df[(df["stage"] == 1) & (df["status"] == "ok")].sort_values(
        ["generation", "individual"]
    )
    if stage1.empty:
        raise SystemExit(f"{args.search_dir} has no finished stage-1 trials")
    scored = []
    for _, row in stage1.iterrows():
        config = full_config(
            json.loads(storage.read_bytes(storage.join(row["checkpoint"], CONFIG_FILE)))
        )
        out = row.to_dict()
        for way in WAYS:
            s = score(config, way)
            out[f"{way}_is"], out[f"{way}_fid"] = s["is"], s["fid"]
        print(
            f"generation {row['generation']} individual {row['individual']}: "
            f"table FID {row['fid']:.1f}, inherited {out['inherited_fid']:.1f}, "
            f"recalibrated {out['recalibrated_fid']:.1f}",
            flush=True,
        )
        scored.append(out)
    table = pd.DataFrame(scored)
    for way in WAYS:
        hv = hypervolume_by_generation(
            table.assign(**{"is": table[f"{way}_is"], "fid": table[f"{way}_fid"]}), 1
        )
        values = " / ".join(f"{v:.3f}" for v in hv.hypervolume)
        print(f"hypervolume per generation, {way}: {values}")


if __name__ == "__main__":
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    main()
