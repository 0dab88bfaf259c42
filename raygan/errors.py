"""Errors the command line turns into one line and exit code 2."""


class UsageError(Exception):
    """Bad input (option, spec, genotype, dataset): nothing was started or written. Its
    message is one line naming the option, the value and what is allowed."""


def one_line(err: BaseException) -> str:
    """An exception's message on one line (YAML, JSON and OS errors span several), or its
    type's name where it has none."""
    return " ".join(str(err).split()) or type(err).__name__
