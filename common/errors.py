"""Errors a user can fix. ``run.py`` prints their message as one line and exits with status 2."""
from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (files, config, options): no traceback is shown."""


class ConfigError(UserError):
    """The config file is missing, unreadable or fails validation; the message names the dotted key."""


class DataError(UserError):
    """A data file cannot be used; the message names the file, the row (1-based line) and the problem."""

    def __init__(self, path, problem: str, row: int | None = None, hint: str | None = None):
        self.path = str(path)
        self.row = row
        self.problem = problem
        self.hint = hint  # what the user can set to get past it
        where = f"{self.path}, row {row}" if row is not None else self.path
        super().__init__(f"{where}: {problem}" + (f" ({hint})" if hint else ""))


class TooFewBars(DataError):
    """A file with fewer bars than the warm-up needs (``symbol`` names it): an error for a file on its
    own, a skipped symbol in a universe of several."""

    def __init__(self, path, problem: str, symbol: str):
        super().__init__(path, problem)
        self.symbol = symbol
