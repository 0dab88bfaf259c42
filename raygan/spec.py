"""A search's spec: one immutable set of settings, the preset file's values under the options given.

Presets are data (``raygan/presets/<strategy>.yaml``, one mapping per preset name, one-line
reasons beside the values), so what a search runs with is written in one place and read the
same way by the command line, the tests and the benchmarks. ``raygan search`` builds the spec
once, before anything is written or Ray starts, and hands it to the strategy; nothing changes
it afterwards: a driver that needs a resolved value holds ``spec.replace(...)``, a new spec.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from importlib import resources
from typing import Any

import yaml

from raygan.errors import UsageError

NOT_SETTINGS = ("func", "command")
"""Parser bookkeeping, not settings: the handler function and the subcommand's name."""

DEFAULT_DATASET = "shapes"
"""The dataset when neither the preset nor the options name one: built in, no download."""


def preset_file(strategy: str) -> Any:
    """The packaged preset file of ``strategy`` (a ``Traversable``: works from a wheel too)."""
    return resources.files("raygan").joinpath("presets", f"{strategy}.yaml")


def read_presets(strategy: str) -> dict[str, dict[str, Any]]:
    """Every preset of ``strategy`` by name; the file must map names to flat mappings."""
    path = preset_file(strategy)
    if not path.is_file():
        raise UsageError(f"no presets for strategy {strategy!r} (no {path})")
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict) or not all(isinstance(v, dict) for v in doc.values()):
        raise UsageError(f"{path}: expected one mapping of settings per preset name")
    return doc


def preset_names(strategy: str) -> list[str]:
    """The presets ``strategy`` ships, sorted (the ``--preset`` choices)."""
    return sorted(read_presets(strategy))


def load_preset(strategy: str, name: str) -> dict[str, Any]:
    """Preset ``name`` of ``strategy``: option name (``snake_case``) -> value. A preset with
    ``like: OTHER`` is OTHER's preset of the same name under its own keys."""
    presets = read_presets(strategy)
    if name not in presets:
        raise UsageError(
            f"unknown preset {name!r} for {strategy}; choose from: {', '.join(sorted(presets))}"
        )
    preset = dict(presets[name])
    if like := preset.pop("like", None):
        return {**load_preset(like, name), **preset}
    return preset


class Spec:
    """Read-only settings with attribute access (``spec.population``), like the parsed options.

    Immutable so that what was validated is what runs: setting an attribute raises, and
    :meth:`replace` returns a new spec. Values are plain (str, int, float, bool, None), so
    :meth:`to_dict` is JSON-able as it is.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, Any]):
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # _values before __init__ (unpickling, copying)
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"the spec has no setting {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a Spec is immutable (setting {name!r}): use spec.replace(...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"a Spec is immutable (deleting {name!r})")

    def __reduce__(self) -> tuple[type[Spec], tuple[dict[str, Any]]]:
        return Spec, (self._values,)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Spec) and self._values == other._values

    __hash__ = None  # type: ignore[assignment]  # equal by value, like a dict

    def __repr__(self) -> str:
        return f"Spec({', '.join(f'{k}={v!r}' for k, v in self._values.items())})"

    def replace(self, **changes: Any) -> Spec:
        """A new spec with ``changes``; only existing settings change (a typo raises)."""
        unknown = sorted(set(changes) - set(self._values))
        if unknown:
            raise AttributeError(f"the spec has no setting {unknown[0]!r}")
        return Spec({**self._values, **changes})

    def to_dict(self) -> dict[str, Any]:
        """The settings as a new plain dict (for JSON, logs, saved state)."""
        return dict(self._values)


def build_spec(strategy: str, args: argparse.Namespace) -> Spec:
    """The spec of ``raygan search STRATEGY``: preset ``args.preset``, then every option the user
    gave (an option left out is None), then the defaults of ``dataset`` and ``out``.

    Every preset key must be an option of the strategy's parser, so a misspelt key in a preset
    file stops here instead of being silently ignored.
    """
    given = {k: v for k, v in vars(args).items() if k not in NOT_SETTINGS}
    preset = load_preset(strategy, given["preset"])
    unknown = sorted(set(preset) - set(given))
    if unknown:
        raise UsageError(
            f"{preset_file(strategy)}: preset {given['preset']!r} sets {unknown[0]!r}, which is "
            f"not an option of `raygan search {strategy}`"
        )
    values = {**given, **{k: v for k, v in preset.items() if given[k] is None}}
    values["strategy"] = strategy
    values["dataset"] = values.get("dataset") or DEFAULT_DATASET
    values["out"] = values.get("out") or os.path.join("trials", f"{strategy}-{values['preset']}")
    return Spec(values)
