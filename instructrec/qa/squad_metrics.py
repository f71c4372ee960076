"""SQuAD v1.1 and v2.0 scoring that gives exactly the numbers of the official evaluation scripts.

Why our own copy: the official scripts (``evaluate-v1.1.py``, ``evaluate-v2.0.py``) are command-line
programs that read files and print; training needs the same EM/F1 from in-memory predictions, and
the CLI needs them without shelling out. Every published number is compared against the official
scripts, so this module follows them to the last floating-point operation: the same normalisation,
the same ``max`` over references, the same summation order (question order of the data file), the
same integer/float mix. ``tests/test_squad_metrics.py`` runs both on real data and asserts equal JSON.

The two versions differ in more than the no-answer handling, and the differences are kept:

- v1.1: references are every answer text; an answer that normalises to nothing scores F1 0; a
  question without a prediction scores 0 (a warning goes to stderr).
- v2.0: references that normalise to nothing are dropped (no reference left: the only right answer
  is ``""``); F1 is 1 when both sides are empty; every question needs a prediction; with
  no-answer probabilities, the best threshold and its EM/F1 are searched as the official script does.

Plain Python: no numpy, no torch.
"""

from __future__ import annotations

import re
import string
import sys
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

Question = tuple[str, list[str]]  # (question id, reference answer texts; empty for no answer)

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, drop ASCII punctuation, the articles a/an/the and extra white space."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def exact_match(prediction: str, reference: str) -> int:
    return int(normalize_answer(prediction) == normalize_answer(reference))


def f1_v1(prediction: str, reference: str) -> float:
    """Token F1 as v1.1 computes it: 0 when nothing is shared, even if both sides are empty."""
    predicted, gold = normalize_answer(prediction).split(), normalize_answer(reference).split()
    same = sum((Counter(predicted) & Counter(gold)).values())
    if same == 0:
        return 0
    precision, recall = 1.0 * same / len(predicted), 1.0 * same / len(gold)
    return (2 * precision * recall) / (precision + recall)


def f1_v2(prediction: str, reference: str) -> float:
    """Token F1 as v2.0 computes it: an empty side scores 1 if the other is empty too, else 0."""
    gold, predicted = answer_tokens(reference), answer_tokens(prediction)
    same = sum((Counter(gold) & Counter(predicted)).values())
    if len(gold) == 0 or len(predicted) == 0:
        return int(gold == predicted)
    if same == 0:
        return 0
    precision, recall = 1.0 * same / len(predicted), 1.0 * same / len(gold)
    return (2 * precision * recall) / (precision + recall)


def questions_of(dataset: Sequence[Mapping[str, Any]]) -> list[Question]:
    """(id, reference texts) per question of a SQuAD file's ``data`` list, in file order."""
    return [
        (qa["id"], [answer["text"] for answer in qa["answers"]])
        for article in dataset
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    ]


def evaluate_v1(questions: Iterable[Question], predictions: Mapping[str, str]) -> dict[str, float]:
    """``{"exact_match", "f1"}`` in percent, as ``evaluate-v1.1.py`` prints them."""
    exact = f1 = total = 0
    for qid, references in questions:
        total += 1
        if qid not in predictions:
            print(f"Unanswered question {qid} will receive score 0.", file=sys.stderr)
            continue
        prediction = _text(predictions, qid)
        exact += max(exact_match(prediction, reference) for reference in references)
        f1 += max(f1_v1(prediction, reference) for reference in references)
    if total == 0:
        raise ValueError("no questions to evaluate")
    return {"exact_match": 100.0 * exact / total, "f1": 100.0 * f1 / total}


def evaluate_v2(
    questions: Iterable[Question],
    predictions: Mapping[str, str],
    na_probs: Mapping[str, float] | None = None,
    na_prob_thresh: float = 1.0,
) -> dict[str, float]:
    """The dict ``evaluate-v2.0.py`` prints (without its precision-recall plots).

    Keys: ``exact, f1, total``, then ``HasAns_*`` and ``NoAns_*`` where the data has such
    questions, then, when ``na_probs`` (question id -> no-answer score) is given, ``best_exact,
    best_exact_thresh, best_f1, best_f1_thresh``: the threshold on ``na_probs`` above which
    answering ``""`` scores best. A question whose ``na_probs`` exceeds ``na_prob_thresh`` counts
    as answered ``""``.

    Raises:
        ValueError: a question without a prediction or without a no-answer score (the official
            script crashes there).
    """
    questions = list(questions)
    has_answer = {qid: bool(references) for qid, references in questions}
    exact_raw, f1_raw = _raw_scores_v2(questions, predictions)
    if na_probs is None:
        na_probs = {qid: 0.0 for qid in predictions}
    missing = [qid for qid in exact_raw if qid not in na_probs]
    if missing:
        raise ValueError(f"{len(missing)} questions have no no-answer probability, e.g. {missing[0]!r}")
    exact = _apply_threshold(exact_raw, na_probs, has_answer, na_prob_thresh)
    f1 = _apply_threshold(f1_raw, na_probs, has_answer, na_prob_thresh)

    result = _summary(exact, f1)
    for prefix, wanted in (("HasAns", True), ("NoAns", False)):
        subset = [qid for qid, answerable in has_answer.items() if answerable is wanted]
        if subset:
            result.update({f"{prefix}_{key}": value for key, value in _summary(exact, f1, subset).items()})
    return result


