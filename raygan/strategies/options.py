"""A search's options and the checks every spec gets before anything is written or Ray starts.

A method's own options are data beside its presets (``raygan/presets/<method>.options.yaml``);
the ones every method has are :data:`METHOD_OPTIONS`. Preset values never pass through
argparse, so :func:`check_options` checks the spec itself.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping
from importlib import resources
from typing import NamedTuple

import yaml

from raygan.errors import UsageError
from raygan.spec import Spec


class Option(NamedTuple):
    """One setting of a method: its type, help line and the values allowed. Checked on the
    spec (:func:`check_options`), since preset values never pass through argparse."""

    type: type
    help: str
    minimum: float | None = None  # smallest value allowed
    above_zero: bool = False  # a number that must be more than 0 (rates, thresholds)
    choices: tuple[str, ...] | None = None


SEARCH_OPTIONS: dict[str, Option] = {
    "eval_samples": Option(int, "", minimum=10),  # IS has 10 splits
    "max_images": Option(int, "", minimum=1),
}
"""Options of every command that every search checks alike (the parser adds them)."""

METHOD_OPTIONS: dict[str, Option] = {
    "gf": Option(int, "generator width during search", minimum=1),
    "df": Option(int, "discriminator width during search", minimum=1),
    "final_gf": Option(int, "G width written to the genotype files", minimum=1),
    "final_df": Option(int, "D width written to the genotype files", minimum=1),
    "workers": Option(int, "Ray Train workers (DDP replicas) of the shared rounds", minimum=1),
    "max_failures": Option(
        int, "worker-group restarts of a round from its checkpoint (-1: no limit)", minimum=-1
    ),
    "bf16": Option(bool, "bf16 autocast in every training, trials and rounds (GPUs only)"),
    "channels_last": Option(bool, "channels_last memory format in every training (GPUs)"),
}
"""Options every method has: widths during search and in the files written, the shared
rounds' workers, and how every training runs on a GPU."""

OPTION_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def method_options(strategy: str) -> dict[str, Option]:
    """:data:`METHOD_OPTIONS` plus the method's own, which are data beside its presets
    (``raygan/presets/<strategy>.options.yaml``: type, smallest value, help line)."""
    text = resources.files("raygan").joinpath("presets", f"{strategy}.options.yaml").read_text()
    own = {
        name: Option(
            OPTION_TYPES[o["type"]],
            o["help"],
            minimum=o.get("min"),
            above_zero=o.get("above_zero", False),
            choices=tuple(o["choices"]) if "choices" in o else None,
        )
        for name, o in yaml.safe_load(text).items()
    }
    return {**METHOD_OPTIONS, **own}


def add_options(parser: argparse.ArgumentParser, options: Mapping[str, Option]) -> None:
    """``--name`` for every option with a help line (defaults come from the preset)."""
    for name, o in options.items():
        if not o.help:
            continue
        flag = f"--{name.replace('_', '-')}"
        if o.type is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=o.help)
        else:
            parser.add_argument(flag, type=o.type, choices=o.choices, help=o.help)


def check_options(spec: Spec, options: Mapping[str, Option]) -> None:
    """Each option's value has its type and lies in its range (one line naming the option,
    the value and what is allowed)."""
    for name, o in {**SEARCH_OPTIONS, **options}.items():
        value, flag = getattr(spec, name), f"--{name.replace('_', '-')}"
        if o.type is int and (not isinstance(value, int) or isinstance(value, bool)):
            raise UsageError(f"{flag} must be a whole number, got {value!r}")
        if o.type is float and not (isinstance(value, int | float) and math.isfinite(value)):
            raise UsageError(f"{flag} must be a finite number, got {value!r}")
        if o.minimum is not None and value < o.minimum:
            kind = "a whole number" if o.type is int else "a number"
            raise UsageError(f"{flag} must be {kind} >= {o.minimum:g}, got {value}")
        if o.above_zero and not value > 0:
            raise UsageError(f"{flag} must be a number above 0, got {value}")


def validate(spec: Spec, options: Mapping[str, Option]) -> None:
    """What every search checks before Ray starts: its options, then its resources."""
    check_options(spec, options)
    check_resources(spec)


def check_resources(args: argparse.Namespace) -> None:
    """The resource options, and on this machine (no ``--address``) whether it has them: Ray
    would otherwise wait forever for a GPU or a CPU that is not there."""
    if args.gpus > 1 and args.gpus != int(args.gpus):
        raise UsageError("--gpus above 1 must be a whole number")
    if args.address is not None:
        return  # a cluster's size is its autoscaler's business
    import torch

    gpus = torch.cuda.device_count()
    if args.gpus and not gpus:
        raise UsageError("--gpus given but this machine has no CUDA GPU (or pass --address)")
    if args.gpus > gpus:
        raise UsageError(f"--gpus {args.gpus:g} per trial, but this machine has {gpus} GPU(s)")
    if args.gpus and args.workers > gpus:
        raise UsageError(
            f"--workers {args.workers} takes one GPU per worker with --gpus, and this machine "
            f"has {gpus} (lower --workers, or pass --address)"
        )
    cores = os.cpu_count() or 1
    if args.workers * args.cpus > cores:
        raise UsageError(
            f"--workers {args.workers} x --cpus {args.cpus:g} needs "
            f"{args.workers * args.cpus:g} CPUs; this machine has {cores} (lower --workers or "
            f"--cpus, or pass --address)"
        )


def check_dataset(args: argparse.Namespace, resolution: int | None = None) -> None:
    """The dataset can be read, at ``resolution`` if given (a missing download stops here,
    before Ray starts)."""
    from raygan import data

    try:
        data.load(
            args.dataset,
            root=args.data_root,
            resolution=resolution,
            max_images=8,
            download=args.download,
        )
    except data.DatasetMissing as err:
        raise UsageError(str(err)) from None
