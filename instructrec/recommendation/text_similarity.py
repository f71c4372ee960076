"""``ItemTextSimilarity``: a content-based recommender over item texts, the fast first stage.

Every item's text (``Toy Story (1995; Animation, Children's, Comedy)``) is embedded once by the
dense retriever (:class:`~instructrec.retrieval.dense.DenseRetriever`: mean-pooled, unit-length
MiniLM vectors, cached on disk); a user's profile is the normalised mean of the embeddings of the
last ``history_length`` items they interacted with, and an item's score is its cosine with the
profile. Scoring 100 candidates is then one small matrix-vector product, and full ranking over
every item costs no more per item, which is what a candidate generator for a slower ranker needs.
It never sees an interaction count, so an item with none is ranked by its text alone (the cold
items of :func:`~.protocol.cold_users`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch

from instructrec.errors import InputError
from instructrec.recommendation.movielens import Movie
from instructrec.recommendation.protocol import Split, user_history
from instructrec.retrieval.dense import DenseRetriever
from instructrec.retrieval.knowledge_base import KnowledgeBase, Passage


class ItemTextSimilarity:
    """Scores items by the cosine between their text embedding and the user's profile.

    Args:
        movies: item id -> :class:`Movie` (every item that may be scored).
        split: the users' histories.
        backbone: the encoder (:func:`instructrec.backbones.load_encoder` names; default MiniLM-L6),
            or ``encoder`` and ``tokenizer`` already loaded (``model_id`` then names them for the cache).
        history_length: the last items of a user's history that make the profile (``None``: all).
        stage: ``test``: the history includes the validation item; ``val``: training history only.
        cache_dir: where the item embeddings are kept between runs (``None``: recomputed).
    """

    def __init__(self, movies: Mapping[str, Movie], split: Split, *, backbone: str = "minilm-l6", encoder=None,
                 tokenizer=None, model_id: str | None = None, history_length: int | None = 10, stage: str = "test",
                 cache_dir: str | Path | None = None, progress: bool = True) -> None:
        if not movies:
            raise InputError("no items to score: the movies mapping is empty")
        self.split, self.history_length, self.stage = split, history_length, stage
        items = KnowledgeBase(Passage(item, movie.text()) for item, movie in movies.items())
        self.retriever = DenseRetriever(items, backbone, encoder=encoder, tokenizer=tokenizer, model_id=model_id,
                                        cache_dir=cache_dir, max_length=64, batch_size=64, progress=progress)
        self.items = items
        self.embeddings = self.retriever.passage_embeddings  # (items, hidden), unit rows

    def rows(self, items: Sequence[str]) -> torch.Tensor:
        unknown = [item for item in items if item not in self.items]
        if unknown:
            raise InputError(f"unknown item(s) {unknown[:5]}: not in the movies")
        return torch.tensor([self.items.position(item) for item in items], dtype=torch.long)

    def profile(self, user: str) -> torch.Tensor:
        """The user's unit profile vector: the normalised mean of their recent items' embeddings."""
        history = user_history(self.split, user, self.stage, self.history_length)
        return torch.nn.functional.normalize(self.embeddings[self.rows(history)].mean(0), dim=0)

    def score(self, user: str, items: Sequence[str]) -> list[float]:
        """Cosine of each item with ``user``'s profile (higher = better), as the protocol's scorers give."""
        return (self.embeddings[self.rows(items)] @ self.profile(user)).tolist()

    __call__ = score
