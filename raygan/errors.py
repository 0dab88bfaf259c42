"""Errors the command line turns into one line and exit code 2."""


class UsageError(Exception):
    """Bad input (option, spec, genotype, dataset): nothing was started or written."""
