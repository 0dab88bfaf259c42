"""A search's options and the checks every spec gets before anything is written or Ray starts.

A method's own options are data beside its presets (``raygan/presets/<method>.options.yaml``);
the ones every method has are :data:`METHOD_OPTIONS`. Preset values never pass through
argparse, so :func:`check_options` checks the spec itself.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any, NamedTuple

import yaml

from raygan.errors import UsageError, one_line, problem
from raygan.spec import Spec


class Option(NamedTuple):
    """One setting of a method: its type, help line and the values allowed. Checked on the
    spec (:func:`check_options`), since preset values never pass through argparse."""

    type: type
    help: str
    minimum: float | None = None  # smallest value allowed
    above_zero: bool = False  # a number that must be more than 0 (rates, thresholds)
    choices: tuple[str, ...] | None = None
    maximum: int | None = None  # largest whole number allowed


EVAL_SAMPLES_MIN = 10
"""The fewest IS/FID samples any command takes: IS averages over 10 splits
(``raygan.metrics.ISC_SPLITS``; a test checks the two agree)."""

SEED_MAX = 2**32 - 1
"""The largest ``--seed`` (the smallest is 0: numpy refuses negative seeds); every random
generator raygan seeds (numpy, torch) takes 0 .. 2**32 - 1."""

SEARCH_OPTIONS: dict[str, Option] = {
    "eval_samples": Option(int, "", minimum=EVAL_SAMPLES_MIN),  # IS has 10 splits
    "max_images": Option(int, "", minimum=1),
    "seed": Option(int, "", minimum=0, maximum=SEED_MAX),
}
"""Options of every command that every search checks alike (the parser adds them)."""

COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")
"""``--compile``: eager, or one of ``torch.compile``'s modes."""

