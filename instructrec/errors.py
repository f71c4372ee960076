"""The one error type for input a user gave us that we cannot use: a data file, a record, an
instruction, a checkpoint, an output folder.

Why one type: the ``instructrec`` command prints an :class:`InputError` as one or two lines (where,
why, what to do) and exits with status 2, without a traceback (``--debug`` or
``INSTRUCTREC_DEBUG=1`` shows it); any other exception is a bug of ours and keeps its traceback.
Plain Python: no torch, no Lightning.
"""

from __future__ import annotations

import os

DEBUG_VARIABLE = "INSTRUCTREC_DEBUG"


class InputError(ValueError):
    """Bad input; the message says where (file, record, character offset), why, and what to do.

    Attributes:
        reason: what is wrong, without the location.
        source: the file (or ``<input>``) it came from, when known.
        record: the 1-based record or line number in ``source``, when known.
        offset: the character offset in the record's text, when known.
        hint: what the user can do about it, when there is something to say.
    """

    def __init__(
        self,
        message: str,
        *,
        offset: int | None = None,
        source: str | None = None,
        record: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.reason = message
        self.offset = offset
        self.source = source
        self.record = record
        self.hint = hint
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.source is not None:
            where.append(str(self.source))
        if self.record is not None:
            where.append(f"record {self.record}")
        if self.offset is not None:
            where.append(f"character {self.offset}")
        return f"{', '.join(where)}: {self.reason}" if where else self.reason

    def located(self, source: str | None, record: int | None) -> "InputError":
        """The same error, placed in a file and record (for readers that handle many texts)."""
        return type(self)(self.reason, offset=self.offset, source=source, record=record, hint=self.hint)

    def lines(self) -> str:
        """The message as the CLI prints it: the located reason, then the hint on a line of its own."""
        return f"{self}\n  hint: {self.hint}" if self.hint else str(self)


class MissingFileError(InputError, FileNotFoundError):
    """A file named in a config or on the command line that does not exist (still a
    ``FileNotFoundError`` for callers that catch that)."""


def debugging() -> bool:
    """Whether ``INSTRUCTREC_DEBUG`` asks for tracebacks of input errors."""
    return os.environ.get(DEBUG_VARIABLE, "").lower() not in ("", "0", "false", "no")
