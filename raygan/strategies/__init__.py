"""The search strategies behind ``raygan search NAME``.

Each strategy is a module with the same small surface, found through :data:`STRATEGIES`
(a registry, so adding one needs no change to the command line):

- ``HELP``: one line for ``raygan search --help``;
- ``add_arguments(parser)``: its own options (common ones come from
  :func:`raygan.cli.add_search_options`); an option that a preset sets defaults to None;
- ``validate(spec)``: every problem in the spec, as :class:`raygan.errors.UsageError`; the
  command line calls it before anything is written or Ray starts;
- ``run(spec) -> int``: search with that validated spec, writing ``<out>/trials.parquet``
  and genotype files.

Its presets are data, ``raygan/presets/<name>.yaml`` (``quick`` is the default), read with
:func:`raygan.spec.load_preset`; :func:`raygan.spec.build_spec` puts the options given over
one of them, giving one immutable :class:`raygan.spec.Spec`.

What ``raygan analyze`` prints and plots for a strategy's rows is not part of it: that is
:data:`raygan.analysis.ANALYZERS`, keyed by the same name.
"""

from __future__ import annotations

import importlib
from types import ModuleType

STRATEGIES: dict[str, str] = {
    "eagan": "raygan.strategies.eagan",
    "autogan": "raygan.strategies.autogan",
    "adversarialnas": "raygan.strategies.adversarialnas",
    "random": "raygan.strategies.random_search",
    "tune": "raygan.strategies.tune_search",
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
