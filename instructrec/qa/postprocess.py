"""Start/end logits of doc-stride features -> answer text per example: the n-best spans, vectorised.

Why vectorised: an exhaustive Python loop over start x end tokens of every feature costs more than
the model's forward pass on a CPU, and the usual shortcut (pair only the ``n_best`` best start and
end tokens) can miss the best *valid* span: on random logits its answer differs from the exact one
for about one SQuAD question in ten. Here the search is exact and in numpy: per start token an
upper bound (its logit plus the best end logit within ``max_answer_length``), per feature a lower
bound on its ``n_best``-th span, and only the starts that can beat it are expanded into their
spans; each feature keeps its top ``n_best`` (and everything tied with the last), and only those
reach Python. ``experiments/benchmarks/qa_postprocess.py`` measures it against both loops.

Why it never crashes nor drops characters: a span may start and end only on *context* tokens, read
from the offsets (:data:`~instructrec.data.qa_features.NO_OFFSET` marks question, special and padding
tokens, and is also assumed wherever a feature's offsets or logits run short: windows cut by
truncation, ragged inputs), and its text is the context slice ``context[start_char:end_char]`` from
the first token's start to the last token's end, so white space inside the answer, Chinese text
without spaces and tokens holding several characters come out whole. Non-finite logits and spans
with empty text are never answers.

The result is exactly that of the exhaustive reference loop ``tests/qa_reference.py`` (same texts,
same float scores, same order, ties broken by feature, start token, end token): the spans of an
example are ranked by score over all its features, duplicates of a text keep their best score, the
first ``n_best`` texts are kept. SQuAD 2.0: the null score of an example is the smallest
``start_logit[null_index] + end_logit[null_index]`` over its features, and the answer is ``""``
when ``null_score - best_span_score > null_threshold`` (the "null odds", tuned on validation).

Shapes: ``F`` features, ``L`` tokens per feature (padded; ragged lists are accepted), ``E`` examples.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from itertools import chain
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from instructrec.batch import NO_OFFSET


@dataclass(slots=True)
class SpanCandidate:
    """One answer candidate; the null answer has ``text == ""`` and ``start_char == end_char == -1``."""

    text: str
    start_logit: float
    end_logit: float
    start_char: int
    end_char: int
    feature: int  # the feature (row of the logits) it was read from
    probability: float = 0.0  # softmax of the scores over the n-best list

    @property
    def score(self) -> float:
        return self.start_logit + self.end_logit


@dataclass(frozen=True)
class Evidence:
    """A run of context text a reader marks as supporting its answer: characters ``[start, end)``."""

    start: int
    end: int
    text: str


@dataclass(frozen=True)
class QAPrediction:
    """The answer to one example and how it was chosen."""

    text: str  # the answer: the best span's text, or "" (no answer / no valid span)
    best: SpanCandidate | None  # the best non-null span; None when no feature has a valid span
    nbest: list[SpanCandidate] = field(default_factory=list)  # best first; holds the null entry in v2
    null_score: float | None = None  # SQuAD 2.0 only: the smallest null score over the features
    closed: bool = False  # ``text`` is a closed answer chosen by a reader's answer head, not a span
    # what a reader's support head marks in the context as supporting the answer (bAbI's supporting
    # facts), in context order; empty without such a head
    evidence: tuple[Evidence, ...] = ()

    @property
    def null_odds(self) -> float:
        """``null_score - best.score``: above the threshold the answer is ``""`` (+inf without a span)."""
        if self.null_score is None:
            raise ValueError("no null score: post-process with version_2=True")
        return math.inf if self.best is None else self.null_score - self.best.score


def postprocess_qa_predictions(
    start_logits,
    end_logits,
    offset_mapping: Sequence,
    example_index: Sequence[int],
    contexts: Sequence[str],
    *,
    n_best: int = 20,
    max_answer_length: int = 30,
    version_2: bool = False,
    null_threshold: float = 0.0,
    null_index: int = 0,
    chunk_size: int = 256,
) -> list[QAPrediction]:
    """Decode one :class:`QAPrediction` per context (example) from its features' logits.

    Args:
        start_logits, end_logits: ``(F, L)`` arrays or tensors, or F ragged 1-D sequences.
        offset_mapping: per feature, ``L_f`` pairs ``(start_char, end_char)`` into its context,
            :data:`NO_OFFSET` (or ``None``) for tokens that are not context tokens.
        example_index: ``(F,)``: the context each feature was cut from, an index into ``contexts``.
        contexts: ``E`` context strings; an example without features gets ``QAPrediction("", None)``.
        n_best: spans (distinct texts) kept per example.
        max_answer_length: the most tokens a span may have.
        version_2: SQuAD 2.0: compute null scores, answer ``""`` when the null odds exceed
            ``null_threshold``, add the null entry to the n-best list.
        null_index: the token whose start/end logits score "no answer" (CLS).
        chunk_size: features scored at once (memory: ``chunk_size * L * max_answer_length * 8`` bytes).
    """
    if n_best < 1 or max_answer_length < 1:
        raise ValueError(f"n_best={n_best} and max_answer_length={max_answer_length} must be positive")
    start, end = _logits(start_logits), _logits(end_logits)
    if start.shape != end.shape:
        raise ValueError(f"start logits {start.shape} and end logits {end.shape} differ in shape")
    n_features = start.shape[0]
    examples = np.asarray(example_index, dtype=np.int64).reshape(-1)
    if len(examples) != n_features or len(offset_mapping) != n_features:
        raise ValueError(
            f"{n_features} features of logits, {len(offset_mapping)} offset mappings, {len(examples)} example indices"
        )
    if n_features and (examples.min() < 0 or examples.max() >= len(contexts)):
        raise ValueError(f"example indices must lie in [0, {len(contexts)})")
    offsets = _offsets(offset_mapping, start.shape[1])

    chunks = [
        _top_spans(
            start[i : i + chunk_size], end[i : i + chunk_size], offsets[i : i + chunk_size], max_answer_length, n_best
        )
        for i in range(0, n_features, chunk_size)
    ]
    candidates = _Candidates.concatenate(chunks, offset=[i for i in range(0, n_features, chunk_size)])
    truncated = np.concatenate([c.truncated for c in chunks]).tolist() if chunks else []
    floor = np.concatenate([c.floor for c in chunks]).tolist() if chunks else []
    null = _null_scores(start, end, null_index) if version_2 else None

    features_of = [[] for _ in contexts]
    for f, e in enumerate(examples.tolist()):
        features_of[e].append(f)
    spans_of = _distinct_spans(candidates, examples, contexts, n_best)
    predictions = []
    for e, spans in enumerate(spans_of):
        cut = [f for f in features_of[e] if truncated[f]]
        if cut and (len(spans) < n_best or spans[-1].score < max(floor[f] for f in cut)):
            # Rare: duplicate texts left fewer than n_best spans above a feature's cut-off.
            rows = np.asarray(features_of[e])
            full = _top_spans(start[rows], end[rows], offsets[rows], max_answer_length, None)
            full.feature = rows[full.feature]
            spans = _distinct_spans(full, examples, contexts, n_best)[e]
        predictions.append(
            _prediction(spans, null, features_of[e], n_best, version_2, null_threshold, null_index, start, end)
        )
    return predictions


# -- scoring all spans of a chunk of features ------------------------------------------------------


@dataclass
class _Candidates:
    """Flat arrays, one entry per candidate span (``feature`` is a row index)."""

    feature: np.ndarray
    start: np.ndarray
    end: np.ndarray
    start_logit: np.ndarray
    end_logit: np.ndarray
    score: np.ndarray
    start_char: np.ndarray
    end_char: np.ndarray
    truncated: np.ndarray = None  # per feature: some valid spans were left out
    floor: np.ndarray = None  # per feature: every left-out span scores below this

    @staticmethod
    def concatenate(parts: list["_Candidates"], offset: list[int]) -> "_Candidates":
        names = ("feature", "start", "end", "start_logit", "end_logit", "score", "start_char", "end_char")
        if not parts:
            return _Candidates(*(np.zeros(0) for _ in names))
        for part, first in zip(parts, offset):
            part.feature = part.feature + first
        return _Candidates(*(np.concatenate([getattr(p, n) for p in parts]) for n in names))

    def with_cut(self, rows: int) -> "_Candidates":
        """Marked as complete: nothing left out of any of the ``rows`` features."""
        self.truncated, self.floor = np.zeros(rows, bool), np.full(rows, -np.inf)
        return self

    def take(self, order: np.ndarray) -> "_Candidates":
        names = ("feature", "start", "end", "start_logit", "end_logit", "score", "start_char", "end_char")
        return _Candidates(*(getattr(self, n)[order] for n in names))


def _top_spans(start: np.ndarray, end: np.ndarray, offsets: np.ndarray, max_len: int, keep: int | None) -> _Candidates:
    """Every valid span of the rows whose score reaches the row's ``keep``-th best (all if None).

    ``start, end``: ``(R, L)`` float64; ``offsets``: ``(R, L, 2)`` int64. Pruned search, exact:

    1. per start token, the best span it can begin: its logit plus the running maximum of the end
       logits over the ``max_len`` tokens in reach, an upper bound on all its spans;
    2. a lower bound per row on its ``keep``-th best span: the ``keep``-th of those best spans;
    3. only starts whose bound reaches the lower bound are expanded into their spans (about
       ``keep`` starts of ~300), and only their spans that reach it are kept; the rest cannot be
       in the row's top ``keep``.
    """
    rows, length = start.shape
    char_start, char_end = offsets[..., 0], offsets[..., 1]
    token_ok = (char_start >= 0) & (char_end >= 0) & np.isfinite(start) & np.isfinite(end)
    width = max(1, min(max_len, length))
    if keep is None or length == 0:
        return _spans_from(start, end, char_start, char_end, token_ok, *np.nonzero(token_ok), width).with_cut(rows)

    end_ok = np.where(token_ok, end, -np.inf)
    bound = np.where(token_ok, np.where(token_ok, start, 0.0) + _window_max(end_ok, width), -np.inf)  # (R, L)
    # The best span of each of the `keep` starts of highest bound: `keep` distinct valid spans give
    # a lower bound on the row's keep-th best score (where offsets run backwards a probe may be
    # invalid; with fewer than `keep` probes the bound is -inf and the whole row is expanded).
    m = min(keep, length)
    probe_rows = np.repeat(np.arange(rows), m)
    probe_starts = np.argpartition(-bound, m - 1, axis=1)[:, :m].ravel()
    windows = sliding_window_view(np.pad(end_ok, ((0, 0), (0, width - 1)), constant_values=-np.inf), width, axis=1)
    probe_ends = np.minimum(probe_starts + windows[probe_rows, probe_starts].argmax(axis=1), length - 1)
    valid = (
        np.isfinite(bound[probe_rows, probe_starts])
        & token_ok[probe_rows, probe_ends]
        & (char_end[probe_rows, probe_ends] > char_start[probe_rows, probe_starts])
    )
    lower = _kth_best(bound[probe_rows, probe_starts][valid], probe_rows[valid], keep, rows)

    expand = token_ok & (bound >= lower[:, None])
    spans = _spans_from(start, end, char_start, char_end, token_ok, *np.nonzero(expand), width, lower)
    floor = _kth_best(spans.score, spans.feature, keep, rows)
    selected = spans.score >= floor[spans.feature]
    pruned = np.bincount(np.nonzero(token_ok & ~expand & np.isfinite(bound))[0], minlength=rows) > 0
    # Conservative: a row with a finite lower bound may have had spans below it left out.
    dropped = (np.bincount(spans.feature[~selected], minlength=rows) > 0) | np.isfinite(lower)
    result = spans.take(np.flatnonzero(selected))
    result.truncated, result.floor = pruned | dropped, floor
    return result


def _window_max(values: np.ndarray, width: int) -> np.ndarray:
    """``(R, L)``: ``values[:, i : i + width].max(axis=1)`` for every ``i`` (the window shortened at
    the end), by doubling: O(L log width) instead of O(L width)."""
    length = values.shape[1]
    result, span = values.copy(), 1
    while 2 * span <= width:  # result[:, i] = max of values[:, i : i + 2 * span]
        result[:, : length - span] = np.maximum(result[:, : length - span], result[:, span:])
        span *= 2
    shift = width - span  # [i, i + width) = [i, i + span) and [i + shift, i + shift + span)
    if shift:
        result[:, : length - shift] = np.maximum(result[:, : length - shift], result[:, shift:])
    return result


def _spans_from(
    start, end, char_start, char_end, token_ok, rows: np.ndarray, starts: np.ndarray, width: int,
    at_least: np.ndarray | None = None,
) -> _Candidates:
    """All valid spans starting at the given (row, start token) pairs (a ``(P, width)`` band), but
    those scoring below ``at_least[row]``; the band's scores are compared first, and only the spans
    that pass are checked for validity (their end a context token, their text not empty)."""
    length = start.shape[1]
    ends = starts[:, None] + np.arange(width)[None, :]  # (P, K)
    flat = rows[:, None] * length + np.minimum(ends, length - 1)  # 1-D takes: cheaper than 2-D fancy indexing
    start_logit = start[rows, starts]
    if at_least is None:
        keep = (ends < length) & token_ok.ravel().take(flat)
    else:
        with np.errstate(invalid="ignore"):  # inf - inf at tokens that are not valid: never kept
            keep = (ends < length) & (start_logit[:, None] + end.ravel().take(flat) >= at_least[rows][:, None])
    p, k = np.nonzero(keep)
    position = flat[p, k]
    row, s, e = rows[p], starts[p], ends[p, k]
    end_char = char_end.ravel().take(position)
    valid = token_ok.ravel().take(position) & (end_char > char_start[row, s])
    row, s, e, end_char = row[valid], s[valid], e[valid], end_char[valid]
    start_logit, end_logit = start_logit[p[valid]], end.ravel().take(position[valid])
    return _Candidates(
        feature=row,
        start=s,
        end=e,
        start_logit=start_logit,
        end_logit=end_logit,
        score=start_logit + end_logit,
        start_char=char_start[row, s],
        end_char=end_char,
    )


def _kth_best(scores: np.ndarray, rows: np.ndarray, k: int, n_rows: int) -> np.ndarray:
    """``(n_rows,)``: the ``k``-th best score of each row's entries; -inf where a row has fewer.

    ``rows`` must be sorted (entries grouped by row), as ``np.nonzero`` produces them.
    """
    counts = np.bincount(rows, minlength=n_rows)
    result = np.full(n_rows, -np.inf)
    if len(scores) == 0 or counts.max() < k:
        return result
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    table = np.full((n_rows, counts.max()), -np.inf)  # row r: its entries, then -inf
    table[rows, np.arange(len(rows)) - first[rows]] = scores
    kth = -np.partition(-table, k - 1, axis=1)[:, k - 1]
    full = counts >= k
    result[full] = kth[full]
    return result


def _distinct_spans(candidates: _Candidates, examples: np.ndarray, contexts: Sequence[str], n_best: int) -> list[list[SpanCandidate]]:
    """Per example, its first ``n_best`` distinct texts, best first (ties: feature, start token, end
    token): one sort and one pass over every example's candidates."""
    spans: list[list[SpanCandidate]] = [[] for _ in contexts]
    if not len(candidates.feature):
        return spans
    example = examples[candidates.feature.astype(np.int64)]
    order = np.lexsort((candidates.end, candidates.start, candidates.feature, -candidates.score, example))
    columns = (example, candidates.feature, candidates.start_char, candidates.end_char, candidates.start_logit,
               candidates.end_logit)
    current, mine, seen, context = -1, [], set(), ""
    for e, f, a, b, start_logit, end_logit in zip(*(column[order].tolist() for column in columns)):
        if e != current:  # the candidates come grouped by example
            current, mine, seen, context = e, spans[e], set(), contexts[e]
        if len(mine) == n_best:
            continue
        text = context[a:b]
        if text not in seen:
            seen.add(text)
            mine.append(SpanCandidate(text, start_logit, end_logit, a, b, f))
    return spans