def best_thresholds(
    questions: Iterable[Question],
    predictions: Mapping[str, str],
    na_probs: Mapping[str, float],
) -> dict[str, float]:
    """``best_exact, best_exact_thresh, best_f1, best_f1_thresh`` as ``evaluate-v2.0.py`` finds them.

    Walking the questions by increasing ``na_probs``, each threshold answers ``""`` for every
    question above it; the best score and the threshold reaching it are returned (the first one
    reached on ties; 0.0 when answering ``""`` everywhere is best).
    """
    questions = list(questions)
    has_answer = {qid: bool(references) for qid, references in questions}
    exact_raw, f1_raw = _raw_scores_v2(questions, predictions)
    best_exact, exact_thresh = _best_threshold(predictions, exact_raw, na_probs, has_answer)
    best_f1, f1_thresh = _best_threshold(predictions, f1_raw, na_probs, has_answer)
    return {
        "best_exact": best_exact,
        "best_exact_thresh": exact_thresh,
        "best_f1": best_f1,
        "best_f1_thresh": f1_thresh,
    }


def evaluate(
    dataset: Sequence[Mapping[str, Any]],
    predictions: Mapping[str, str],
    *,
    version: str = "1.1",
    na_probs: Mapping[str, float] | None = None,
    na_prob_thresh: float = 1.0,
) -> dict[str, float]:
    """Score ``predictions`` (question id -> answer text) on a SQuAD file's ``data`` list.

    ``version="1.1"`` returns what ``evaluate-v1.1.py`` prints; ``"2.0"`` what ``evaluate-v2.0.py``
    prints, the best thresholds included when ``na_probs`` is given.
    """
    questions = questions_of(dataset)
    if version == "1.1":
        if na_probs is not None:
            raise ValueError("no-answer probabilities need version 2.0")
        return evaluate_v1(questions, predictions)
    if version != "2.0":
        raise ValueError(f"unknown SQuAD version {version!r}: expected '1.1' or '2.0'")
    result = evaluate_v2(questions, predictions, na_probs, na_prob_thresh)
    if na_probs is not None:
        result.update(best_thresholds(questions, predictions, na_probs))
    return result


# -- the steps of evaluate-v2.0.py -----------------------------------------------------------------


def _text(predictions: Mapping[str, str], qid: str) -> str:
    prediction = predictions[qid]
    if not isinstance(prediction, str):
        raise ValueError(f"the prediction for {qid!r} is {type(prediction).__name__}, not a string")
    return prediction


def _raw_scores_v2(questions: list[Question], predictions: Mapping[str, str]) -> tuple[dict, dict]:
    """Per-question EM and F1 before any no-answer threshold, in question order."""
    exact, f1 = {}, {}
    missing = []
    for qid, references in questions:
        references = [reference for reference in references if normalize_answer(reference)] or [""]
        if qid not in predictions:
            missing.append(qid)
            continue
        prediction = _text(predictions, qid)
        exact[qid] = max(exact_match(reference, prediction) for reference in references)
        f1[qid] = max(f1_v2(prediction, reference) for reference in references)
    if missing:
        raise ValueError(
            f"{len(missing)} questions have no prediction, e.g. {missing[0]!r}: SQuAD 2.0 scores every question "
            "(predict '' for no answer)"
        )
    return exact, f1


def _apply_threshold(scores: dict, na_probs: Mapping[str, float], has_answer: dict, threshold: float) -> dict:
    return {
        qid: float(not has_answer[qid]) if na_probs[qid] > threshold else score for qid, score in scores.items()
    }


def _summary(exact: dict, f1: dict, subset: list[str] | None = None) -> dict[str, float]:
    if not subset:
        total = len(exact)
        return {"exact": 100.0 * sum(exact.values()) / total, "f1": 100.0 * sum(f1.values()) / total, "total": total}
    total = len(subset)
    return {
        "exact": 100.0 * sum(exact[qid] for qid in subset) / total,
        "f1": 100.0 * sum(f1[qid] for qid in subset) / total,
        "total": total,
    }


def _best_threshold(
    predictions: Mapping[str, str], scores: dict, na_probs: Mapping[str, float], has_answer: dict
) -> tuple[float, float]:
    """(best score in percent, its threshold): ``find_best_thresh`` of the official script."""
    current = best = sum(1 for answerable in has_answer.values() if not answerable)
    threshold = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        if has_answer[qid]:
            current += scores[qid]
        elif predictions[qid]:
            current += -1
        if current > best:
            best, threshold = current, na_probs[qid]
    return 100.0 * best / len(scores), threshold
