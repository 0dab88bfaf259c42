"""Errors the command line turns into one line and exit code 2."""

from __future__ import annotations

import math


class UsageError(Exception):
    """Bad input (option, spec, genotype, dataset): nothing was started or written. Its
    message is one line naming the option, the value and what is allowed."""


def one_line(err: BaseException) -> str:
    """An exception's message on one line (YAML, JSON and OS errors span several), or its
    type's name where it has none."""
    return " ".join(str(err).split()) or type(err).__name__


def problem(
    value: object,
    kind: type,
    minimum: float | None = None,
    above_zero: bool = False,
    maximum: int | None = None,
) -> str | None:
    """What is wrong with ``value`` as a ``kind`` (int or float) of at least ``minimum`` (or
    above 0; whole numbers: at most ``maximum``), as ``"must be ..., got ..."``; None when
    nothing is. Text (an option as typed) is shown quoted, numbers as they are."""
    shown = repr(value) if isinstance(value, str) or not isinstance(value, int | float) else value
    if kind is int:
        if maximum is not None:
            allowed = f"a whole number from {minimum or 0:g} to {maximum}"
        else:
            allowed = "a whole number" + ("" if minimum is None else f" >= {minimum:g}")
        if not isinstance(value, int) or isinstance(value, bool):
            return f"must be {allowed}, got {shown}"
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            return f"must be {allowed}, got {shown}"
        return None
    bound = " above 0" if above_zero else "" if minimum is None else f" >= {minimum:g}"
    if isinstance(value, bool) or not (isinstance(value, int | float) and math.isfinite(value)):
        return f"must be a finite number{bound}, got {shown}"
    if minimum is not None and value < minimum:
        return f"must be a number >= {minimum:g}, got {shown}"
    if above_zero and not value > 0:
        return f"must be a number above 0, got {shown}"
    return None
