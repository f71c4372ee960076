"""Raw data set + template -> the same (record, build) pairs that instruction files give.

The template's reader (``instructrec.data.raw.reader_for``) reads the files; the template builds
each record's instruction, choosing its phrasing from ``(seed, index)``. A record the template
cannot use is a bad record like any other: ``on_error`` decides.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator

from instructrec.data.files import TextRecord
from instructrec.data.raw import read_parallel, reader_for
from instructrec.instructions import Instruction
from instructrec.instructions.templates import get_template


def read_records(files: list[Path], template_name: str, reader_args: dict[str, Any]) -> list[dict]:
    """The raw records of ``files``, read by the template's reader, in file order. A parallel
    corpus is one source file and one target file; other readers take one file each."""
    reader = reader_for(template_name)
    groups = [files] if reader is read_parallel else [[path] for path in files]
    return [record for group in groups for record in reader(*group, **reader_args)]


def templated(
    records: list[dict],
    template_name: str,
    template_args: dict[str, Any],
    *,
    seed: int,
) -> Iterator[tuple[TextRecord, Callable[[], Instruction]]]:
    """Each raw record (:func:`read_records`) with the template application that builds its
    instruction, in the phrasing ``(seed, its index)`` chooses."""
    template = get_template(template_name, **template_args)
    for index, record in enumerate(records):
        text = json.dumps({k: v for k, v in record.items() if k not in ("source", "record")}, ensure_ascii=False)
        located = TextRecord(text, str(record["source"]), int(record["record"]), str(record["id"]))
        yield located, (lambda record=record, index=index: template.apply(record, seed=seed, index=index))


def reference_answers(records: list[dict]) -> dict[str, list[dict]]:
    """``{record id: its reference answers}`` for raw records that list ``answers``, each answer
    as the reader gives it: ``{"text", "answer_start"}``.

    Why: a template's instruction holds one answer (the first) and not where it is, but SQuAD-style
    files give each question several annotators' answers, which EM/F1 score a prediction against,
    and say where the answer is when its text occurs more than once in the context (a bAbI
    location is mentioned many times; the supporting fact's mention is the one to point at).
    """
    return {
        str(record["id"]): [dict(answer) for answer in record["answers"]]
        for record in records
        if isinstance(record.get("answers"), list)
    }


def evidence_spans(records: list[dict]) -> dict[str, list[dict]]:
    """``{record id: its evidence}`` for raw records that give it (``{"text", "start"}`` per
    passage of the context that supports the answer: bAbI's supporting facts)."""
    return {str(record["id"]): [dict(e) for e in record["evidence"]] for record in records if isinstance(record.get("evidence"), list)}
