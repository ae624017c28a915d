"""Errors a user can act on.

Everything datakit raises on bad input is a `DatakitError` whose message names the file, line or
recipe key at fault. The command line prints the message and exits with status 2; it never shows
a traceback from deep inside a library for a problem in the user's data or recipe.
"""

from __future__ import annotations


class DatakitError(Exception):
    """A problem with the user's recipe, data or environment, stated so the user can fix it."""


class RecipeError(DatakitError):
    pass


class SourceError(DatakitError):
    """A source cannot be read at all (missing file, unreachable Hub id, broken file structure)."""


class UnknownLanguageError(DatakitError):
    def __init__(self, tag: str, reason: str):
        self.tag, self.reason = tag, reason
        super().__init__(f"unknown language code {tag!r}: {reason}")


class OutputError(DatakitError):
    """The output folder cannot be written (unwritable, disk full)."""
