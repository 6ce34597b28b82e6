"""The classifier errors: each boundary maps them to its own words (HTTP 404 / 409 / 422, the shell's message)."""

from __future__ import annotations

from lqmf.base.errors import LQMFError


class DataError(LQMFError):
    """A labelled data file that cannot be used as given; the message names the file, line or column."""


class ClassifierNotFound(LQMFError):
    """No saved classifier by that name."""


class ClassifierRefused(LQMFError):
    """A classifier that must not be used: a failed safety check, a missing or changed embedding model, a dimension
    mismatch."""


class MissingColumns(DataError):
    """A labelled file without a column it needs; `found` is what it has (a CSV header, or a JSONL line's fields),
    so a caller that knows why the columns are needed (a classifier's training columns) can say so."""

    def __init__(self, message: str, hint: str, *, found: list[str], missing: list[str], line: int) -> None:
        super().__init__(message, hint)
        self.found = found
        self.missing = missing
        self.line = line