# -- null answer, n-best list ----------------------------------------------------------------------


def _null_scores(start: np.ndarray, end: np.ndarray, null_index: int) -> np.ndarray:
    """``(F,)``: ``start[f, null_index] + end[f, null_index]``; NaN where absent or not finite."""
    if not 0 <= null_index < start.shape[1]:
        return np.full(start.shape[0], np.nan)
    with np.errstate(invalid="ignore"):
        score = start[:, null_index] + end[:, null_index]
    return np.where(np.isfinite(score), score, np.nan)


def _prediction(
    spans: list[SpanCandidate],
    null: np.ndarray | None,
    features: list[int],
    n_best: int,
    version_2: bool,
    null_threshold: float,
    null_index: int,
    start: np.ndarray,
    end: np.ndarray,
) -> QAPrediction:
    best = spans[0] if spans else None
    if not version_2:
        return QAPrediction(best.text if best else "", best, with_probabilities(spans))
    scores = [(null[f], f) for f in features if not np.isnan(null[f])]
    if not scores:  # no feature can say "no answer": answer with the best span
        return QAPrediction(best.text if best else "", best, with_probabilities(spans), None)
    null_score, f = min(scores)  # the first feature on ties
    entry = SpanCandidate("", float(start[f, null_index]), float(end[f, null_index]), -1, -1, f)
    nbest = sorted([*spans, entry], key=lambda c: -c.score)[:n_best]  # stable: null after equal spans
    null_score = float(null_score)
    answer = "" if best is None or null_score - best.score > null_threshold else best.text
    return QAPrediction(answer, best, with_probabilities(nbest), null_score)


