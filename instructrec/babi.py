"""bAbI task files (Weston et al. 2015): stories of numbered facts, with questions whose answers
and supporting facts are given. Read here once; the knowledge base (one passage per fact) and the
QA reader's data (one record per question, the story so far as its context) both build on it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from instructrec.instructions.model import InstructionError
from instructrec.passages import join_passages, passage_at
from instructrec.textio import LINE_BREAK, decode_text

PathLike = str | os.PathLike
_NUMBER = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class BabiQuestion:
    line: int  # its line number in the story
    question: str
    answer: str
    supporting: tuple[int, ...]  # line numbers of the supporting facts


@dataclass(frozen=True)
class BabiStory:
    index: int  # 0-based position in the file
    facts: dict[int, str]  # line number -> fact sentence
    questions: list[BabiQuestion]

    def facts_before(self, line: int, max_facts: int | None = None) -> list[int]:
        """Line numbers of the facts told before the question on ``line``; the last ``max_facts``
        of them when given (a reader's memory, see :meth:`context_before`)."""
        facts = [n for n in self.facts if n < line]
        return facts[-max_facts:] if max_facts else facts

    def context_before(self, line: int, max_facts: int | None = None) -> tuple[str, dict[int, int]]:
        """The story told before the question on ``line`` as one text: :meth:`context` of
        :meth:`facts_before`.

        ``max_facts`` keeps only the latest facts, as End-to-End Memory Networks kept the 50 most
        recent sentences: bAbI's supporting facts are recent (tasks 1-3: all within the last 40),
        while whole task-3 stories run to 1,400 tokens.
        """
        return self.context(self.facts_before(line, max_facts))

    def context(self, lines: list[int]) -> tuple[str, dict[int, int]]:
        """The facts on ``lines`` joined by spaces, in the order given, and each fact's character
        start in that text: a reader's answer span maps back to its fact (:meth:`fact_at`)."""
        context, starts = join_passages([self.facts[n] for n in lines])
        return context, dict(zip(lines, starts))

    def fact_at(self, lines: list[int], char: int) -> int | None:
        """The line number of the fact that character ``char`` of :meth:`context` of ``lines`` lies in."""
        _, starts = join_passages([self.facts[n] for n in lines])
        inside = passage_at(starts, [len(self.facts[n]) for n in lines], char)
        return None if inside is None else lines[inside]


def stories_of(source: PathLike | list[BabiStory]) -> list[BabiStory]:
    """The stories of a bAbI file, or the stories themselves when they were read already (so that
    one file is parsed once however many views of it are built)."""
    return source if isinstance(source, list) else read_babi(source)


def read_babi(path: PathLike) -> list[BabiStory]:
    """The stories of a bAbI task file: numbered lines, a new story where numbering restarts at 1;
    a question line is ``n question<TAB>answer<TAB>supporting ids``.

    The file is UTF-8 (a byte-order mark is dropped); LF, CRLF and CR end lines. A malformed line
    raises :class:`InstructionError` (a ``ValueError``) naming the file and the line (``record``).
    """
    source = str(path)
    text = decode_text(Path(path).read_bytes(), "utf-8", source, hint="save the file as UTF-8")

    def bad(line_number: int, problem: str, raw: str) -> InstructionError:
        return InstructionError(f"line {line_number}: {problem}: {raw!r}", source=source, record=line_number)

    stories: list[BabiStory] = []
    lines = LINE_BREAK.split(text)
    for line_number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        number, _, rest = raw.partition(" ")
        if not _NUMBER.fullmatch(number):
            raise bad(line_number, "a bAbI line starts with its number", raw)
        n = int(number)
        if n == 1:
            stories.append(BabiStory(len(stories), {}, []))
        if not stories:
            raise bad(line_number, "the first story does not start at 1", raw)
        if "\t" in rest:
            fields = rest.split("\t")
            if len(fields) < 3 or not fields[1].strip():
                raise bad(line_number, "a question needs an answer and supporting ids", raw)
            ids = fields[2].split()
            if not all(_NUMBER.fullmatch(i) for i in ids):
                raise bad(line_number, "supporting ids are line numbers", raw)
            supporting = tuple(int(i) for i in ids)
            stories[-1].questions.append(BabiQuestion(n, fields[0].strip(), fields[1].strip(), supporting))
        else:
            stories[-1].facts[n] = rest.strip()
    return stories
