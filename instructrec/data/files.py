"""Instruction files: JSONL with a text field, or plain text with blank-line-separated blocks.

Each record keeps its file and 1-based record number so that every error can point at it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from instructrec.instructions import InstructionError

FORMATS = ("auto", "jsonl", "blocks")
_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)*")


@dataclass(frozen=True)
class TextRecord:
    """One instruction text as read from a file, before parsing."""

    text: str
    source: str
    record: int
    id: str


def file_format(path: Path, format: str = "auto") -> str:
    """``jsonl`` for ``.jsonl``/``.json`` files, else ``blocks``, unless ``format`` says otherwise."""
    if format not in FORMATS:
        raise ValueError(f"unknown instruction file format {format!r}; expected one of {FORMATS}")
    if format != "auto":
        return format
    return "jsonl" if path.suffix.lower() in (".jsonl", ".json") else "blocks"


def read_instruction_file(path: Path, *, format: str = "auto", text_field: str = "text") -> Iterator[TextRecord]:
    """Yield the instruction texts of one file, in order.

    A JSONL line that is not an object with a string ``text_field`` raises ``InstructionError``
    with the file and line number: it is a broken file, not a bad record.
    """
    if not path.is_file():
        raise FileNotFoundError(f"instruction file {path} does not exist")
    if file_format(path, format) == "jsonl":
        yield from _read_jsonl(path, text_field)
    else:
        yield from _read_blocks(path)


def _read_jsonl(path: Path, text_field: str) -> Iterator[TextRecord]:
    with path.open(encoding="utf-8") as handle:
        record = 0
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            record += 1
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise InstructionError(
                    f"line {line_number} is not valid JSON: {error.msg}", source=str(path), record=record
                ) from None
            if not isinstance(row, dict) or not isinstance(row.get(text_field), str):
                raise InstructionError(
                    f"line {line_number} has no string field {text_field!r}", source=str(path), record=record
                )
            yield TextRecord(row[text_field], str(path), record, str(row.get("id", f"{path.stem}-{record}")))


def _read_blocks(path: Path) -> Iterator[TextRecord]:
    text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
    blocks = (block.strip() for block in _BLANK_LINES.split(text))
    for record, block in enumerate((b for b in blocks if b), start=1):
        yield TextRecord(block, str(path), record, f"{path.stem}-{record}")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Write rows as JSONL (UTF-8, one object a line); the inverse of the JSONL reader."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