METHOD_OPTIONS: dict[str, Option] = {
    "gf": Option(int, "generator width during search", minimum=1),
    "df": Option(int, "discriminator width during search", minimum=1),
    "final_gf": Option(int, "G width written to the genotype files", minimum=1),
    "final_df": Option(int, "D width written to the genotype files", minimum=1),
    "workers": Option(int, "Ray Train workers (DDP replicas) of the shared rounds", minimum=1),
    "max_failures": Option(
        int,
        "retries of a failed trial, and restarts of a round's worker group, each from its "
        "last checkpoint (-1: no limit)",
        minimum=-1,
    ),
    "bf16": Option(bool, "bf16 autocast in every training, trials and rounds"),
    "channels_last": Option(bool, "channels_last memory format in every training (GPUs)"),
    "check_every": Option(
        int, "G steps between reading losses back to check them (the host waits then)", minimum=1
    ),
    "compile": Option(
        str, "torch.compile mode of every training's G (none: eager)", choices=COMPILE_MODES
    ),
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
            maximum=o.get("max"),
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
            kind = (
                o.type
                if o.type is str
                else argument_type(o.type, o.minimum, o.above_zero, o.maximum)
            )
            parser.add_argument(flag, type=kind, choices=o.choices, help=o.help)


def argument_type(
    kind: type, minimum: float | None = None, above_zero: bool = False, maximum: int | None = None
) -> Callable[[str], object]:
    """An argparse ``type=`` for a ``kind`` (int or float) of at least ``minimum`` (or above
    0): nan, inf and text that is no such number are refused with :func:`problem`'s words
    (argparse names the option: ``--steps must be a whole number >= 1, got 0``)."""

    def parse(text: str) -> object:
        try:
            value: object = kind(text)
        except ValueError:
            value = text
        if (wrong := problem(value, kind, minimum, above_zero, maximum)) is not None:
            raise argparse.ArgumentTypeError(wrong)
        return value

    parse.__name__ = kind.__name__  # argparse's fallback wording names the type
    return parse


def check_options(spec: Spec, options: Mapping[str, Option]) -> None:
    """Each option's value has its type and lies in its range (one line naming the option,
    the value and what is allowed)."""
    for name, o in {**SEARCH_OPTIONS, **options}.items():
        value, flag = getattr(spec, name), f"--{name.replace('_', '-')}"
        if o.type is bool and not isinstance(value, bool):
            raise UsageError(f"{flag} must be true or false, got {value!r}")
        if o.type is str and not isinstance(value, str):
            raise UsageError(f"{flag} must be text, got {value!r}")
        if o.choices is not None and value not in o.choices:
            raise UsageError(f"{flag} must be one of {', '.join(o.choices)}, got {value!r}")
        if o.type in (int, float):
            wrong = problem(value, o.type, o.minimum, o.above_zero, o.maximum)
            if wrong is not None:
                raise UsageError(f"{flag} {wrong}")


def validate(spec: Spec, options: Mapping[str, Option]) -> None:
    """What every search checks before Ray starts: its options, its resources, its
    resolution and the metric's weights file (the dataset: :func:`check_dataset`)."""
    from raygan import cluster  # Ray's module: imported once a search is being checked

    check_options(spec, options)
    cluster.check_resources(spec)
    check_fast_path(spec)
    check_resolution(spec)
    check_inception_weights(spec)


def check_fast_path(args: argparse.Namespace) -> None:
    """``--cuda-graphs`` captures a trial's eager step on its GPU: it needs ``--gpus``, and
    replaces ``--compile`` (whose reduce-overhead mode graphs only the compiled forwards)."""
    if not getattr(args, "cuda_graphs", False):  # AdversarialNAS has no trials to graph
        return
    if not args.gpus:
        raise UsageError("--cuda-graphs captures each trial's step on its GPU: pass --gpus too")
    if args.compile != "none":
        raise UsageError(
            f"--cuda-graphs captures the eager step; leave --compile at none, got {args.compile}"
        )


def resolution(args: argparse.Namespace) -> int:
    """The size a run trains at: ``--resolution``, else the dataset's own (stl10: 48)."""
    from raygan import data

    return getattr(args, "resolution", None) or data.native_resolution(args.dataset)


def check_resolution(args: argparse.Namespace, size: int | None = None) -> None:
    """The run's size (``size``, else :func:`resolution`) is one a layout reaches
    (:data:`raygan.nn.RESOLUTIONS`) and one the dataset allows (cifar10: 32; stl10: 48 or
    64; shapes and folder: any)."""
    from raygan import data, nn

    size = size or resolution(args)
    if size not in nn.RESOLUTIONS:
        allowed = ", ".join(map(str, nn.RESOLUTIONS))
        raise UsageError(f"--resolution must be one of {allowed}, got {size}")
    allowed_here = data.resolutions(args.dataset)
    if allowed_here is not None and size not in allowed_here:
        raise UsageError(
            f"--resolution {size}: --dataset {args.dataset} trains at "
            f"{' or '.join(map(str, allowed_here))} px"
        )


def layout(args: argparse.Namespace, family: str) -> Any:
    """The generator space of ``family`` and the bottom width that reach the run's size
    (:func:`raygan.nn.generator_layout`: three cells up to 64 px, four at 128)."""
    from raygan import nn

    return nn.generator_layout(family, resolution(args))


def check_inception_weights(args: argparse.Namespace) -> None:
    """``--inception-weights`` (else ``$RAYGAN_INCEPTION_WEIGHTS``), when given, is a file: the
    metrics would otherwise stop every trial (or ``raygan eval``) with a traceback."""
    given = args.inception_weights
    name = "--inception-weights"
    if not given:
        given, name = os.environ.get("RAYGAN_INCEPTION_WEIGHTS"), "RAYGAN_INCEPTION_WEIGHTS"
    if given and not os.path.isfile(given):
        raise UsageError(f"{name} {given}: no such file; allowed: a local weights file")


def check_dataset(args: argparse.Namespace, size: int | None = None) -> None:
    """The dataset can be read, at ``size`` (default: the run's :func:`resolution`), with
    its labels for a conditional run (a missing download, or data without labels, stops
    here, before Ray starts)."""
    from raygan import data

    conditional = getattr(args, "conditional", False)
    load = data.load_labelled if conditional else data.load
    try:
        load(
            args.dataset,
            root=args.data_root,
            resolution=size or resolution(args),
            max_images=8,
            download=args.download,
        )
    except data.DatasetMissing as err:
        flag = " --conditional" if conditional else ""
        raise UsageError(f"--dataset {args.dataset}{flag}: {one_line(err)}") from None
    except OSError as err:  # a data root that exists but cannot be read
        where = args.data_root or data.data_root()
        raise UsageError(f"--data-root {where}: cannot read it ({one_line(err)})") from None


def num_classes(args: argparse.Namespace) -> int | None:
    """The classes a ``--conditional`` run's networks are built for (the dataset's, from its
    labels' names: nothing is loaded); None for an unconditional run."""
    from raygan import data

    if not getattr(args, "conditional", False):
        return None
    return data.num_classes(args.dataset, args.data_root)


CONDITIONAL_SCORES = ("intra_fid", "class_accuracy")
"""Scores only a ``--conditional`` run records."""


def check_scores(args: Spec, flag: str, value: str, names: list[str]) -> None:
    """``names`` (the scores ``flag value`` selects on) are recorded by this search: the
    conditional ones only with ``--conditional``, the class accuracy only where the extractor
    classifies the dataset's own classes (raygan-shapes-v1 on shapes)."""
    from raygan import class_metrics
    from raygan.estimate import extractor_for

    conditional = [name for name in names if name in CONDITIONAL_SCORES]
    if conditional and not args.conditional:
        raise UsageError(f"{flag} {value}: {conditional[0]} needs --conditional")
    if "class_accuracy" not in names:
        return
    extractor = extractor_for(args)  # resolving `auto` looks for Inception's weights
    if class_metrics.CLASSIFIES.get(extractor) != args.dataset:
        raise UsageError(
            f"{flag} {value}: class_accuracy needs an extractor that classifies the dataset's "
            f"classes (raygan-shapes-v1 on shapes); got {extractor} on {args.dataset}"
        )
