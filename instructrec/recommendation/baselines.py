"""Baselines scored on the same candidates as every other system."""

from __future__ import annotations

from typing import Sequence

from instructrec.recommendation.protocol import Split, training_counts


class Popularity:
    """Each item's number of interactions in the training split (counted per interaction, not per
    batch: RecBole's stock Pop model undercounts, see the issue's notes)."""

    def __init__(self, split: Split) -> None:
        self.counts = training_counts(split)

    def __call__(self, user: str, items: Sequence[str]) -> list[float]:
        return [float(self.counts.get(item, 0)) for item in items]
