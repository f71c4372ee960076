"""``ItemTextSimilarity``: a recommender over item texts, the fast first stage.

Every item's text (``Toy Story (1995; Animation, Children's, Comedy)``) is embedded once by the
dense retriever (:class:`~instructrec.retrieval.dense.DenseRetriever`: mean-pooled, unit-length
vectors, cached on disk); a user's profile is either the normalised mean of the embeddings of the
last ``history_length`` items they interacted with (``profile="items"``: content-based, works
with the untrained MiniLM) or the embedding of their history as one text (``"history_text"``: the
user tower of a trained :class:`~.two_tower.TwoTowerModule`, :meth:`ItemTextSimilarity.from_two_tower`),
and an item's score is its cosine with the profile. Scoring 100 candidates is then one small
matrix-vector product, and full ranking over every item costs no more per item, which is what a
candidate generator for a slower ranker needs. By default it never sees an interaction count, so an
item with none is ranked by its text alone (the cold items of :func:`~.protocol.cold_users`).

``popularity_weight`` adds ``weight * log(1 + training interactions of the item)`` to ``cosine /
temperature``. A two-tower model trained with in-batch negatives learns, for a softmax over items
sampled in proportion to their popularity, roughly ``log p(item | user) - log q(item)``: the
popularity is divided out (the sampling bias of Yi et al., 2019, "Sampling-Bias-Corrected Neural
Modeling for Large Corpus Item Recommendations"), and weight 1 with the model's temperature adds it
back. It also takes back the text's one advantage: an item nobody has seen is pushed down, so choose
the weight on validation (:meth:`ItemTextSimilarity.reweighted`) and report cold users apart.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import torch

from instructrec.errors import InputError
from instructrec.recommendation.movielens import Movie
from instructrec.recommendation.protocol import Split, training_counts, user_history
from instructrec.recommendation.two_tower import history_text
from instructrec.retrieval.dense import DenseRetriever, encode_texts
from instructrec.retrieval.knowledge_base import KnowledgeBase, Passage


PROFILES = ("items", "history_text")


class ItemTextSimilarity:
    """Scores items by the cosine between their text embedding and the user's profile.

    Args:
        movies: item id -> :class:`Movie` (every item that may be scored).
        split: the users' histories.
        backbone: the encoder (:func:`instructrec.backbones.load_encoder` names; default MiniLM-L6),
            or ``encoder`` and ``tokenizer`` already loaded (``model_id`` then names them for the cache).
        history_length: the last items of a user's history that make the profile (``None``: all).
        profile: ``items`` (mean of the items' embeddings) or ``history_text`` (the history's text,
            :func:`~.two_tower.history_text`, embedded; truncated from the left to ``max_query_length``).
        stage: ``test``: the history includes the validation item; ``val``: training history only.
        temperature: scores are ``cosine / temperature`` (a two-tower model's training temperature).
        popularity_weight: the weight of ``log(1 + training interactions)`` added to each score (0: none).
        cache_dir: where the item embeddings are kept between runs (``None``: recomputed).
    """

    def __init__(self, movies: Mapping[str, Movie], split: Split, *, backbone: str = "minilm-l6", encoder=None,
                 tokenizer=None, model_id: str | None = None, history_length: int | None = 10, stage: str = "test",
                 profile: str = "items", max_query_length: int = 192, temperature: float = 1.0,
                 popularity_weight: float = 0.0, cache_dir: str | Path | None = None, progress: bool = True) -> None:
        if not movies:
            raise InputError("no items to score: the movies mapping is empty")
        if profile not in PROFILES:
            raise InputError(f"profile must be one of {PROFILES}, got {profile!r}")
        self.movies, self.split, self.history_length, self.stage = movies, split, history_length, stage
        self.profile_kind, self.max_query_length = profile, max_query_length
        self._profiles: dict[str, torch.Tensor] = {}
        items = KnowledgeBase(Passage(item, movie.text()) for item, movie in movies.items())
        self.retriever = DenseRetriever(items, backbone, encoder=encoder, tokenizer=tokenizer, model_id=model_id,
                                        cache_dir=cache_dir, max_length=64, batch_size=64, progress=progress)
        self.items = items
        self.embeddings = self.retriever.passage_embeddings  # (items, hidden), unit rows
        if temperature <= 0:
            raise InputError(f"temperature must be positive, got {temperature}")
        self.temperature, self.popularity_weight = temperature, popularity_weight
        counts = training_counts(split)
        self.log_popularity = torch.tensor([math.log1p(counts.get(p.id, 0)) for p in items])
        if profile == "history_text":
            import copy

            self.query_tokenizer = copy.deepcopy(self.retriever.tokenizer)
            self.query_tokenizer.truncation_side = "left"  # as in training (two_tower.query_tokenizer): the latest items stay

    @classmethod
    def from_two_tower(cls, checkpoint: str | Path, movies: Mapping[str, Movie], split: Split, *,
                       history_length: int | None = None, **options) -> "ItemTextSimilarity":
        """The trained two-tower model of ``checkpoint`` (read by the safe loader) as a scorer, with
        the history length and query length it was trained with unless given."""
        from instructrec.models.checkpoints import load_module, read_checkpoint
        from instructrec import backbones

        saved = read_checkpoint(checkpoint)
        model = load_module(checkpoint)
        data = (saved.get("datamodule_hyper_parameters") or {})
        backbone = model.hparams["backbone"]
        options.setdefault("max_query_length", int(data.get("max_query_length", 192)))
        options.setdefault("temperature", float(model.hparams["temperature"]))
        return cls(movies, split, encoder=model.encoder, tokenizer=backbones.load_tokenizer(backbone),
                   model_id=f"two-tower|{Path(checkpoint).resolve()}|{Path(checkpoint).stat().st_mtime_ns}",
                   history_length=history_length or int(data.get("history_length", 10)), profile="history_text",
                   **options)

    def reweighted(self, popularity_weight: float) -> "ItemTextSimilarity":
        """This scorer with another popularity weight, sharing its item embeddings and user profiles
        (a weight sweep encodes each user once)."""
        import copy

        scorer = copy.copy(self)
        scorer.popularity_weight = popularity_weight
        return scorer

    def rows(self, items: Sequence[str]) -> torch.Tensor:
        unknown = [item for item in items if item not in self.items]
        if unknown:
            raise InputError(f"unknown item(s) {unknown[:5]}: not in the movies")
        return torch.tensor([self.items.position(item) for item in items], dtype=torch.long)

    def profile(self, user: str) -> torch.Tensor:
        """The user's unit profile vector (computed once per user)."""
        if user not in self._profiles:
            history = user_history(self.split, user, self.stage, self.history_length)
            if self.profile_kind == "items":
                vector = torch.nn.functional.normalize(self.embeddings[self.rows(history)].mean(0), dim=0)
            else:
                self.rows(history)  # unknown items are refused here too
                text = history_text([self.movies[item].text() for item in history])
                vector = encode_texts(self.retriever.encoder, self.query_tokenizer, [text],
                                      max_length=self.max_query_length, progress=False)[0]
            self._profiles[user] = vector
        return self._profiles[user]

    def score(self, user: str, items: Sequence[str]) -> list[float]:
        """``cosine / temperature (+ popularity_weight * log(1 + count))`` of each item for ``user``
        (higher = better), as the protocol's scorers give."""
        rows = self.rows(items)
        scores = self.embeddings[rows] @ self.profile(user) / self.temperature
        if self.popularity_weight:
            scores = scores + self.popularity_weight * self.log_popularity[rows]
        return scores.tolist()

    __call__ = score
