"""``raygan``: the command line.

Every command checks its input before Ray starts: a bad option, genotype, arch name or missing
dataset stops with one line saying what was wrong and what is allowed, and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

from raygan.errors import UsageError, one_line
from raygan.strategies.options import COMPILE_MODES, EVAL_SAMPLES_MIN, SEED_MAX, argument_type

EXIT_USAGE = 2

T = TypeVar("T")


# ----- argument types ---------------------------------------------------------------------------
# Every number is checked as it is parsed: nan, inf and out-of-range values stop with one line
# naming the option, the value and what is allowed (``--steps must be a whole number >= 1, got
# 0``), in the words the searches' own options use (raygan.errors.problem).
positive_int = argument_type(int, 1)
non_negative_int = argument_type(int, 0)
non_negative_float = argument_type(float, 0)
positive_float = argument_type(float, above_zero=True)
eval_samples_type = argument_type(int, EVAL_SAMPLES_MIN)  # IS has 10 splits: every command
seed_type = argument_type(int, 0, maximum=SEED_MAX)


class BadArgument(UsageError):
    """A command line argparse refused, with the (sub)command's name (``raygan train``)."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class Parser(argparse.ArgumentParser):
    """argparse, except that a bad argument is one line (no usage block: ``raygan COMMAND
    --help`` has it) and :func:`main` returns exit code 2 instead of argparse exiting."""

    def error(self, message: str) -> Any:
        match = re.fullmatch(r"argument (\S+?)(?:/\S+)?: (.*)", message, flags=re.DOTALL)
        if match:  # "argument --steps: must be ..." -> "--steps must be ..."
            flag, rest = match.groups()
            message = f"{flag} {rest}" if rest.startswith("must ") else f"{flag}: {rest}"
        raise BadArgument(self.prog, one_line(message))


def storage_timeout() -> float:
    from raygan import cluster

    return cluster.STORAGE_TIMEOUT_S


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
    p.add_argument(
        "--resolution",
        type=positive_int,
        help="image size: 32, 48, 64 or 128 px (default: the dataset's, stl10 48; cifar10 "
        "only 32, stl10 48 or 64); 128 px builds four-cell generators",
    )
    p.add_argument(
        "--conditional",
        action="store_true",
        help="class-conditional G and D, on the dataset's labels (stl10: its labelled train "
        "split); scored with intra-FID and class accuracy",
    )


def add_eval_options(p: argparse.ArgumentParser) -> None:
    from raygan import metrics

    p.add_argument(
        "--eval-samples",
        type=eval_samples_type,
        default=1000,
        help=f"generated samples behind IS/FID, at least {EVAL_SAMPLES_MIN} (papers: 5000 "
        "search, 50000 final)",
    )
    p.add_argument(
        "--extractor",
        default="auto",
        choices=["auto", *metrics.EXTRACTORS],
        help="feature extractor for IS/FID (auto: Inception if its weights exist)",
    )
    p.add_argument("--inception-weights", help="local inception-v3-compat weights file")


def add_resource_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cpus",
        type=positive_float,
        default=1.0,
        help="CPUs per trial (default 1, fractions allowed)",
    )
    p.add_argument(
        "--gpus",
        type=non_negative_float,
        default=0.0,
        help="GPUs per trial: a share of one (0.25 packs 4 per GPU) or whole GPUs",
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
    from raygan import spaces, storage, zoo

    if bool(args.arch) == bool(args.genotype_file):
        raise UsageError("give exactly one of --arch NAME or --genotype-file PATH")
    if args.arch:
        try:
            entry = zoo.get(args.arch)
        except zoo.UnknownArch as err:
            raise UsageError(f"--arch: {err}") from None
        arch = spaces.Arch(
            entry.g, entry.d, entry.gf, entry.df, entry.bottom_width, entry.latent_chunks
        )
    else:
        path = args.genotype_file
        try:
            arch = storage.within(
                storage_timeout(), f"--genotype-file {path}", lambda: spaces.read_arch_file(path)
            )
        except spaces.BadArchFile as err:
            raise UsageError(f"--genotype-file {err.path}: {err.problem}") from None
    scale = args.width_scale
    arch = dataclasses.replace(arch, gf=zoo.scaled(arch.gf, scale), df=zoo.scaled(arch.df, scale))
    return at_resolution(arch, args.resolution)


def at_resolution(arch, size: int | None):
    """``arch`` at ``--resolution`` (its own bottom width without it): the bottom width its
    generator's cells need (:func:`raygan.nn.generator_layout`)."""
    from raygan import nn

    if size is None:
        return arch
    try:
        layout = nn.generator_layout(arch.g.space, size, cells=len(arch.g.cells))
    except ValueError as err:
        raise UsageError(f"--resolution {size}: {err}") from None
    return dataclasses.replace(arch, bottom_width=layout.bottom_width)


def trial_config(args: argparse.Namespace, arch) -> dict[str, Any]:
    from raygan.strategies.options import num_classes

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
        "num_classes": num_classes(args),
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
        "compile": args.compile,
        "check_every": args.check_every,
        "cuda_graphs": args.cuda_graphs,
    }


