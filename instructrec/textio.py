"""Bytes of a text file -> text, with a located error for bytes that are not the file's encoding.
A leaf module: the raw data readers and the bAbI parser both read files through it."""

from __future__ import annotations

import codecs
import re

from instructrec.instructions.model import InstructionError

LINE_BREAK = re.compile(r"\r\n|\r|\n")


def decode_text(data: bytes, encoding: str, source: str, *, hint: str | None = None, lines_are_records: bool = True) -> str:
    """``data`` decoded; a UTF-8 byte-order mark is dropped. Bytes that are not ``encoding`` raise
    :class:`InstructionError` naming the file, the line (also as ``record`` where lines are the
    file's records) and the byte."""
    try:
        utf8 = codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        raise InstructionError(f"unknown encoding {encoding!r}", source=source) from None
    codec = "utf-8-sig" if utf8 else encoding
    try:
        return data.decode(codec)
    except UnicodeDecodeError as error:
        position = error.start + (len(codecs.BOM_UTF8) if utf8 and data.startswith(codecs.BOM_UTF8) else 0)
        line = len(LINE_BREAK.split(data[:position].decode(codec, errors="replace")))
        raise InstructionError(
            f"not {encoding}: byte {data[position]:#04x} on line {line} cannot be decoded ({error.reason})",
            source=source,
            record=line if lines_are_records else None,
            hint=hint,
        ) from None
