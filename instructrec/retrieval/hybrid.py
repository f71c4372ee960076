"""Hybrid retrieval: lexical and dense scores fused per query.

BM25 and dense retrievers fail on different questions (BM25 on paraphrases, dense on rare names and
numbers), so a fusion of the two beats both. Their scores live on different scales (BM25 is
unbounded, cosine is in [-1, 1]), so each retriever's scores are first normalised per query:

- ``"zscore"``: ``(s - mean) / std`` over the passages: how far a passage stands out;
- ``"minmax"``: ``(s - min) / (max - min)``: the best passage at 1, the worst at 0;
- ``"rrf"``: reciprocal rank fusion, ``1 / (rrf_k + rank)``: ranks only, scores ignored;

and then added with ``weights``. The weights are tuned on data the recall is not reported on
(``experiments/retrieval_squad`` tunes on SQuAD dev part 1 and reports part 2).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from instructrec.retrieval.base import Retriever

NORMALISATIONS = ("zscore", "minmax", "rrf")


def normalise(scores: np.ndarray, how: str, *, rrf_k: float = 60.0) -> np.ndarray:
    """``(Q, N)`` scores normalised per row (see the module docstring)."""
    scores = np.asarray(scores, dtype=np.float64)
    if how == "zscore":
        std = scores.std(axis=1, keepdims=True)
        return (scores - scores.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)
    if how == "minmax":
        low, high = scores.min(axis=1, keepdims=True), scores.max(axis=1, keepdims=True)
        return (scores - low) / np.where(high > low, high - low, 1.0)
    if how == "rrf":
        order = np.argsort(-scores, axis=1, kind="stable")
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(scores.shape[1])[None, :].repeat(len(scores), 0), axis=1)
        return 1.0 / (rrf_k + ranks + 1)
    raise ValueError(f"unknown normalisation {how!r}; expected one of {NORMALISATIONS}")


def fuse(
    matrices: Sequence[np.ndarray], weights: Sequence[float], how: str = "zscore", *, rrf_k: float = 60.0
) -> np.ndarray:
    """The weighted sum of the normalised score matrices."""
    if len(matrices) != len(weights):
        raise ValueError(f"{len(matrices)} score matrices for {len(weights)} weights")
    return sum(w * normalise(m, how, rrf_k=rrf_k) for m, w in zip(matrices, weights))


class HybridRetriever(Retriever):
    """A weighted fusion of retrievers over the same knowledge base.

    Args:
        retrievers: e.g. ``[BM25Retriever(kb), DenseRetriever(kb)]``.
        weights: one per retriever (default: equal).
        normalisation: ``"zscore"``, ``"minmax"`` or ``"rrf"``.
    """

    def __init__(
        self,
        retrievers: Sequence[Retriever],
        weights: Sequence[float] | None = None,
        *,
        normalisation: str = "zscore",
        rrf_k: float = 60.0,
    ):
        if not retrievers:
            raise ValueError("a hybrid needs at least one retriever")
        kb = retrievers[0].kb
        if any(len(r.kb) != len(kb) for r in retrievers):
            raise ValueError("the retrievers of a hybrid must share one knowledge base")
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation {normalisation!r}; expected one of {NORMALISATIONS}")
        self.kb, self.retrievers = kb, list(retrievers)
        self.weights = list(weights) if weights is not None else [1.0] * len(retrievers)
        self.normalisation, self.rrf_k = normalisation, rrf_k

    def score_matrix(self, queries: Sequence[str]) -> np.ndarray:
        matrices = [r.score_matrix(queries) for r in self.retrievers]
        return fuse(matrices, self.weights, self.normalisation, rrf_k=self.rrf_k)
