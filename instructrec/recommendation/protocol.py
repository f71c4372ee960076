"""The evaluation protocol of sequential recommendation, as the field reports it:

* implicit feedback: every rating is an interaction;
* leave-one-out by time: a user's last interaction is the test item, the one before it the
  validation item, the rest (in time order) the training history. Interactions that share a
  timestamp keep the data file's order (MovieLens-100K: for 415 of 943 users the test and
  validation items share a timestamp, so some order must be chosen; this one is documented and
  stable);
* sampled ranking: the true item against ``negatives`` (99) items the user never interacted with,
  drawn uniformly with a seeded generator, once, and saved (:func:`save_candidates`), so that
  every system is scored on exactly the same lists;
* metrics (:func:`rank_metrics`): HR@k, NDCG@k and MRR of the true item's rank, ties counted at
  their expected value (a true item tied with ``t`` others at rank ``r`` averages over ranks ``r``
  to ``r + t``), so a constant scorer earns chance, not luck;
* full ranking over every item the user has not seen in training (HR@10, NDCG@10) for a
  retrieval stage (:func:`full_rank_metrics`);
* cold start (:func:`cold_users`, :func:`warm_cold_metrics`): the same metrics over the users whose
  true item has fewer than ``threshold`` (5) training interactions, and over the others. An id-based
  model has barely seen such an item; a text-based one reads its title and genres, so this is where
  the two should differ, and an average over all users hides it (12 of MovieLens' 943 test users).
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from instructrec.errors import InputError
from instructrec.recommendation.movielens import Interaction

CUTOFFS = (1, 5, 10)


@dataclass
class Split:
    """Per user: the training history (items in time order), the validation and the test item."""

    train: dict[str, list[str]]
    valid: dict[str, str]
    test: dict[str, str]


def leave_one_out(interactions: Iterable[Interaction]) -> Split:
    by_user: dict[str, list[Interaction]] = {}
    for interaction in interactions:
        by_user.setdefault(interaction.user, []).append(interaction)
    split = Split({}, {}, {})
    for user, events in by_user.items():
        items = [e.item for e in sorted(events, key=lambda e: (e.timestamp, e.line))]
        if len(items) < 3:
            split.train[user] = items
            continue
        split.train[user], split.valid[user], split.test[user] = items[:-2], items[-2], items[-1]
    return split


def user_history(split: Split, user: str, stage: str = "test", length: int | None = None) -> list[str]:
    """The items a scorer may see of ``user`` when ranking the ``stage`` item, oldest first (the last
    ``length`` of them): for ``test``, the training history and the validation item (everything
    before the test item); for ``val``, the training history alone."""
    if stage not in ("test", "val"):
        raise ValueError(f"stage must be 'test' or 'val', got {stage!r}")
    if user not in split.train:
        raise InputError(f"unknown user {user!r}: not in the split's training data")
    items = split.train[user] + ([split.valid[user]] if stage == "test" and user in split.valid else [])
    if not items:
        raise InputError(f"user {user!r} has an empty history: nothing to recommend from")
    return items[-length:] if length else items


def sample_candidates(split: Split, items: Sequence[str], stage: str = "test", negatives: int = 99, seed: int = 0) -> dict[str, list[str]]:
    """Per evaluated user: ``[true item, negatives...]``, the negatives drawn uniformly from the
    items the user never interacted with (in any split), with ``random.Random(seed)``, users in
    sorted order (so the lists do not depend on dict order)."""
    rng = random.Random(seed)
    targets = split.test if stage == "test" else split.valid
    catalogue = sorted(set(items))
    lists = {}
    for user in sorted(targets, key=user_order):
        seen = set(split.train.get(user, [])) | {split.valid.get(user), split.test.get(user)}
        pool = [item for item in catalogue if item not in seen]
        if len(pool) < negatives:
            raise ValueError(f"user {user} has only {len(pool)} unseen items for {negatives} negatives")
        lists[user] = [targets[user], *rng.sample(pool, negatives)]
    return lists


def user_order(key: str):
    """Sort key: numeric ids by value, then the others (users "2" before "10")."""
    return (0, int(key)) if key.isdigit() else (1, key)


def save_candidates(path: str | Path, candidates: dict[str, list[str]], meta: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "candidates": candidates}) + "\n", encoding="utf-8")
    return path


def load_candidates(path: str | Path) -> tuple[dict[str, list[str]], dict]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return data["candidates"], data["meta"]


def expected_rank(scores: Sequence[float], target: int = 0) -> tuple[int, int]:
    """``(r, t)``: the target's best possible 0-based rank and how many others tie with it."""
    mine = scores[target]
    higher = sum(1 for i, s in enumerate(scores) if i != target and s > mine)
    ties = sum(1 for i, s in enumerate(scores) if i != target and s == mine)
    return higher, ties