def closed_answer_choices(logits, example_index: Sequence[int], n_examples: int) -> np.ndarray:
    """Per example, the answer head's choice (:data:`~instructrec.batch.SPAN_CLASS`: extract a
    span; ``1 + i``: closed answer ``i``) from its windows' answer logits ``(F, 1 + n)``, averaged:
    every window of an example votes, as the n-best spans are read over all of them. Returns the
    mean logits ``(n_examples, 1 + n)``; their argmax is the choice."""
    logits = _logits(logits)  # rows of one width: no padding
    index = np.asarray(example_index)
    mean = np.zeros((n_examples, logits.shape[1]), dtype=np.float64)
    np.add.at(mean, index, logits)
    return mean / np.maximum(np.bincount(index, minlength=n_examples), 1)[:, None]


def marked_spans(offsets: Sequence, marked: Sequence[bool]) -> list[tuple[int, int]]:
    """Runs of consecutive marked context tokens as character spans ``(start, end)`` of the
    context; tokens that are not the context's (``NO_OFFSET``) are never marked and break a run."""
    spans: list[tuple[int, int]] = []
    run: list[int] | None = None
    for (start, end), mark in zip(offsets, marked):
        if mark and start >= 0:
            run = [run[0], end] if run is not None else [start, end]
            continue
        if run is not None:
            spans.append((run[0], run[1]))
            run = None
    if run is not None:
        spans.append((run[0], run[1]))
    return spans


