"""Small builders shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path

from instructrec.data.files import write_jsonl
from instructrec.instructions import Instruction, render

SENTIMENT = ["positive", "negative"]


def classification_text(text: str, answer: str | None, options: list[str] = SENTIMENT) -> str:
    fields = {"text": text, "options": list(options)}
    if answer is not None:
        fields["answer"] = answer
    return render(Instruction("classification", "en", fields))


def write_classification(path: Path, rows: list[tuple[str, str | None]], options: list[str] = SENTIMENT) -> Path:
    write_jsonl(path, [{"id": f"r{i}", "text": classification_text(t, a, options)} for i, (t, a) in enumerate(rows)])
    return path