def cmd_train(args: argparse.Namespace) -> int:
    import pandas as pd

    from raygan import cluster, nn, results, storage
    from raygan.strategies.options import (
        check_dataset,
        check_fast_path,
        check_inception_weights,
        check_resolution,
    )
    from raygan.trainable import fit_trials, row_fields

    arch = resolve_arch(args)  # everything checked before --out is created or Ray starts
    cluster.check_resources(args)
    check_fast_path(args)
    check_inception_weights(args)
    size = nn.generator_resolution(arch.g.space, arch.bottom_width)
    check_resolution(args, size)
    check_dataset(args, size)
    out = args.out or os.path.join(
        "trials", f"train-{args.arch or 'genotype'}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    config = trial_config(args, arch)
    cluster.check_storage(out)  # the last check: it creates --out
    cluster.connect(args.address)
    (trial,) = fit_trials(
        cluster.storage_uri(out),
        f"tune-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}",  # a run of its own
        [config],
        resources=cluster.trial_resources(args.cpus, args.gpus),
    )
    experiment = storage.basename(out)
    results.append(out, [results.row(row_fields(trial), experiment=experiment, strategy="train")])
    row = results.load(out).iloc[-1]
    print(f"trained {arch.g}\n   with {arch.d} (gf {arch.gf}, df {arch.df})")
    print(
        f"status {row['status']}: IS {row['is']:.3f} +- {row['is_std']:.3f}, FID {row['fid']:.3f} "
        f"({row['extractor']}, {row['eval_samples']} samples), {row['img_per_s']:.0f} img/s"
    )
    if row["conditional"]:
        accuracy = row["class_accuracy"]
        shown = "" if pd.isna(accuracy) else f", class accuracy {accuracy:.3f}"
        print(
            f"conditional on {row['num_classes']} classes: intra-FID {row['intra_fid']:.3f}{shown}"
        )
    print(f"table:   {results.table_path(out)}")
    if trial["checkpoint"] is not None:
        print(f"samples: {storage.join(trial['checkpoint'], 'samples.png')}")
    return 0 if row["status"] == "ok" else 1


def read_checkpoint(path: str, device: Any) -> tuple[dict[str, Any], Any]:
    """The config and the scored generator (EMA weights, else the raw ones) of the trial
    checkpoint folder ``path``: a local folder or a storage URI (``s3://...``, ``file://...``),
    as the table's ``checkpoint`` column holds it. Every problem is one line naming it: not a
    checkpoint, a trial folder instead of one of its checkpoints, pruned weights, a damaged or
    foreign ``config.json`` or ``state.pt``, weights that do not fit the config."""

    from raygan import storage
    from raygan.errors import problem
    from raygan.train import scored_generator
    from raygan.trainable import CONFIG_FILE, STATE_FILE, build_pair, full_config

    where = f"checkpoint {path}"
    state_path, config_path = storage.join(path, STATE_FILE), storage.join(path, CONFIG_FILE)

    def probe() -> tuple[bool, str | None, list[str]]:
        has_state = storage.exists(state_path)
        text = storage.read_bytes(config_path).decode() if storage.exists(config_path) else None
        inside: list[str] = []
        if not has_state and text is None:
            inside = [name for name in storage.names(path) if name.startswith("checkpoint_")]
        return has_state, text, inside

    try:
        has_state, text, inside = storage.within(storage_timeout(), where, probe)
    except (OSError, ValueError) as err:  # unknown scheme, no access, not text
        raise UsageError(f"{where}: cannot read it ({one_line(err)})") from None
    if text is None:
        if inside:
            raise UsageError(
                f"{where} is a trial folder; give one of its checkpoints: "
                f"{storage.join(path, inside[-1])} (the table's checkpoint column)"
            )
        raise UsageError(
            f"{where} is not a raygan checkpoint (no {CONFIG_FILE}"
            + ("" if has_state else f" or {STATE_FILE}")
            + " in it; allowed: a folder of the table's checkpoint column)"
        )
    if not has_state:
        raise UsageError(
            f"{where} no longer holds its weights ({STATE_FILE}): the search pruned them "
            "(--keep-weights last keeps only each stage's last generation)"
        )
    try:
        config = json.loads(text)
    except ValueError as err:
        raise UsageError(f"{where}: {CONFIG_FILE} is not JSON ({one_line(err)})") from None
    if not isinstance(config, dict) or not {"g", "d"} <= config.keys():
        raise UsageError(f"{where}: {CONFIG_FILE} is not a trial config (needs keys g, d, gf, df)")
    config = full_config(config)
    for key in ("gf", "df", "bottom_width"):
        if (wrong := problem(config[key], int, 1)) is not None:
            raise UsageError(f"{where}: {CONFIG_FILE} {key} {wrong}")
    try:
        generator, _ = build_pair(config)
    except (ValueError, TypeError) as err:  # a genotype or an option the nets refuse
        raise UsageError(
            f"{where}: {CONFIG_FILE} describes no G/D pair ({one_line(err)})"
        ) from None
    try:
        state = storage.load_torch(state_path, map_location=device)
    except Exception as err:  # a damaged or foreign file: torch raises many kinds (an
        # UnpicklingError for what weights_only refuses, RuntimeError, EOFError, OSError)
        first = one_line(err).split(". ")[0]  # torch's messages go on for a paragraph
        raise UsageError(f"{where}: {STATE_FILE} cannot be read ({first})") from None
    if not isinstance(state, dict) or not {"G_ema", "G"} & state.keys():
        keys = ", ".join(map(str, state)) if isinstance(state, dict) else type(state).__name__
        raise UsageError(
            f"{where}: {STATE_FILE} holds no generator weights (G_ema or G); it holds: {keys}"
        )
    try:
        generator.load_state_dict(scored_generator(state))
    except (RuntimeError, TypeError) as err:  # keys or shapes of another architecture
        first = one_line(err)[:300]
        raise UsageError(
            f"{where}: its {STATE_FILE} does not fit the generator its {CONFIG_FILE} describes "
            f"({config['g']}, gf {config['gf']}): {first}"
        ) from None
    return config, generator


def cmd_eval(args: argparse.Namespace) -> int:
    from raygan import data, metrics
    from raygan.strategies.options import check_dataset, check_inception_weights
    from raygan.trainable import device_for_trial

    check_inception_weights(args)
    device = device_for_trial()
    config, generator = read_checkpoint(args.checkpoint, device)
    dataset = args.dataset or config["dataset"]
    if dataset not in data.DATASETS:
        raise UsageError(
            f"checkpoint {args.checkpoint}: its config.json names dataset {dataset!r}; pass "
            f"--dataset, one of: {', '.join(data.DATASETS)}"
        )
    root = args.data_root or config["data_root"]
    check_dataset(
        argparse.Namespace(dataset=dataset, data_root=root, download=False), generator.resolution
    )
    scores = metrics.evaluate(
        generator.to(device),
        reference=metrics.Reference(dataset, generator.resolution, root=root),
        num_samples=args.eval_samples,
        extractor=args.extractor,
        device=device,
        inception_weights=args.inception_weights,
        seed=args.seed,
        bf16=bool(config.get("amp_bf16", False)),  # as the trial was scored
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
    p.add_argument("--seed", type=seed_type, default=0, help=f"0 .. {SEED_MAX} (default 0)")
    p.add_argument(
        "--concurrency",
        type=positive_int,
        help="most trials at once (default: as many as resources allow)",
    )
    p.add_argument(
        "--estimate",
        nargs="?",
        const="flops",
        choices=["flops", "probe"],
        help="print the search's FLOPs by stage and its device-hours at --tflops, or at the rate "
        "a 20-second probe trains here (--estimate probe), then stop: nothing starts",
    )
    p.add_argument(
        "--tflops",
        type=positive_float,
        help="the throughput --estimate turns FLOPs into device-hours at",
    )
    add_data_options(p)
    add_eval_options(p)
    add_resource_options(p)
    p.set_defaults(eval_samples=None, max_images=None, dataset=None)  # the preset fills them


def cmd_search(args: argparse.Namespace) -> int:
    """One immutable spec (preset under the options given), validated before anything is
    written or Ray starts; the strategy runs it as is."""
    from raygan import strategies
    from raygan.spec import build_spec
    from raygan.strategies.options import check_dataset

    module = strategies.available()[args.strategy]
    spec = build_spec(args.strategy, args)
    module.validate(spec)
    if spec.estimate:
        print_estimate(module, spec)
        return 0
    check_dataset(spec)
    if spec.resume:
        check_resumable(spec.out)
    return module.run(spec)  # its driver checks --out against --resume, then creates it


def print_estimate(module: Any, spec: Any) -> None:
    """``--estimate``: the search's FLOPs by stage, and device-hours at ``--tflops`` or at the
    rate a probe on this machine's device trains the first stage's networks at."""
    from raygan import estimate

    stages = module.estimate(spec)
    rate, source = None, "give --tflops X, or --estimate probe, for device-hours"
    if spec.tflops:
        rate, source = spec.tflops * 1e12, "--tflops"
    elif spec.estimate == "probe":
        print(f"probing how fast this machine trains, for {estimate.PROBE_SECONDS:g} s ...")
        rate, device = estimate.probe(stages[0].pair)
        source = f"a probe trained {stages[0].name}'s networks at that rate on {device}"
    print(estimate.render(stages, rate, source))


def check_resumable(out: str) -> None:
    """``--resume``: ``out`` holds a search state that reads back whole (a state file cut
    short, damaged or of another format stops here, before anything is written)."""
    from raygan import state, storage
    from raygan.strategies.common import Driver

    path = storage.join(out, Driver.STATE)

    def probe() -> None:
        if not storage.exists(path):
            raise UsageError(f"--resume: nothing to resume in {out} (no {Driver.STATE})")
        state.load(path)

    try:
        storage.within(storage_timeout(), f"--resume {out}", probe)
    except (OSError, ValueError) as err:  # state.StateError, a JSON or text error, no access
        detail = one_line(err)
        detail = detail if path in detail else f"{path}: {detail}"
        raise UsageError(
            f"--resume: cannot read the search state: {detail}; allowed: a search_state.json a "
            "search wrote (or start afresh with a new --out)"
        ) from None


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


def cmd_compare(args: argparse.Namespace) -> int:
    from raygan import compare

    out_dir = args.plots or "."
    print(compare.compare(args.paths, out_dir))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from raygan import report

    print(f"report: {report.report(args.path, args.out)}")
    return 0


# ----- parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from raygan import data

    parser = Parser(
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
    p.add_argument("--seed", type=seed_type, default=0, help=f"0 .. {SEED_MAX} (default 0)")
    p.add_argument(
        "--checkpoint-every",
        type=non_negative_int,
        default=0,
        help="steps between checkpoints (0: only at the end)",
    )
    p.add_argument("--bf16", action="store_true", help="bf16 autocast")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory (GPU)")
    p.add_argument(
        "--compile", choices=COMPILE_MODES, default="none", help="torch.compile mode of G"
    )
    p.add_argument(
        "--check-every",
        type=positive_int,
        default=100,
        help="G steps between reading the losses back to check them (the host waits then; "
        "a diverged run still stops with its step)",
    )
    p.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="capture the whole training step as one CUDA graph (needs --gpus)",
    )
    add_eval_options(p)
    add_resource_options(p)
    p.add_argument("--out", help="experiment folder (default: trials/train-<arch>-<time>)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="score a trial checkpoint's EMA generator")
    p.add_argument(
        "checkpoint",
        help="a checkpoint folder or URI (s3://..., file://...): the table's `checkpoint` column",
    )
    p.add_argument(
        "--dataset",
        choices=data.DATASETS,
        help="reference data (default: the one it was trained on)",
    )
    p.add_argument("--data-root")
    p.add_argument("--seed", type=seed_type, default=0, help=f"0 .. {SEED_MAX} (default 0)")
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

    p = sub.add_parser(
        "compare", help="hypervolume against cost and final picks of searches of one space"
    )
    p.add_argument("paths", nargs="+", metavar="DIR", help="experiment folders (--out of each)")
    p.add_argument("--plots", help="folder for compare.png (default: the current folder)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("report", help="one self-contained HTML page of a search (opens offline)")
    p.add_argument("path", metavar="DIR", help="experiment folder (the search's --out)")
    p.add_argument("--out", help="the page's path (default: DIR/report.html)")
    p.set_defaults(func=cmd_report)
    return parser


def from_scratch(argv: Sequence[str]) -> list[str]:
    """``raygan search random --from-scratch ...`` is ``raygan search tune --searcher random
    ...``: the random baseline without weight sharing, with the Tune search's options (its
    rows say strategy ``tune``, searcher ``random``)."""
    argv = list(argv)
    if argv[:2] == ["search", "random"] and "--from-scratch" in argv:
        argv.remove("--from-scratch")
        return ["search", "tune", *argv[2:], "--searcher", "random"]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # progress lines show even when piped
    parser = build_parser()
    try:
        args = parser.parse_args(from_scratch(sys.argv[1:] if argv is None else argv))
    except BadArgument as err:
        print(f"{err.prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return args.func(args)
    except UsageError as err:
        command = " ".join(
            ["raygan", args.command, *([args.strategy] if "strategy" in args else [])]
        )
        print(f"{command}: error: {one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"\nraygan {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
