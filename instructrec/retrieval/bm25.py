"""BM25 retrieval through ``bm25s`` (a maintained, fast implementation) with Snowball stemming.

Why stemming: SQuAD questions paraphrase their paragraphs ("founded" / "founding"), and stemmed
English BM25 recalled the gold paragraph first for 81% of SQuAD dev questions where unstemmed did
worse. Stop words are dropped for the same reason. Text without spaces (Chinese) would need a word
segmenter first: bm25s splits on ``\\w\\w+`` runs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from instructrec.retrieval.base import Retriever
from instructrec.retrieval.knowledge_base import KnowledgeBase


class BM25Retriever(Retriever):
    """Okapi BM25 (Lucene variant) over the passages of ``kb``.

    Args:
        kb: the passages; ``with_title`` prepends each passage's title to its indexed text.
        k1, b: the BM25 term-frequency saturation and length normalisation.
        language: Snowball stemmer language (PyStemmer); ``None`` for no stemming.
        stopwords: a bm25s stop-word list name (``"en"``) or ``None``.
    """

    def __init__(
        self,
        kb: KnowledgeBase,
        *,
        k1: float = 1.5,
        b: float = 0.75,
        language: str | None = "english",
        stopwords: str | None = "en",
        with_title: bool = False,
    ):
        import bm25s

        self.kb = kb
        self._bm25s = bm25s
        self._stemmer = None
        if language is not None:
            import Stemmer

            self._stemmer = Stemmer.Stemmer(language)
        self._stopwords = stopwords or []
        texts = [f"{p.title}. {p.text}" if with_title and p.title else p.text for p in kb]
        self._index = bm25s.BM25(k1=k1, b=b)
        self._index.index(self._tokenize(texts, return_ids=True), show_progress=False)

    def _tokenize(self, texts: list[str], *, return_ids: bool):
        return self._bm25s.tokenize(
            texts, stopwords=self._stopwords, stemmer=self._stemmer, return_ids=return_ids, show_progress=False
        )

    def score_matrix(self, queries: Sequence[str]) -> np.ndarray:
        """``(Q, N)`` BM25 scores; a query with no indexed term scores 0 everywhere."""
        scores = np.zeros((len(queries), len(self.kb)), dtype=np.float32)
        for row, tokens in zip(scores, self._tokenize(list(queries), return_ids=False)):
            if tokens:
                row[:] = self._index.get_scores(tokens)
        return scores
