"""Exceptions raised by alignkit.

Every error that comes from bad input says *what* is wrong and *where* (file, line, field),
so a user can fix the input without reading alignkit's source.
"""
from __future__ import annotations


class AlignkitError(Exception):
    """Base class of every error alignkit raises on purpose."""


class DataError(AlignkitError):
    """A malformed record or file. Carries the location so callers can quarantine the row."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None):
        self.message = message
        self.file = file
        self.line = line
        self.field = field
        super().__init__(self._format())

    def _format(self) -> str:
        where = ""
        if self.file is not None:
            where = str(self.file)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        elif self.line is not None:
            where = f"line {self.line}: "
        field = f"field '{self.field}': " if self.field else ""
        return f"{where}{field}{self.message}"


class ConfigError(AlignkitError):
    """An invalid or incomplete configuration, detected before any compute."""


class TemplateError(AlignkitError):
    """A chat template that cannot be used safely (e.g. rendering is not prefix-consistent)."""


class CheckpointError(AlignkitError):
    """A checkpoint that is missing, incomplete or fails its checksum."""


class NonFiniteLossError(AlignkitError):
    """Training produced a NaN/Inf loss; the step was not applied."""
