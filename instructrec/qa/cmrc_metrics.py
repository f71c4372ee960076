"""CMRC 2018 scoring as its official script (``cmrc2018_evaluate.py``, v5 - special) computes it.

Why our own copy: the official script is Python 2 (``reload(sys)``, ``str.decode``) and calls
``nltk.word_tokenize``, which needs the ``punkt`` data (a download); SQuAD's EM/F1 are wrong for
Chinese (F1 over white-space tokens sees a whole Chinese answer as one token). The steps follow the
script: lower-case and strip; split into Han characters (U+4E00-U+9FA5) and CMRC's punctuation one
by one, the runs between them into words; F1 from the longest common *contiguous* run of those
segments, punctuation removed, the best over the references; EM after removing the punctuation;
questions without a prediction score 0 and count as skipped.

One deviation: the runs between Han characters are split by nltk's Treebank word tokenizer
without sentence splitting (``word_tokenize(..., preserve_line=True)``), which needs no data; the
official script splits sentences first (punkt), which differs only where a run holds a full stop
followed by more text ("a. b"), rare inside an answer.
"""

from __future__ import annotations

import re
import sys
from typing import Any, Iterable, Mapping, Sequence

Question = tuple[str, list[str]]  # (question id, reference answer texts)

PUNCTUATION = frozenset([
    "-", ":", "_", "*", "^", "/", "\\", "~", "`", "+", "=",
    "，", "。", "：", "？", "！", "“", "”", "；", "’", "《", "》", "……", "·", "、",
    "「", "」", "（", "）", "－", "～", "『", "』",
])  # the official list ("……" never matches one character there either)
_HAN = re.compile("[\u4e00-\u9fa5]")


def _words(text: str) -> list[str]:
    from nltk.tokenize import word_tokenize

    return word_tokenize(text, preserve_line=True)


def mixed_segmentation(text: str, remove_punctuation: bool = False) -> list[str]:
    """Han characters and CMRC punctuation one by one; the text between them as words."""
    segments: list[str] = []
    run = ""
    for char in text.lower().strip():
        if remove_punctuation and char in PUNCTUATION:
            continue
        if _HAN.match(char) or char in PUNCTUATION:
            if run:
                segments.extend(_words(run))
                run = ""
            segments.append(char)
        else:
            run += char
    if run:
        segments.extend(_words(run))
    return segments


def without_punctuation(text: str) -> str:
    return "".join(char for char in text.lower().strip() if char not in PUNCTUATION)


def longest_common_run(first: Sequence[str], second: Sequence[str]) -> int:
    """The length of the longest contiguous run of segments both share (the official ``find_lcs``)."""
    best = 0
    previous = [0] * (len(second) + 1)
    for a in first:
        current = [0] * (len(second) + 1)
        for j, b in enumerate(second):
            if a == b:
                current[j + 1] = previous[j] + 1
                best = max(best, current[j + 1])
        previous = current
    return best


def f1_score(references: Iterable[str], prediction: str) -> float:
    """The best character-level F1 over ``references`` (0 to 1)."""
    predicted = mixed_segmentation(prediction, remove_punctuation=True)
    scores = []
    for reference in references:
        gold = mixed_segmentation(reference, remove_punctuation=True)
        same = longest_common_run(gold, predicted)
        if same == 0:
            scores.append(0.0)
            continue
        precision, recall = 1.0 * same / len(predicted), 1.0 * same / len(gold)
        scores.append((2 * precision * recall) / (precision + recall))
    return max(scores)


def exact_match(references: Iterable[str], prediction: str) -> int:
    predicted = without_punctuation(prediction)
    return int(any(without_punctuation(reference) == predicted for reference in references))


def questions_of(dataset: Sequence[Mapping[str, Any]]) -> list[Question]:
    """(id, reference texts) per question of a CMRC (SQuAD-format) file's ``data`` list."""
    return [
        (qa["id"].strip(), [answer["text"] for answer in qa["answers"]])
        for article in dataset
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    ]


def evaluate(dataset: Sequence[Mapping[str, Any]], predictions: Mapping[str, str]) -> dict[str, float]:
    """``{"f1", "exact_match", "average", "total", "skipped"}`` (percent) as the official script prints."""
    f1 = exact = 0.0
    total = skipped = 0
    for qid, references in questions_of(dataset):
        total += 1
        if qid not in predictions:
            print(f"Unanswered question: {qid}", file=sys.stderr)
            skipped += 1
            continue
        f1 += f1_score(references, str(predictions[qid]))
        exact += exact_match(references, str(predictions[qid]))
    if total == 0:
        raise ValueError("no questions to evaluate")
    f1, exact = 100.0 * f1 / total, 100.0 * exact / total
    return {"f1": f1, "exact_match": exact, "average": (f1 + exact) / 2, "total": total, "skipped": skipped}
