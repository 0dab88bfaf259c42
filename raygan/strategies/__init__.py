"""The search strategies behind ``raygan search NAME`` and ``raygan analyze``.

Each strategy is a module with the same small surface, found through :data:`STRATEGIES`
(a registry, so adding one needs no change to the command line):

- ``HELP``: one line for ``raygan search --help``;
- ``PRESETS``: ``{"quick": {...}, "paper": {...}}`` option defaults (quick is the default);
- ``add_arguments(parser)``: its own options (common ones come from :func:`add_common`);
- ``run(args) -> int``: validate everything (raise :class:`raygan.errors.UsageError`), then
  start Ray and search, writing ``<out>/trials.parquet`` and genotype files;
- ``analyze(df, out_dir) -> str``: text for ``raygan analyze`` (and PNGs written to out_dir).
"""

from __future__ import annotations

import argparse
import importlib
from types import ModuleType

STRATEGIES: dict[str, str] = {
    "eagan": "raygan.strategies.eagan",
    "autogan": "raygan.strategies.autogan",
    "adversarialnas": "raygan.strategies.adversarialnas",
}


def available() -> dict[str, ModuleType]:
    """The strategy modules that exist in this installation, by name."""
    found = {}
    for name, module in STRATEGIES.items():
        try:
            found[name] = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
    return found


def apply_preset(args: argparse.Namespace, presets: dict[str, dict]) -> None:
    """Fill every option the user left unset (None) from the chosen preset."""
    for key, value in presets[args.preset].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
