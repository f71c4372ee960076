"""Records -> parsed, checked examples, with the bad-record policy applied in one place.

``on_error="raise"`` (the default) stops at the first bad record with its file, record number and
reason. ``on_error="skip"`` skips it, counts it and keeps it for the rejects file, so that
``parsed + rejected == total`` always holds: nothing is lost silently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Literal

from instructrec.data.files import TextRecord, write_jsonl
from instructrec.instructions import Instruction, InstructionError, parse_instruction, render
from instructrec.hashing import stable_hash

log = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]


@dataclass(frozen=True)
class Example:
    """A parsed instruction and where it came from."""

    id: str
    instruction: Instruction
    source: str
    record: int


@dataclass
class LoadedSplit:
    examples: list[Example] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.examples) + len(self.rejects)

    def write_rejects(self, path: Path) -> None:
        write_jsonl(path, self.rejects)


# A check raises InstructionError when an otherwise valid instruction cannot be used (an answer
# that is not among the options, or not in its context).
Check = Callable[[Instruction], None]


def collect(
    items: Iterable[tuple[TextRecord, Callable[[], Instruction]]],
    *,
    check: Check | None = None,
    on_error: OnError = "raise",
    limit: int | None = None,
) -> LoadedSplit:
    """Build each record's instruction (parse or template) and check it, applying ``on_error``.

    With ``limit``, stop once that many examples are usable.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    split = LoadedSplit()
    for record, build in items:
        try:
            instruction = build()
            if check is not None:
                check(instruction)
        except InstructionError as error:
            _reject(split, error, on_error, record.source, record.record, record.id, record.text)
            continue
        split.examples.append(Example(record.id, instruction, record.source, record.record))
        if limit is not None and len(split.examples) >= limit:
            break
    return split


def recheck(split: LoadedSplit, check: Callable[[Example], None], on_error: OnError = "raise") -> None:
    """Apply ``on_error`` to collected examples that a later check refuses (one that needs more than
    the instruction: e.g. the raw record's evidence, which must lie in the instruction's context).
    Refused examples leave ``split.examples`` for its rejects (rendered text), so that
    ``parsed + rejected == total`` still holds."""
    usable = []
    for example in split.examples:
        try:
            check(example)
        except InstructionError as error:
            _reject(split, error, on_error, example.source, example.record, example.id, render(example.instruction))
            continue
        usable.append(example)
    split.examples = usable


def _reject(split: LoadedSplit, error: InstructionError, on_error: OnError, source: str, record: int, record_id: str,
            text: str) -> None:
    """Raise ``error`` located at its record, or keep the record among the split's rejects."""
    located = error.located(source, record) if error.source is None else error
    if on_error == "raise":
        raise located from None
    split.rejects.append({"source": source, "record": record, "id": record_id, "reason": located.reason, "text": text})


def parsed(records: Iterable[TextRecord]) -> Iterable[tuple[TextRecord, Callable[[], Instruction]]]:
    """Pair each text record with the parse that builds its instruction (or raises the error that
    made the record unreadable, so that ``on_error`` treats it as any bad record)."""
    for record in records:
        yield record, (lambda record=record: _parse(record))


def _parse(record: TextRecord) -> Instruction:
    if record.error is not None:
        raise record.error
    return parse_instruction(record.text)


def holdout_position(example_id: str, seed: int) -> float:
    """An example's place in ``[0, 1)``: a function of (id, seed) alone, so held-out splits (val:
    ``[0, val_fraction)``, test: the next ``test_fraction``) are the same in every run and process."""
    return stable_hash("holdout", seed, example_id) / 2**64


def subsample(examples: list[Example], limit: int, seed: int) -> list[Example]:
    """``limit`` examples chosen by a seeded hash of their ids (the same in every run), in order."""
    chosen = set(sorted(range(len(examples)), key=lambda i: stable_hash("subsample", seed, examples[i].id))[:limit])
    return [example for i, example in enumerate(examples) if i in chosen]


def report(name: str, parsed: int, rejected: int, rejects_path: str | Path | None) -> None:
    """Log the counts, and where the rejects went (every run: also when the split came from the cache)."""
    if rejected:
        where = f"; rejects written to {rejects_path}" if rejects_path else ""
        log.warning("%s: %d parsed + %d rejected = %d records%s", name, parsed, rejected, parsed + rejected, where)
    else:
        log.info("%s: %d records parsed", name, parsed)
