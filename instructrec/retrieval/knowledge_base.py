"""A knowledge base: the passages a retriever searches, each with a stable id.

Why passages and not documents: readers see a few hundred tokens at a time and retrieval scores
are only comparable between texts of similar length, so documents are cut into passages of about
``max_words`` words (on sentence ends where possible) before indexing. Ids say where a passage came
from (``<document id>#<n>``), so a trace can be followed back to the file.

Sources: JSONL files (one document per line), the paragraphs of SQuAD-style JSON (one passage per
distinct paragraph, which is the unit SQuAD questions were written about) and bAbI stories (one
passage per fact, each knowing its story and line number, so that multi-hop tests can compare
retrieved facts with the supporting-fact ids). Plain Python: no torch.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from instructrec.babi import BabiStory, stories_of

PathLike = str | os.PathLike
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])\s*")


@dataclass(frozen=True)
class Passage:
    """One retrievable unit of text."""

    id: str
    text: str
    title: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


class KnowledgeBase:
    """An ordered, id-unique collection of passages; retrievers index passages by position."""

    def __init__(self, passages: Iterable[Passage]):
        self.passages: list[Passage] = list(passages)
        self._position = {}
        for i, passage in enumerate(self.passages):
            if passage.id in self._position:
                raise ValueError(f"duplicate passage id {passage.id!r}")
            self._position[passage.id] = i

    def __len__(self) -> int:
        return len(self.passages)

    def __iter__(self) -> Iterator[Passage]:
        return iter(self.passages)

    def __getitem__(self, index: int) -> Passage:
        return self.passages[index]

    def __contains__(self, passage_id: object) -> bool:
        return passage_id in self._position

    def position(self, passage_id: str) -> int:
        return self._position[passage_id]

    @property
    def texts(self) -> list[str]:
        return [p.text for p in self.passages]

    def __add__(self, other: "KnowledgeBase") -> "KnowledgeBase":
        return KnowledgeBase([*self.passages, *other.passages])

    # -- sources -----------------------------------------------------------------------------------

    @classmethod
    def from_documents(
        cls, documents: Iterable[tuple[str, str, str]], *, max_words: int = 100
    ) -> "KnowledgeBase":
        """From ``(document id, title, text)``: each text split by :func:`split_passages`."""
        passages = []
        for doc_id, title, text in documents:
            for n, chunk in enumerate(split_passages(text, max_words=max_words)):
                passages.append(Passage(f"{doc_id}#{n}", chunk, title, {"document": doc_id}))
        return cls(passages)

    @classmethod
    def from_jsonl(
        cls,
        path: PathLike,
        *,
        text_field: str = "text",
        id_field: str = "id",
        title_field: str = "title",
        max_words: int = 100,
    ) -> "KnowledgeBase":
        """One document per JSON line; a line without ``id_field`` is named ``<file>:<line>``."""
        documents = []
        with open(path, encoding="utf-8") as file:
            for line_number, line in enumerate(file, start=1):
                if not line.strip():
                    continue
                record = json.loads(line)
                if not isinstance(record.get(text_field), str):
                    raise ValueError(f"{path}:{line_number}: no string field {text_field!r}")
                doc_id = str(record.get(id_field, f"{Path(path).name}:{line_number}"))
                documents.append((doc_id, str(record.get(title_field, "")), record[text_field]))
        return cls.from_documents(documents, max_words=max_words)

    @classmethod
    def from_squad(cls, path: PathLike) -> "KnowledgeBase":
        """One passage per distinct paragraph of a SQuAD-style file, id ``<title>#<paragraph n>``
        (``<title>#<paragraph n>@<article n>`` where two articles share a title, or have none).

        Each passage's ``meta["questions"]`` lists the ids of the questions asked about it, so
        retrieval recall can be measured against the gold paragraph.
        """
        with open(path, encoding="utf-8") as file:
            data = json.load(file)["data"]
        passages, seen, ids = [], {}, set()
        for a, article in enumerate(data):
            title = article.get("title", "")
            for n, paragraph in enumerate(article["paragraphs"]):
                context = paragraph["context"]
                questions = [qa["id"] for qa in paragraph["qas"]]
                if context in seen:  # the same paragraph twice: one passage, all its questions
                    seen[context].meta["questions"].extend(questions)
                    continue
                passage_id = f"{title}#{n}"
                if passage_id in ids:
                    passage_id += f"@{a}"
                ids.add(passage_id)
                passage = Passage(passage_id, context, title, {"questions": questions})
                seen[context] = passage
                passages.append(passage)
        return cls(passages)

    @classmethod
    def from_babi(cls, source: PathLike | list[BabiStory]) -> "KnowledgeBase":
        """One passage per fact of a bAbI task file (or of its stories, read already), id
        ``s<story>:<line>`` (story from 0, line as numbered in the file); ``meta`` holds ``story``
        and ``line``."""
        return cls(
            Passage(f"s{story.index}:{line}", text, "", {"story": story.index, "line": line})
            for story in stories_of(source)
            for line, text in story.facts.items()
        )


def split_passages(text: str, *, max_words: int = 100) -> list[str]:
    """Cut ``text`` into passages of at most ``max_words`` words, on sentence ends where possible.

    Passages are slices of ``text`` (inner white space kept as it was); a sentence longer than
    ``max_words`` is cut by words. Text without spaces (Chinese) counts one "word" per sentence,
    so its passages are groups of sentences. Empty text gives no passage.
    """
    if max_words < 1:
        raise ValueError(f"max_words must be positive, got {max_words}")
    # Units: (start, end, words) of sentences, over-long sentences already cut into word groups.
    units = []
    for sentence in _sentences(text):
        words = list(re.finditer(r"\S+", text[sentence[0] : sentence[1]]))
        for i in range(0, len(words), max_words):
            group = words[i : i + max_words]
            units.append((sentence[0] + group[0].start(), sentence[0] + group[-1].end(), len(group)))
    passages, first, length = [], None, 0
    for i, (_, _, words) in enumerate(units):
        if first is not None and length + words > max_words:
            passages.append(text[units[first][0] : units[i - 1][1]])
            first, length = None, 0
        first = i if first is None else first
        length += words
    if first is not None:
        passages.append(text[units[first][0] : units[-1][1]])
    return passages


def _sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text`` (ends: . ! ? and their CJK forms)."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    return [(a, b) for a, b in spans if text[a:b].strip()]


def babi_questions(kb: KnowledgeBase, source: PathLike | list[BabiStory]) -> tuple[list[str], list[list[int]], list[set[str]]]:
    """The questions of a bAbI file (or of its stories) over its :meth:`KnowledgeBase.from_babi`
    passages: per question its text, the positions of the facts told before it (what retrieval may
    select) and the ids of its supporting facts (what a trace should hold)."""
    questions, allowed, supporting = [], [], []
    for story in stories_of(source):
        for q in story.questions:
            questions.append(q.question)
            allowed.append([kb.position(f"s{story.index}:{n}") for n in story.facts_before(q.line)])
            supporting.append({f"s{story.index}:{n}" for n in q.supporting})
    return questions, allowed, supporting

