"""Training data for the instruction ranker: next-item yes/no instructions (the ``next_item``
template) from a leave-one-out split, without leakage.

* Training pairs come from the training history only: for each user, the last
  ``positions_per_user`` positions of it, each item a positive (the ``history_length`` items before
  it as history) with ``negatives_per_positive`` negatives;
* validation pairs: the validation item after the whole training history, with as many negatives;
* negatives are items the user never interacted with in any split, drawn with generators seeded
  from ``seed`` (one for training, one for validation, so that changing the training settings
  leaves the validation set as it was), users in id order;
* so a user's test item is never anywhere (not a positive, not in a history, not a negative), and
  the validation item only in the validation file.

Files are written to a run folder, never into the repository: MovieLens may not be redistributed
(:mod:`.movielens`).
"""

from __future__ import annotations

import json
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from instructrec.errors import InputError
from instructrec.hashing import stable_hash
from instructrec.instructions import render
from instructrec.instructions.templates import NextItemTemplate
from instructrec.recommendation.movielens import Movie
from instructrec.recommendation.protocol import Split, user_order


@dataclass(frozen=True)
class Pair:
    """One pointwise example: ``history`` (item ids, oldest first), whether ``candidate`` came next,
    and where: ``position`` is the positive's index in the user's training history (validation:
    the history's length)."""

    user: str
    position: int
    history: tuple[str, ...]
    candidate: str
    label: bool


def sample_pairs(split: Split, items: Sequence[str], *, history_length: int = 10, positions_per_user: int = 20,
                 negatives_per_positive: int = 3, seed: int = 0) -> dict[str, list[Pair]]:
    """``{"train": pairs, "val": pairs}``, each positive followed by its negatives; deterministic
    for a seed (see the module's docstring)."""
    if min(history_length, positions_per_user) < 1 or negatives_per_positive < 0:
        raise InputError("history_length and positions_per_user must be at least 1, negatives_per_positive at least 0")
    catalogue = sorted(set(items))
    streams = {stage: random.Random(stable_hash("next-item", stage, seed)) for stage in ("train", "val")}
    pairs: dict[str, list[Pair]] = {"train": [], "val": []}
    for user in sorted(split.train, key=user_order):
        train = split.train[user]
        seen = {*train, split.valid.get(user), split.test.get(user)}
        pool = [item for item in catalogue if item not in seen]
        if len(pool) < negatives_per_positive:
            raise InputError(f"user {user} has only {len(pool)} unseen items for {negatives_per_positive} negatives")
        targets = [("train", i, train[i]) for i in range(max(1, len(train) - positions_per_user), len(train))]
        if user in split.valid:
            targets.append(("val", len(train), split.valid[user]))
        for stage, position, positive in targets:
            history = tuple(train[max(0, position - history_length):position])
            negatives = streams[stage].sample(pool, negatives_per_positive)
            pairs[stage].append(Pair(user, position, history, positive, True))
            pairs[stage] += [Pair(user, position, history, item, False) for item in negatives]
    return pairs


def write_instruction_files(folder: str | Path, pairs: Mapping[str, list[Pair]], movies: Mapping[str, Movie], *,
                            language: str = "en", seed: int = 0, meta: dict | None = None) -> dict[str, Path]:
    """``train.jsonl`` and ``val.jsonl`` (``{"id", "text"}`` a line, as the data modules read them)
    and ``meta.json`` in ``folder``. Training instructions vary their question by ``(seed, index)``;
    validation ones ask the first question, as the ranker does. Refused inside a git work tree
    unless git ignores the folder."""
    from tqdm.auto import tqdm

    folder = Path(folder)
    _refuse_tracked(folder)
    folder.mkdir(parents=True, exist_ok=True)
    template = NextItemTemplate(language)
    written = {}
    for stage, rows in pairs.items():
        path = written[stage] = folder / f"{stage}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for index, pair in enumerate(tqdm(rows, desc=f"writing {path.name}", unit="instruction", disable=None)):
                record = {"history": [movies[i].text() for i in pair.history], "candidate": movies[pair.candidate].text(),
                          "label": pair.label}
                instruction = template.apply(record, seed=seed, index=index, variant=0 if stage == "val" else None)
                row = {"id": f"{pair.user}/{pair.position}/{pair.candidate}", "text": render(instruction)}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    counts = {stage: {"instructions": len(rows), "positives": sum(p.label for p in rows)} for stage, rows in pairs.items()}
    info = {**(meta or {}), "language": language, "seed": seed, "options": template.options, "counts": counts,
            "license": "MovieLens data: do not redistribute these files (GroupLens' terms)"}
    (folder / "meta.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return written


def _refuse_tracked(folder: Path) -> None:
    """MovieLens rows must not be committed: refuse a folder in a git work tree that git does not
    ignore (``runs/`` is ignored). Without git, or outside a work tree, nothing to check."""
    probe = folder.resolve()
    while not probe.exists():
        probe = probe.parent
    try:
        inside = subprocess.run(["git", "-C", str(probe), "rev-parse", "--is-inside-work-tree"], capture_output=True, text=True)
        if inside.stdout.strip() != "true":
            return
        ignored = subprocess.run(["git", "-C", str(probe), "check-ignore", "-q", str(folder.resolve())], capture_output=True)
    except OSError:  # no git
        return
    if ignored.returncode == 1:
        raise InputError(f"{folder} is inside a git work tree and not ignored: MovieLens data may not be redistributed",
                         hint="write to an ignored folder such as runs/rec/movielens, or outside the repository")