def merge_spans(spans: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Character spans sorted, with overlapping or touching ones joined (one example's windows overlap)."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return tuple((start, end) for start, end in merged)


def with_probabilities(candidates: list[SpanCandidate]) -> list[SpanCandidate]:
    """Sets each candidate's ``probability`` to the softmax of the scores (in place); returns them."""
    if not candidates:
        return []
    scores = [c.start_logit + c.end_logit for c in candidates]
    top = max(scores)
    weights = [math.exp(score - top) for score in scores]
    total = sum(weights)
    for candidate, weight in zip(candidates, weights):
        candidate.probability = weight / total
    return candidates


# -- input normalisation ---------------------------------------------------------------------------


def _logits(values) -> np.ndarray:
    """``(F, L)`` float64; ragged rows padded with NaN (never a valid token)."""
    if hasattr(values, "detach"):  # a torch tensor, any dtype or device
        values = values.detach().float().cpu().numpy()
    if isinstance(values, np.ndarray):
        if values.ndim != 2:
            raise ValueError(f"logits must be (features, tokens), got shape {values.shape}")
        return values.astype(np.float64)
    rows = [
        np.asarray(row.detach().float().cpu() if hasattr(row, "detach") else row, dtype=np.float64) for row in values
    ]
    width = max((len(row) for row in rows), default=0)
    padded = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        padded[i, : len(row)] = row
    return padded


def _offsets(offset_mapping: Sequence, width: int) -> np.ndarray:
    """``(F, width, 2)`` int64; ``None`` entries and positions past a feature's end are -1."""
    if isinstance(offset_mapping, np.ndarray) and offset_mapping.ndim == 3:
        array = offset_mapping.astype(np.int64)[:, :width]
        return np.pad(array, ((0, 0), (0, width - array.shape[1]), (0, 0)), constant_values=-1)
    rows = [row.tolist() if hasattr(row, "tolist") else row for row in offset_mapping]
    lengths = np.fromiter(map(len, rows), np.int64, count=len(rows))
    if (lengths > width).any():
        rows, lengths = [row[:width] for row in rows], np.minimum(lengths, width)
    try:  # the fast path: one flat read of every number (no None anywhere)
        flat = np.fromiter(chain.from_iterable(chain.from_iterable(rows)), np.int64, count=2 * int(lengths.sum()))
    except (TypeError, ValueError):
        result = np.full((len(rows), width, 2), -1, dtype=np.int64)
        for i, row in enumerate(rows):
            row = [NO_OFFSET if pair is None else pair for pair in row]
            if row:
                result[i, : len(row)] = np.asarray(row, dtype=np.int64).reshape(len(row), 2)
        return result
    if len(rows) and (lengths == width).all():  # padded features: no scatter
        return flat.reshape(len(rows), width, 2)
    result = np.full((len(rows), width, 2), -1, dtype=np.int64)
    result[np.arange(width)[None, :] < lengths[:, None]] = flat.reshape(-1, 2)
    return result


# -- files in the official formats -----------------------------------------------------------------


def write_prediction_files(
    folder: str | Path, ids: Sequence[str], predictions: Sequence[QAPrediction], *, version_2: bool = False
) -> dict[str, Path]:
    """Write ``predictions.json`` (id -> text), ``nbest_predictions.json`` (id -> list of ``text,
    probability, start_logit, end_logit, offsets``: the span's characters in the context, as
    Hugging Face's run_qa writes them; ``[-1, -1]`` for the null answer), for SQuAD 2.0
    ``null_odds.json`` (id -> null odds, the ``--na-prob-file`` of ``evaluate-v2.0.py``) and, where
    the reader marks evidence, ``evidence.json`` (id -> list of ``text, start, end``).
    Returns the paths by file stem."""
    if len(ids) != len(predictions):
        raise ValueError(f"{len(ids)} ids for {len(predictions)} predictions")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "predictions": {i: p.text for i, p in zip(ids, predictions)},
        "nbest_predictions": {
            i: [
                {
                    "text": c.text,
                    "probability": c.probability,
                    "start_logit": c.start_logit,
                    "end_logit": c.end_logit,
                    "offsets": [c.start_char, c.end_char],
                }
                for c in p.nbest
            ]
            for i, p in zip(ids, predictions)
        },
    }
    if version_2:
        files["null_odds"] = {i: p.null_odds for i, p in zip(ids, predictions)}
    if any(p.evidence for p in predictions):
        files["evidence"] = {i: [asdict(e) for e in p.evidence] for i, p in zip(ids, predictions)}
    paths = {}
    for stem, content in files.items():
        paths[stem] = folder / f"{stem}.json"
        paths[stem].write_text(json.dumps(content, indent=2, ensure_ascii=False), encoding="utf-8")
    return paths
