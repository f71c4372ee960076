"""Multi-hop retrieval: retrieve, select supporting passages, retrieve again with what was found.

Why: a question like "Where is the milk?" over "Mary got the milk there. ... Mary travelled to
the hallway." needs a fact that shares no word with the question: only after the first hop has
found "Mary got the milk" does "Mary" become a query term. Hop 1 queries with the question; each
later hop queries with the question plus the text of every passage selected so far, and may not
select a passage twice. Every selected passage is recorded in the trace with its hop and score,
so an answer can always say why it was given.
"""

from __future__ import annotations

import math
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
    """The names of the passages selected so far that the question does not have (hop 1: the
    question; all new words of the passage selected last when no passage has a new name).

    Why: in "John got the football there." the bridge is John; "got" and "there" would match every
    other fact where someone got something. Bridge entities are names in bAbI and HotpotQA alike.
    Every selected passage counts, so a hop that selects several facts ("the latest five football
    facts") follows everyone who handled the football.
    """
    if not selected:
        return question
    asked = _bare_words(question)
    names: list[str] = []
    for passage in selected:
        for word in (w.strip(_PUNCTUATION) for w in passage.split()):
            if word[:1].isupper() and word.lower() not in asked and word not in names:
                names.append(word)
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
        hops: the number of retrieval rounds (default: 2, or one per entry of ``select``).
        select: passages selected (added to the query and the trace) per hop: one number for every
            hop, or one per hop (then ``hops`` may be left out), e.g. ``[1, 10]``: the fact that
            names the object, then everything about the one who holds it.
        k: hits kept from the final hop for the reader.
        reformulate: ``(question, selected texts) -> query`` of the next hop; default
            :func:`expand_query` (the question followed by the selected texts); :func:`bridge_query`
            follows a bridge entity instead.
        min_score: a hit must score above it to be selected. BM25 scores 0 where a passage shares
            no term with the query: ``min_score=0`` selects fewer passages rather than unrelated ones.
    """

    def __init__(
        self,
        retriever: Retriever,
        *,
        hops: int | None = None,
        select: int | Sequence[int] = 1,
        k: int = 5,
        reformulate: Callable[[str, list[str]], str] | None = None,
        min_score: float = -math.inf,
    ):
        per_hop = [select] * (2 if hops is None else hops) if isinstance(select, int) else list(select)
        if hops is not None and len(per_hop) != hops:
            raise ValueError(f"select={select} gives {len(per_hop)} hops, not hops={hops}")
        if not per_hop or min(per_hop) < 1:
            raise ValueError(f"hops={hops} and select={select} must be positive")
        self.retriever, self.select, self.k, self.min_score = retriever, per_hop, k, min_score
        self.hops = len(per_hop)
        self.reformulate = reformulate or expand_query

    def retrieve(self, questions: Sequence[str], *, allowed: Allowed = None) -> list[MultiHopResult]:
        """One result per question; each hop scores all questions in one batch."""
        questions = list(questions)
        selected: list[list[Hit]] = [[] for _ in questions]
        trace: list[list[TraceStep]] = [[] for _ in questions]
        last: list[list[Hit]] = [[] for _ in questions]
        for hop, select in enumerate(self.select, start=1):
            queries = [self.reformulate(q, [h.passage.text for h in chosen]) for q, chosen in zip(questions, selected)]
            # Enough hits that `select` new ones remain after dropping those already selected.
            hits = self.retriever.search(queries, k=max(self.k, select) + sum(self.select[: hop - 1]), allowed=allowed)
            for i, ranking in enumerate(hits):
                taken = {h.id for h in selected[i]}
                fresh = [h for h in ranking if h.id not in taken and h.score > self.min_score]
                for h in fresh[:select]:
                    selected[i].append(h)
                    trace[i].append(TraceStep(hop, h.id, h.passage.text, h.score))
                last[i] = ranking[: self.k]
        return [MultiHopResult(q, s, t, l) for q, s, t, l in zip(questions, selected, trace, last)]
