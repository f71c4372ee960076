"""Passage scores from their best chunk: retrieve over sentences, rank paragraphs.

Why: a question is usually answered by one sentence, and a paragraph's single embedding (or its
whole bag of words) blurs that sentence with the rest. Scoring each chunk of a few sentences and
giving the passage its best chunk's score ("max-sim") keeps the precise match while still
returning whole passages to the reader. Works with any retriever: it is built on a knowledge base
of the chunks, and its ``(Q, chunks)`` scores are reduced to ``(Q, passages)`` by a maximum.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from instructrec.retrieval.base import Retriever
from instructrec.retrieval.knowledge_base import KnowledgeBase, Passage, split_passages


class ChunkedRetriever(Retriever):
    """Scores every passage of ``kb`` by its best chunk.

    Args:
        kb: the passages to rank.
        build: makes the inner retriever from a knowledge base, e.g.
            ``lambda chunks: DenseRetriever(chunks, cache_dir=".cache")``.
        max_words: chunk size: whole sentences up to this many words (see
            :func:`~instructrec.retrieval.knowledge_base.split_passages`).
    """

    def __init__(self, kb: KnowledgeBase, build: Callable[[KnowledgeBase], Retriever], *, max_words: int = 40):
        self.kb = kb
        chunks, parents = [], []
        for position, passage in enumerate(kb):
            pieces = split_passages(passage.text, max_words=max_words) or [passage.text]
            for n, piece in enumerate(pieces):
                chunks.append(Passage(f"{passage.id}~{n}", piece, passage.title, {"parent": passage.id}))
                parents.append(position)
        self.chunks = KnowledgeBase(chunks)
        self.parents = np.asarray(parents)  # (chunks,), non-decreasing: chunks follow their passage
        self._first = np.flatnonzero(np.r_[True, np.diff(self.parents) != 0])  # each passage's first chunk
        self.inner = build(self.chunks)

    def score_matrix(self, queries: Sequence[str]) -> np.ndarray:
        """``(Q, N)``: per passage, the best score of its chunks."""
        return np.maximum.reduceat(self.inner.score_matrix(queries), self._first, axis=1)
