"""What every retriever shares: a score for each (query, passage) pair, and ranked hits from it.

A retriever here is a function ``queries -> (Q, N)`` score matrix over its knowledge base; ranking,
restricting the search to some passages (a bAbI story, a document) and fusing retrievers
(:mod:`~instructrec.retrieval.hybrid`) all work on that matrix, so each retriever only has to say
how it scores. The full matrix suits knowledge bases of up to a few hundred thousand passages;
beyond that an approximate index (FAISS) would replace :meth:`Retriever.search`.

Ranking is deterministic: higher score first, ties by passage position.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from instructrec.retrieval.knowledge_base import KnowledgeBase, Passage

Allowed = Sequence[Sequence[int] | None] | None  # per query: the passage positions it may return


@dataclass(frozen=True)
class Hit:
    """A retrieved passage, its position in the knowledge base and its score."""

    passage: Passage
    index: int
    score: float

    @property
    def id(self) -> str:
        return self.passage.id


class Retriever(ABC):
    """Scores queries against every passage of ``kb``."""

    kb: KnowledgeBase

    @abstractmethod
    def score_matrix(self, queries: Sequence[str]) -> np.ndarray:
        """``(Q, N)`` float scores, higher is better; N = ``len(self.kb)``."""

    def search(self, queries: Sequence[str], k: int = 5, *, allowed: Allowed = None) -> list[list[Hit]]:
        """The ``k`` best hits per query, best first (fewer where fewer passages are allowed).

        ``allowed``: per query, the passage positions it may return (``None``: all).
        """
        scores = restrict(self.score_matrix(list(queries)), allowed)
        return [self._hits(row, k) for row in scores]

    def _hits(self, row: np.ndarray, k: int) -> list[Hit]:
        order = top_k(row, k)
        return [Hit(self.kb[i], int(i), float(row[i])) for i in order]


def restrict(scores: np.ndarray, allowed: Allowed) -> np.ndarray:
    """``scores`` with every passage a query may not return set to -inf."""
    if allowed is None:
        return scores
    if len(allowed) != len(scores):
        raise ValueError(f"{len(allowed)} allowed lists for {len(scores)} queries")
    scores = np.array(scores, dtype=np.float64)
    for row, positions in zip(scores, allowed):
        if positions is not None:
            keep = np.zeros(len(row), bool)
            keep[np.asarray(positions, dtype=np.int64)] = True
            row[~keep] = -np.inf
    return scores


def top_k(row: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best finite scores of ``row``: best first, ties by position."""
    finite = np.flatnonzero(np.isfinite(row))
    order = finite[np.argsort(-row[finite], kind="stable")]
    return order[:k]


def rank_of(scores: np.ndarray, gold: Sequence[int]) -> np.ndarray:
    """``(Q,)``: the 0-based rank of ``gold[q]`` in row ``q`` (ties count against it: a gold passage
    tied with another ranks after every passage before it)."""
    scores = np.asarray(scores)
    gold = np.asarray(gold, dtype=np.int64)
    gold_scores = scores[np.arange(len(gold)), gold][:, None]
    above = (scores > gold_scores).sum(axis=1)
    tied_before = ((scores == gold_scores) & (np.arange(scores.shape[1])[None, :] < gold[:, None])).sum(axis=1)
    return above + tied_before


def recall_at(scores: np.ndarray, gold: Sequence[int], ks: Sequence[int] = (1, 5, 20)) -> dict[int, float]:
    """Share of queries whose gold passage ranks within the top ``k``, per ``k``."""
    ranks = rank_of(scores, gold)
    return {k: float((ranks < k).mean()) for k in ks}


class RecencyPrior(Retriever):
    """Adds ``weight * position`` to another retriever's scores: later passages win near-ties.

    For knowledge bases in time order (stories, logs, dialogues) where a later fact supersedes an
    earlier one ("Mary went to the garden" after "Mary went to the kitchen"). Only differences
    within one query's candidates matter, so ``weight`` is per passage position: with BM25 scores,
    0.05 lets a passage 10 positions later beat one scoring up to 0.5 higher.

    ``only_matches``: add the prior only where the retriever scored the passage above 0, so that a
    passage sharing no term with the query is never lifted. With a large ``weight`` (1.0 for BM25)
    this ranks "the latest passage that mentions the query", which length normalisation alone gets
    wrong ("John put down the football." loses to a shorter earlier football fact).
    """

    def __init__(self, retriever: Retriever, weight: float = 0.05, *, only_matches: bool = False):
        self.retriever, self.kb, self.weight, self.only_matches = retriever, retriever.kb, weight, only_matches

    def score_matrix(self, queries: Sequence[str]) -> np.ndarray:
        scores = self.retriever.score_matrix(queries)
        prior = self.weight * np.arange(len(self.kb))[None, :]
        return np.where(scores > 0, scores + prior, scores) if self.only_matches else scores + prior
