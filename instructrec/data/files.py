"""Instruction files: JSONL with a text field, or plain text with blank-line-separated blocks.

Each record keeps its file and 1-based record number so that every error can point at it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from instructrec.errors import InputError, MissingFileError
from instructrec.instructions import InstructionError

FORMATS = ("auto", "jsonl", "blocks")
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_BOM = "\ufeff"


@dataclass(frozen=True)
class TextRecord:
    """One instruction text as read from a file, before parsing.

    ``error`` is set instead of a usable ``text`` when the record itself is broken (a line that is
    not valid JSON, has no text field, or is not valid UTF-8): the loader's ``on_error`` decides
    whether that stops the run or becomes a reject, like any other bad record.
    """

    text: str
    source: str
    record: int
    id: str
    error: InstructionError | None = None


def file_format(path: Path, format: str = "auto") -> str:
    """``jsonl`` for ``.jsonl``/``.json`` files, else ``blocks``, unless ``format`` says otherwise."""
    if format not in FORMATS:
        raise InputError(f"unknown instruction file format {format!r}; expected one of {FORMATS}")
    if format != "auto":
        return format
    return "jsonl" if path.suffix.lower() in (".jsonl", ".json") else "blocks"


def read_instruction_file(path: Path, *, format: str = "auto", text_field: str = "text") -> Iterator[TextRecord]:
    """Yield the instruction texts of one file, in order.

    The file is UTF-8, with or without a byte-order mark; CRLF and CR end lines as LF does. A
    record that cannot be read (a JSONL line that is not an object with a string ``text_field``, a
    line that is not UTF-8) is yielded with its ``error`` set, located by file, record and line.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"instruction file {path} does not exist")
    if file_format(path, format) == "jsonl":
        yield from _read_jsonl(path, text_field)
    else:
        yield from _read_blocks(path)


def decoded_lines(path: Path) -> Iterator[tuple[int, str, str | None]]:
    """``(line number, text, problem)`` for each line of a UTF-8 file: a leading byte-order mark is
    dropped, and ``\\r\\n``, ``\\r`` and ``\\n`` all end a line (not the other breaks ``splitlines``
    knows, which may sit inside a text). ``problem`` says why a line is not valid UTF-8 (its
    ``text`` then shows the bad bytes as U+FFFD, for the rejects file); else it is None."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"cannot read the file: {error.strerror or error}", source=str(path)) from None
    lines = _LINE_BREAK.split(data)
    if lines and lines[-1] == b"":
        lines.pop()
    for number, raw in enumerate(lines, start=1):
        try:
            text, problem = raw.decode("utf-8"), None
        except UnicodeDecodeError as error:
            text = raw.decode("utf-8", errors="replace")
            problem = (
                f"line {number} is not valid UTF-8 (byte {raw[error.start]:#04x} at column {error.start + 1}); "
                "save the file as UTF-8"
            )
        yield number, (text.removeprefix(_BOM) if number == 1 else text), problem


def _read_jsonl(path: Path, text_field: str) -> Iterator[TextRecord]:
    source, record = str(path), 0
    for line_number, line, problem in decoded_lines(path):
        if not line.strip():
            continue
        record += 1
        default_id = f"{path.stem}-{record}"
        if problem is None:
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                problem = f"line {line_number} is not valid JSON: {error.msg}"
            except RecursionError:
                problem = f"line {line_number} is not valid JSON: nested too deeply"
            else:
                if isinstance(row, dict) and isinstance(row.get(text_field), str):
                    yield TextRecord(row[text_field], source, record, str(row.get("id", default_id)))
                    continue
                problem = f"line {line_number} has no string field {text_field!r}"
        yield TextRecord(line, source, record, default_id, InstructionError(problem, source=source, record=record))


def _read_blocks(path: Path) -> Iterator[TextRecord]:
    """Records are runs of non-blank lines; one or more blank lines separate them."""
    source, record, block, problems = str(path), 0, [], []
    for _, line, problem in [*decoded_lines(path), (0, "", None)]:  # a final blank line ends the last block
        if line.strip(" \t"):
            block.append(line)
            problems += [problem] if problem else []
            continue
        if block:
            record += 1
            error = InstructionError(problems[0], source=source, record=record) if problems else None
            yield TextRecord("\n".join(block).strip(), source, record, f"{path.stem}-{record}", error)
        block, problems = [], []


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Write rows as JSONL (UTF-8, one object a line); the inverse of the JSONL reader."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            line = json.dumps(row, ensure_ascii=False)
            try:
                line.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate (read from a "\\ud800" escape): keep it escaped
                line = json.dumps(row)
            handle.write(line + "\n")
