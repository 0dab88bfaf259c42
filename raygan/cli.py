"""``raygan``: the command line.

Every command checks its input before Ray starts: a bad option, genotype, arch name or missing
dataset stops with one line saying what was wrong and what is allowed, and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

from raygan.errors import UsageError

EXIT_USAGE = 2


# ----- argument types ---------------------------------------------------------------------------
def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{value} must be 0 or more")
    return value


def positive_float(text: str) -> float:
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def add_data_options(p: argparse.ArgumentParser) -> None:
    from raygan import data

    p.add_argument(
        "--dataset",
        default="shapes",
        choices=data.DATASETS,
        help="training data (default: shapes, built in, no download)",
    )
    p.add_argument("--data-root", help="folder holding the dataset files (cifar10, stl10, folder)")
    p.add_argument(
        "--download",
        action="store_true",
        help="download cifar10/stl10 into --data-root first (needs network)",
    )
    p.add_argument(
        "--max-images",
        type=positive_int,
        default=10_000,
        help="images to hold on the device (default: 10000)",
    )


def add_eval_options(p: argparse.ArgumentParser) -> None:
    from raygan import metrics

    p.add_argument(
        "--eval-samples",
        type=positive_int,
        default=1000,
        help="generated samples behind IS/FID (papers: 5000 search, 50000 final)",
    )
    p.add_argument(
        "--extractor",
        default="auto",
        choices=["auto", *metrics.EXTRACTORS],
        help="feature extractor for IS/FID (auto: Inception if its weights exist)",
    )
    p.add_argument("--inception-weights", help="local inception-v3-compat weights file")


def add_resource_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cpus", type=positive_float, default=1.0, help="CPUs per trial (default 1)")
    p.add_argument(
        "--gpus",
        type=non_negative_float,
        default=0.0,
        help="GPUs per trial, fractions allowed (e.g. 0.25 packs 4 per GPU)",
    )
    p.add_argument("--address", help="join an existing Ray cluster ('auto' or ray://host:port)")


# ----- commands ---------------------------------------------------------------------------------
def cmd_zoo(args: argparse.Namespace) -> int:
    from raygan import zoo

    rows = zoo.table()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = (
        f"{'name':<24}{'dataset':<9}{'px':>4}{'G params':>12}{'D params':>11}{'IS':>7}{'FID':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['name']:<24}{r['dataset']:<9}{r['resolution']:>4}{r['g_params']:>12,}"
            f"{r['d_params']:>11,}{r['reported_is']:>7.2f}{r['reported_fid']:>7.2f}"
        )
    return 0


def resolve_arch(args: argparse.Namespace):
    """The arch to train (zoo name or genotype file), widths scaled, as a ``spaces.Arch``."""
    from raygan import spaces, zoo

    if bool(args.arch) == bool(args.genotype_file):
        raise UsageError("give exactly one of --arch NAME or --genotype-file PATH")
    try:
        if args.arch:
            entry = zoo.get(args.arch)
            arch = spaces.Arch(
                entry.g, entry.d, entry.gf, entry.df, entry.bottom_width, entry.latent_chunks
            )
        else:
            arch = spaces.read_arch_file(args.genotype_file)
    except (KeyError, ValueError) as err:
        raise UsageError(str(err.args[0] if err.args else err)) from None
    scale = args.width_scale
    return dataclasses.replace(arch, gf=zoo.scaled(arch.gf, scale), df=zoo.scaled(arch.df, scale))


def trial_config(args: argparse.Namespace, arch) -> dict[str, Any]:
    return {
        "g": str(arch.g),
        "d": str(arch.d),
        "gf": arch.gf,
        "df": arch.df,
        "bottom_width": arch.bottom_width,
        "latent_chunks": arch.latent_chunks,
        "dataset": args.dataset,
        "data_root": args.data_root,
        "max_images": args.max_images,
        "steps": args.steps,
        "n_critic": args.n_critic,
        "g_batch": args.g_batch,
        "d_batch": args.d_batch,
        "seed": args.seed,
        "eval_samples": args.eval_samples,
        "extractor": args.extractor,
        "inception_weights": args.inception_weights,
        "checkpoint_every": args.checkpoint_every,
        "amp_bf16": args.bf16,
        "channels_last": args.channels_last,
    }


def cmd_train(args: argparse.Namespace) -> int:
    from raygan import cluster, results
    from raygan.strategies.options import check_dataset
    from raygan.trainable import fit_trials, row_fields

    arch = resolve_arch(args)
    check_dataset(args, arch.bottom_width * 8)
    out = args.out or os.path.join(
        "trials", f"train-{args.arch or 'genotype'}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    config = trial_config(args, arch)
    cluster.check_storage(out)
    cluster.connect(args.address)
    (trial,) = fit_trials(
        cluster.storage_uri(out),
        f"tune-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}",  # a new run, not a restore
        resources=cluster.trial_resources(args.cpus, args.gpus),
        param_space=config,
    )
    experiment = os.path.basename(out.rstrip("/"))
    results.append(out, [results.row(row_fields(trial), experiment=experiment, strategy="train")])
    row = results.load(out).iloc[-1]
    print(f"trained {arch.g}\n   with {arch.d} (gf {arch.gf}, df {arch.df})")
    print(
        f"status {row['status']}: IS {row['is']:.3f} +- {row['is_std']:.3f}, FID {row['fid']:.3f} "
        f"({row['extractor']}, {row['eval_samples']} samples), {row['img_per_s']:.0f} img/s"
    )
    print(f"table:   {results.table_path(out)}")
    if trial.checkpoint is not None:
        print(f"samples: {os.path.join(trial.checkpoint.path, 'samples.png')}")
    return 0 if row["status"] == "ok" else 1


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from raygan import metrics
    from raygan.trainable import CONFIG_FILE, STATE_FILE, build_pair, device_for_trial

    path = args.checkpoint
    if not os.path.isfile(os.path.join(path, STATE_FILE)):
        if os.path.isfile(os.path.join(path, CONFIG_FILE)):
            raise UsageError(
                f"{path} no longer holds its weights ({STATE_FILE}): the search pruned them "
                "(--keep-weights last keeps only each stage's last generation)"
            )
        raise UsageError(f"{path} is not a raygan checkpoint (no {STATE_FILE} in it)")
    with open(os.path.join(path, CONFIG_FILE)) as f:
        config = json.load(f)
    dataset = args.dataset or config["dataset"]
    device = device_for_trial()
    generator, _ = build_pair(config)
    state = torch.load(os.path.join(path, STATE_FILE), map_location=device, weights_only=True)
    generator.load_state_dict(state["G_ema"])
    scores = metrics.evaluate(
        generator.to(device),
        reference=metrics.Reference(
            dataset, generator.resolution, root=args.data_root or config["data_root"]
        ),
        num_samples=args.eval_samples,
        extractor=args.extractor,
        device=device,
        inception_weights=args.inception_weights,
        seed=args.seed,
    )
    print(json.dumps(scores, indent=2))
    return 0


def add_search_options(p: argparse.ArgumentParser, presets: Sequence[str]) -> None:
    """Options every strategy takes; preset-able ones default to None (filled by the preset)."""
    p.add_argument(
        "--preset",
        choices=presets,
        default="quick",
        help="settings to start from (quick: a laptop in minutes; paper: published)",
    )
    p.add_argument("--out", help="experiment folder or URI (default: trials/<strategy>-<preset>)")
    p.add_argument(
        "--resume", action="store_true", help="continue the search saved in --out where it stopped"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--concurrency",
        type=positive_int,
        help="most trials at once (default: as many as resources allow)",
    )
    add_data_options(p)
    add_eval_options(p)
    add_resource_options(p)
    p.set_defaults(eval_samples=None, max_images=None, dataset=None)  # the preset fills them


def cmd_search(args: argparse.Namespace) -> int:
    """One immutable spec (preset under the options given), validated before anything is
    written (``check_storage`` creates ``--out``) or Ray starts; the strategy runs it as is."""
    from raygan import cluster, strategies
    from raygan.spec import build_spec

    module = strategies.available()[args.strategy]
    spec = build_spec(args.strategy, args)
    module.validate(spec)
    cluster.check_storage(spec.out)
    return module.run(spec)


def cmd_analyze(args: argparse.Namespace) -> int:
    from raygan import analysis, results

    df, skipped = results.load_table(args.path)
    for err in skipped:  # analysis goes on without them; a resume or append stops on them
        print(f"raygan analyze: skipped {err}", file=sys.stderr)
    if df.empty:
        raise UsageError(f"no trial table with rows at {args.path}")
    out_dir = args.plots or (args.path if "://" not in args.path else ".")
    print(analysis.analyze(df, out_dir))
    return 0


# ----- parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raygan", description="GAN architecture search (AutoGAN, AdversarialNAS, EAGAN) on Ray"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("zoo", help="list the published architectures")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=cmd_zoo)

    p = sub.add_parser("train", help="train and score one G/D pair as a Ray Tune trial")
    p.add_argument("--arch", help="a zoo entry (see `raygan zoo`)")
    p.add_argument("--genotype-file", help="a genotype file written by a search")
    p.add_argument(
        "--width-scale",
        type=positive_float,
        default=1.0,
        help="multiply the published widths (0.25 runs on a laptop)",
    )
    add_data_options(p)
    p.add_argument("--steps", type=positive_int, default=1000, help="generator steps")
    p.add_argument("--n-critic", type=positive_int, default=5)
    p.add_argument("--g-batch", type=positive_int, default=128)
    p.add_argument("--d-batch", type=positive_int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        help="steps between checkpoints (0: only at the end)",
    )
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU only)")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory (GPU)")
    add_eval_options(p)
    add_resource_options(p)
    p.add_argument("--out", help="experiment folder (default: trials/train-<arch>-<time>)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="score a trial checkpoint's EMA generator")
    p.add_argument("checkpoint", help="a checkpoint folder (the table's `checkpoint` column)")
    p.add_argument("--dataset", help="reference data (default: the one it was trained on)")
    p.add_argument("--data-root")
    p.add_argument("--seed", type=int, default=0)
    add_eval_options(p)
    p.set_defaults(func=cmd_eval)

    from raygan import spec, strategies

    p = sub.add_parser("search", help="run an architecture search")
    methods = p.add_subparsers(dest="strategy", required=True)
    for name, module in strategies.available().items():
        m = methods.add_parser(name, help=module.HELP, description=module.HELP)
        add_search_options(m, spec.preset_names(name))
        module.add_arguments(m)
        m.set_defaults(func=cmd_search)

    p = sub.add_parser("analyze", help="Pareto front, curves and plots from a trial table")
    p.add_argument("path", help="experiment folder or its trials.parquet")
    p.add_argument("--plots", help="folder for the PNG plots (default: the experiment folder)")
    p.set_defaults(func=cmd_analyze)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # progress lines show even when piped
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as err:
        print(f"raygan {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"\nraygan {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
