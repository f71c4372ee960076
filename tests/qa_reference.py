"""Straightforward post-processing loops: the reference for ``instructrec.qa.postprocess``.

``reference_postprocess`` is the definition the vectorised code must reproduce exactly: for every
feature, a double loop over start tokens and end tokens (at most ``max_answer_length`` tokens
apart) with plain Python checks, all spans of an example sorted best first (ties: feature, start,
end), the first ``n_best`` distinct texts. ``topk_loop_postprocess`` is the loop most code bases
run: only the ``n_best`` best start and end tokens of each feature are paired, so it can miss the
best valid span; it returns the best text alone. ``topk_nbest_postprocess`` is the same search
as Hugging Face's ``run_qa`` example does it (``utils_qa.postprocess_qa_predictions``): every
pair it keeps as a dict, the ``n_best`` best sorted out with their texts and softmax
probabilities. Both are timed by the benchmark, not compared in tests.

Shared by ``tests/test_qa_postprocess.py`` and ``experiments/benchmarks/qa_postprocess.py``.
"""

from __future__ import annotations

import math

import numpy as np

from instructrec.qa.postprocess import QAPrediction, SpanCandidate, with_probabilities


def _row(values, f: int) -> list[float]:
    row = values[f]
    if hasattr(row, "detach"):
        row = row.detach().float().cpu()
    return [float(x) for x in row]


def _context_token(offsets: list, logits_start: list, logits_end: list, i: int) -> bool:
    if i >= len(offsets) or i >= len(logits_start):
        return False
    pair = offsets[i]
    if pair is None or pair[0] < 0 or pair[1] < 0:
        return False
    return math.isfinite(logits_start[i]) and math.isfinite(logits_end[i])


def reference_postprocess(
    start_logits,
    end_logits,
    offset_mapping,
    example_index,
    contexts,
    *,
    n_best: int = 20,
    max_answer_length: int = 30,
    version_2: bool = False,
    null_threshold: float = 0.0,
    null_index: int = 0,
) -> list[QAPrediction]:
    features_of = {e: [] for e in range(len(contexts))}
    for f, e in enumerate(example_index):
        features_of[int(e)].append(f)
    predictions = []
    for e, context in enumerate(contexts):
        spans = []  # (-score, feature, start, end, start_logit, end_logit, start_char, end_char)
        nulls = []
        for f in features_of[e]:
            starts, ends = _row(start_logits, f), _row(end_logits, f)
            offsets = [None if p is None else tuple(int(x) for x in p) for p in offset_mapping[f]]
            length = len(starts)
            for s in range(length):
                if not _context_token(offsets, starts, ends, s):
                    continue
                for t in range(s, min(s + max_answer_length, length)):
                    if not _context_token(offsets, starts, ends, t):
                        continue
                    if offsets[t][1] <= offsets[s][0]:
                        continue  # empty or reversed text
                    score = starts[s] + ends[t]
                    spans.append((-score, f, s, t, starts[s], ends[t], offsets[s][0], offsets[t][1]))
            if version_2 and null_index < length:
                null = starts[null_index] + ends[null_index]
                if math.isfinite(null):
                    nulls.append((null, f))
        spans.sort(key=lambda x: x[:4])
        best_spans, seen = [], set()
        for _, f, _, _, sl, el, a, b in spans:
            text = context[a:b]
            if text not in seen:
                seen.add(text)
                best_spans.append(SpanCandidate(text, sl, el, a, b, f))
            if len(best_spans) == n_best:
                break
        best = best_spans[0] if best_spans else None
        if not version_2 or not nulls:
            predictions.append(QAPrediction(best.text if best else "", best, with_probabilities(best_spans), None))
            continue
        null_score, f = min(nulls)
        starts, ends = _row(start_logits, f), _row(end_logits, f)
        entry = SpanCandidate("", starts[null_index], ends[null_index], -1, -1, f)
        nbest = sorted([*best_spans, entry], key=lambda c: -c.score)[:n_best]
        answer = "" if best is None or null_score - best.score > null_threshold else best.text
        predictions.append(QAPrediction(answer, best, with_probabilities(nbest), null_score))
    return predictions


def topk_loop_postprocess(
    start_logits, end_logits, offset_mapping, example_index, contexts, *, n_best: int = 20, max_answer_length: int = 30
) -> list[str]:
    """The common loop: pair the ``n_best`` best start and end tokens of each feature (answer texts)."""
    start_logits, end_logits = np.asarray(start_logits), np.asarray(end_logits)
    best = {}
    for f, e in enumerate(example_index):
        offsets = offset_mapping[f]
        starts = np.argsort(start_logits[f])[-1 : -n_best - 1 : -1].tolist()
        ends = np.argsort(end_logits[f])[-1 : -n_best - 1 : -1].tolist()
        for s in starts:
            for t in ends:
                if s >= len(offsets) or t >= len(offsets) or offsets[s][0] < 0 or offsets[t][0] < 0:
                    continue
                if t < s or t - s + 1 > max_answer_length:
                    continue
                score = start_logits[f][s] + end_logits[f][t]
                if e not in best or score > best[e][0]:
                    best[e] = (score, contexts[e][offsets[s][0] : offsets[t][1]])
    return [best[e][1] if e in best else "" for e in range(len(contexts))]


def topk_nbest_postprocess(
    start_logits, end_logits, offset_mapping, example_index, contexts, *, n_best: int = 20, max_answer_length: int = 30
) -> list[list[dict]]:
    """The top-k loop with an n-best list per example, as ``run_qa`` builds it: dicts with offsets,
    scores and logits; the best ``n_best`` get their text and a probability (texts not deduplicated)."""
    start_logits, end_logits = np.asarray(start_logits), np.asarray(end_logits)
    features_of = {e: [] for e in range(len(contexts))}
    for f, e in enumerate(example_index):
        features_of[int(e)].append(f)
    results = []
    for e, context in enumerate(contexts):
        candidates = []
        for f in features_of[e]:
            offsets = offset_mapping[f]
            starts = np.argsort(start_logits[f])[-1 : -n_best - 1 : -1].tolist()
            ends = np.argsort(end_logits[f])[-1 : -n_best - 1 : -1].tolist()
            for s in starts:
                for t in ends:
                    if s >= len(offsets) or t >= len(offsets) or offsets[s] is None or offsets[t] is None:
                        continue
                    if offsets[s][0] < 0 or offsets[t][0] < 0 or t < s or t - s + 1 > max_answer_length:
                        continue
                    candidates.append({"offsets": (offsets[s][0], offsets[t][1]),
                                       "score": start_logits[f][s] + end_logits[f][t],
                                       "start_logit": start_logits[f][s], "end_logit": end_logits[f][t]})
        nbest = sorted(candidates, key=lambda c: c["score"], reverse=True)[:n_best]
        for candidate in nbest:
            candidate["text"] = context[candidate["offsets"][0] : candidate["offsets"][1]]
        if nbest:
            scores = np.array([c["score"] for c in nbest])
            weights = np.exp(scores - scores.max())
            for candidate, probability in zip(nbest, weights / weights.sum()):
                candidate["probability"] = probability
        results.append(nbest)
    return results