def rank_metrics(ranks: Iterable[tuple[int, int]], cutoffs: Sequence[int] = CUTOFFS) -> dict[str, float]:
    """HR@k, NDCG@k (k in ``cutoffs``, NDCG for k >= 5) and MRR over ``(rank, ties)`` pairs, each
    tied placement equally likely."""
    totals: dict[str, float] = {}
    count = 0
    for higher, ties in ranks:
        count += 1
        places = range(higher, higher + ties + 1)
        weight = 1.0 / len(places)
        for k in cutoffs:
            totals[f"hr@{k}"] = totals.get(f"hr@{k}", 0.0) + weight * sum(1 for p in places if p < k)
            if k >= 5:
                totals[f"ndcg@{k}"] = totals.get(f"ndcg@{k}", 0.0) + weight * sum(1 / math.log2(p + 2) for p in places if p < k)
        totals["mrr"] = totals.get("mrr", 0.0) + weight * sum(1 / (p + 1) for p in places)
    return {name: value / count for name, value in sorted(totals.items())} if count else {}


def evaluate(score: Callable[[str, list[str]], Sequence[float]], candidates: dict[str, list[str]]) -> dict[str, float]:
    """A scorer (``score(user, items) -> one score per item``, higher = better) on saved
    candidate lists (the true item first)."""
    return rank_metrics(expected_rank(score(user, items), 0) for user, items in candidates.items())


def full_rank_metrics(score: Callable[[str, list[str]], Sequence[float]], split: Split, items: Sequence[str],
                      stage: str = "test", k: int = 10, users: Iterable[str] | None = None) -> dict[str, float]:
    """HR@k and NDCG@k of the true item ranked among every item not in the user's training history
    (``users``: only these, e.g. the :func:`cold_users`)."""
    targets = split.test if stage == "test" else split.valid
    if users is not None:
        targets = {user: targets[user] for user in users if user in targets}
    catalogue = sorted(set(items))
    ranks = []
    for user, target in targets.items():
        seen = set(split.train.get(user, []))
        pool = [target] + [i for i in catalogue if i not in seen and i != target]
        ranks.append(expected_rank(score(user, pool), 0))
    metrics = rank_metrics(ranks, cutoffs=(k,))
    return {name: value for name, value in metrics.items() if name in (f"hr@{k}", f"ndcg@{k}")}


def training_counts(split: Split) -> Counter:
    """Each item's interactions in the training split (every user's training history; the validation
    and test items are not counted): the popularity a system may know, and what makes an item cold."""
    return Counter(item for history in split.train.values() for item in history)


def cold_users(split: Split, threshold: int = 5, stage: str = "test") -> set[str]:
    """The evaluated users whose true item has fewer than ``threshold`` interactions in the training
    split (:func:`training_counts`)."""
    counts = training_counts(split)
    targets = split.test if stage == "test" else split.valid
    return {user for user, item in targets.items() if counts[item] < threshold}


def warm_cold_metrics(score: Callable[[str, list[str]], Sequence[float]], candidates: dict[str, list[str]], split: Split,
                      threshold: int = 5, stage: str = "test") -> dict[str, dict[str, float]]:
    """:func:`evaluate` separately over the cold users (:func:`cold_users`) and the warm ones (the
    rest of ``candidates``): ``{"warm": metrics, "cold": metrics}`` (a subset without users: ``{}``)."""
    cold = cold_users(split, threshold, stage)
    return {name: evaluate(score, {u: c for u, c in candidates.items() if (u in cold) == (name == "cold")})
            for name in ("warm", "cold")}
