"""Multi-hop retrieval: retrieve, select supporting passages, retrieve again with what was found.

Why: a question like "Where is the milk?" over "Mary got the milk there. ... Mary travelled to
the hallway." needs a fact that shares no word with the question: only after the first hop has
found "Mary got the milk" does "Mary" become a query term. Hop 1 queries with the question; each
later hop queries with the question plus the text of every passage selected so far, and may not
select a passage twice. Every selected passage is recorded in the trace with its hop and score,
so an answer can always say why it was given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from instructrec.retrieval.base import Allowed, Hit, Retriever


def expand_query(question: str, selected: list[str]) -> str:
    """The next hop's query: the question followed by the text of every passage selected so far."""
    return " ".join([question, *selected])


def bridge_query(question: str, selected: list[str]) -> str:
    """The next hop's query for bridge questions: the words of the passage selected last that the
    question does not already have (hop 1: the question).

    Why: "Where is the football?" -> "Mary got the football there." -> the next fact needed is
    about Mary; querying with "football" again would only find more football facts.
    """
    if not selected:
        return question
    asked = _bare_words(question)
    return " ".join(word for word in selected[-1].split() if word.strip(_PUNCTUATION).lower() not in asked)


def bridge_entities(question: str, selected: list[str]) -> str:
    """:func:`bridge_query` narrowed to names: the capitalised words of the passage selected last
    that the question does not have (all its new words when it has no such name).

    Why: in "John got the football there." the bridge is John; "got" and "there" would match every
    other fact where someone got something. Bridge entities are names in bAbI and HotpotQA alike.
    """
    if not selected:
        return question
    asked = _bare_words(question)
    words = (word.strip(_PUNCTUATION) for word in selected[-1].split())
    names = [word for word in words if word[:1].isupper() and word.lower() not in asked]
    return " ".join(names) or bridge_query(question, selected)


_PUNCTUATION = ".,;:!?\"'()"


def _bare_words(text: str) -> set[str]:
    """The words of ``text``, lower-cased, without surrounding punctuation: what a question asks."""
    return {word.strip(_PUNCTUATION).lower() for word in text.split()}


@dataclass(frozen=True)
class TraceStep:
    """One selected passage: the hop that selected it, its id, text and retrieval score there."""

    hop: int  # 1-based
    passage_id: str
    text: str
    score: float

    def as_dict(self) -> dict:
        return {"hop": self.hop, "passage_id": self.passage_id, "text": self.text, "score": self.score}


@dataclass(frozen=True)
class MultiHopResult:
    question: str
    selected: list[Hit]  # in the order they were selected (hop 1 first)
    trace: list[TraceStep]
    last_hits: list[Hit] = field(default_factory=list)  # the final hop's ranking, for the reader

    def passages(self, k: int) -> list[Hit]:
        """The ``k`` passages to read: the selected ones, then the final hop's other best hits."""
        chosen = list(self.selected)
        ids = {h.id for h in chosen}
        chosen += [h for h in self.last_hits if h.id not in ids]
        return chosen[:k]


class MultiHopRetriever:
    """Iterated retrieval with query expansion by the selected passages.

    Args:
        retriever: any :class:`~instructrec.retrieval.base.Retriever`.
        hops: the number of retrieval rounds.
        select: passages selected (added to the query and the trace) per hop.
        k: hits kept from the final hop for the reader.
        reformulate: ``(question, selected texts) -> query`` of the next hop; default
            :func:`expand_query` (the question followed by the selected texts); :func:`bridge_query`
            follows a bridge entity instead.
    """

    def __init__(
        self,
        retriever: Retriever,
        *,
        hops: int = 2,
        select: int = 1,
        k: int = 5,
        reformulate: Callable[[str, list[str]], str] | None = None,
    ):
        if hops < 1 or select < 1:
            raise ValueError(f"hops={hops} and select={select} must be positive")
        self.retriever, self.hops, self.select, self.k = retriever, hops, select, k
        self.reformulate = reformulate or expand_query

    def retrieve(self, questions: Sequence[str], *, allowed: Allowed = None) -> list[MultiHopResult]:
        """One result per question; each hop scores all questions in one batch."""
        questions = list(questions)
        selected: list[list[Hit]] = [[] for _ in questions]
        trace: list[list[TraceStep]] = [[] for _ in questions]
        last: list[list[Hit]] = [[] for _ in questions]
        for hop in range(1, self.hops + 1):
            queries = [self.reformulate(q, [h.passage.text for h in chosen]) for q, chosen in zip(questions, selected)]
            # Enough hits that `select` new ones remain after dropping those already selected.
            hits = self.retriever.search(queries, k=max(self.k, self.select) + (hop - 1) * self.select, allowed=allowed)
            for i, ranking in enumerate(hits):
                taken = {h.id for h in selected[i]}
                fresh = [h for h in ranking if h.id not in taken]
                for h in fresh[: self.select]:
                    selected[i].append(h)
                    trace[i].append(TraceStep(hop, h.id, h.passage.text, h.score))
                last[i] = ranking[: self.k]
        return [MultiHopResult(q, s, t, l) for q, s, t, l in zip(questions, selected, trace, last)]
