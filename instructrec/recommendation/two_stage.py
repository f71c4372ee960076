"""Scorers made of scorers.

* :class:`Reranked`, two-stage ranking: a fast first stage (popularity, the two-tower) orders every
  candidate, a slow second stage (the instruction ranker, a cross-encoder) re-orders only the first
  stage's top ``k``. This is how a cross-encoder ranks a catalogue at all: on 2 CPU cores the
  instruction ranker reads 25-70 candidates a second (10 or 5 items of history), the two-tower
  thousands (``experiments/benchmarks/rec_scoring.txt``).
* :class:`ColdSlot`, a place kept for a cold item: a popularity-aware ranking with the best cold
  candidate by text alone put at a fixed position.
"""

from __future__ import annotations

from typing import Callable, Sequence

from instructrec.recommendation.protocol import Split, training_counts

Scorer = Callable[[str, Sequence[str]], Sequence[float]]


def _scores(scorer: Scorer, user: str, items: Sequence[str], what: str) -> list[float]:
    """``scorer``'s scores for ``items`` as floats, one per item."""
    scores = [float(s) for s in scorer(user, items)]
    if len(scores) != len(items):
        raise ValueError(f"{what} gave {len(scores)} scores for {len(items)} items")
    return scores


def _ranks(keys: list) -> list[float]:
    """Each key's rank among the distinct keys (0 = last) as a score: equal keys stay tied, so the
    protocol's tie-aware metrics read them like any scorer's."""
    rank = {key: place for place, key in enumerate(sorted(set(keys)))}
    return [float(rank[key]) for key in keys]


class Memoised:
    """``scorer`` with its scores kept per ``(user, item)``, for a slow scorer asked again about the
    same items: the candidate lists of several seeds and the full ranking share most of a user's
    top items. The scorer must score a user the same way on every call (same history, same stage)."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self.scores: dict[tuple[str, str], float] = {}

    def __call__(self, user: str, items: Sequence[str]) -> list[float]:
        unscored = list(dict.fromkeys(item for item in items if (user, item) not in self.scores))
        if unscored:
            self.scores.update(((user, item), float(s)) for item, s in zip(unscored, self.scorer(user, unscored)))
        return [self.scores[(user, item)] for item in items]


class Reranked:
    """A scorer (``score(user, items) -> one score per item``, higher = better) made of two.

    ``first`` scores every item; its top ``k``, together with every item tied with the ``k``-th
    (so that a tie, which the protocol counts at its expected rank, never decides which items reach
    the second stage), are re-ordered and placed above all the others, which keep the first stage's
    order. The re-ordering is by ``second`` alone, or with ``blend = w`` by ``first + w * second``
    (the first stage's evidence kept: a popularity-aware first stage knows what a text ranker
    trained on few examples does not). The scores returned are ranks (0 = last): equal keys stay
    tied, so the protocol's tie-aware metrics read them like any scorer's.

    ``second`` is :class:`Memoised` (pass one to share its scores between several ``Reranked``).
    """

    def __init__(self, first: Scorer, second: Scorer, k: int = 20, blend: float | None = None) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.first, self.k, self.blend = first, k, blend
        self.second = second if isinstance(second, Memoised) else Memoised(second)

    def __call__(self, user: str, items: Sequence[str]) -> list[float]:
        first = _scores(self.first, user, items, "the first stage")
        top = sorted(self.reaching_second_stage(first))
        second = dict(zip(top, self.second(user, [items[i] for i in top])))
        keys = [(1, self._reordered(first[i], second[i])) if i in second else (0, first[i]) for i in range(len(items))]
        return _ranks(keys)

    def _reordered(self, first: float, second: float) -> float:
        return second if self.blend is None else first + self.blend * second

    def reaching_second_stage(self, first: Sequence[float]) -> set[int]:
        """Positions of the first stage's top ``k`` scores and of every score tied with the ``k``-th."""
        if len(first) <= self.k:
            return set(range(len(first)))
        threshold = sorted(first, reverse=True)[self.k - 1]
        return {i for i, score in enumerate(first) if score >= threshold}

    score = __call__


class ColdSlot:
    """A popularity-aware ranking with one place kept for a cold item.

    An item with fewer than ``threshold`` training interactions (:func:`~.protocol.training_counts`)
    is cold. A ranker that knows popularity (the two-tower + log popularity) puts such an item under
    nearly every candidate, because few interactions are all it knows of it; a scorer that never
    sees counts (the two-tower alone) still reads its title and genres. ``ranked`` orders the items;
    the cold candidate that ``text`` scores highest is placed at ``position`` (1 = first) unless
    ``ranked`` already puts it there or higher; every other item keeps its order, one place lower
    from the slot on. Cold candidates tied for the best text score are all placed there (still tied:
    the candidate list's order never decides, and the true item comes first in the protocol's
    lists). The price is one place of the top ``position`` for the warm items: the trade is measured
    in ``experiments/rec_movielens``. The scores returned are ranks (0 = last), ties kept.
    """

    def __init__(self, ranked: Scorer, text: Scorer, split: Split, threshold: int = 5, position: int = 10) -> None:
        if position < 1:
            raise ValueError(f"position must be at least 1, got {position}")
        self.ranked, self.text, self.threshold, self.position = ranked, text, threshold, position
        self.counts = training_counts(split)

    def __call__(self, user: str, items: Sequence[str]) -> list[float]:
        scores = _scores(self.ranked, user, items, "the ranking")
        keys = [(score, 0) for score in scores]
        cold = [i for i, item in enumerate(items) if self.counts[item] < self.threshold]
        if cold:
            text = _scores(self.text, user, [items[i] for i in cold], "the text scorer")
            best = max(text)
            chosen = {i for i, s in zip(cold, text) if s == best}
            others = sorted((s for i, s in enumerate(scores) if i not in chosen), reverse=True)
            if len(others) >= self.position:
                slot = others[self.position - 1]  # at most position - 1 others score above it
                for i in chosen:
                    if scores[i] <= slot:
                        keys[i] = (slot, 1)  # above every item scoring ``slot``, under any scoring more
        return _ranks(keys)

    score = __call__
