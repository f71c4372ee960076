"""Task heads: each reads the shared encoder's token states and owns its loss, metrics and output.

``B`` = batch, ``S`` = sequence length, ``H`` = encoder hidden size, ``C`` = number of labels.

| type | reads | outputs | loss | metrics (main first) | batch keys |
|---|---|---|---|---|---|
| ``classification`` | pooled tokens | logits ``(B, C)`` | cross-entropy | ``acc``, ``f1`` (macro) | ``labels`` (long) |
| ``qa`` | every token | start, end logits ``(B, S)`` each | mean of start/end cross-entropy | ``span_em`` (token span exact) | ``start_positions``, ``end_positions`` |
| ``regression`` | pooled tokens | score ``(B,)`` | mean squared error | ``pearson``, ``mse`` | ``labels`` (float) |
| ``ranking`` | pooled tokens | score ``(B,)`` | pairwise logistic (RankNet) over the batch's ordered pairs | ``spearman`` | ``labels`` (float relevance) |

Pooling (a task spec's ``"pooling"``): ``first`` (the first token, BERT's [CLS]) or ``mean`` (the
mean of the real tokens' states: what sentence-embedding encoders such as all-MiniLM-L6-v2 were
trained to make meaningful). Every head has ``weights`` named ``linear.weight``/``linear.bias``
(see ``instructrec export``).
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MeanMetric, MeanSquaredError, MetricCollection, PearsonCorrCoef, SpearmanCorrCoef
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from instructrec.batch import IGNORE_LABEL

POOLING = ("first", "mean")


def pool(states: torch.Tensor, attention_mask: torch.Tensor | None, how: str) -> torch.Tensor:
    """``(B, S, H)`` token states -> ``(B, H)``: the first token's, or the mean over real tokens."""
    if how == "first":
        return states[:, 0]
    if how != "mean":
        raise ValueError(f"pooling must be one of {POOLING}, got {how!r}")
    if attention_mask is None:
        return states.mean(1)
    mask = attention_mask.unsqueeze(-1).to(states.dtype)
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class TaskHead(nn.Module):
    """A dropout and a linear layer over the encoder states; subclasses say which states and how."""

    type: str = ""
    main_metric: str = ""

    def __init__(self, hidden_size: int, out_features: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden_size, out_features)

    def loss(self, outputs, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def metrics(self) -> MetricCollection:
        raise NotImplementedError

    def update_metrics(self, metrics: MetricCollection, outputs, batch: dict) -> None:
        raise NotImplementedError

    def predict(self, outputs) -> list[dict]:
        raise NotImplementedError


class ClassificationHead(TaskHead):
    """Logits ``(B, C)`` from the pooled state ``(B, H)``; ``labels`` are option indices."""

    type = "classification"
    main_metric = "acc"

    def __init__(self, hidden_size: int, labels: list[str], dropout: float, pooling: str = "first") -> None:
        super().__init__(hidden_size, len(labels), dropout)
        self.labels = list(labels)
        self.pooling = pooling

    def forward(self, states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(self.dropout(pool(states, attention_mask, self.pooling)))

    def loss(self, logits, batch):
        return nn.functional.cross_entropy(logits.float(), batch["labels"], ignore_index=IGNORE_LABEL)

    def metrics(self):
        classes = len(self.labels)
        return MetricCollection(
            {"acc": MulticlassAccuracy(classes, average="micro"), "f1": MulticlassF1Score(classes, average="macro")}
        )

    def update_metrics(self, metrics, logits, batch):
        metrics.update(logits.float(), batch["labels"])

    def predict(self, logits):
        probabilities = logits.float().softmax(-1)
        return [
            {"label": self.labels[int(row.argmax())], "probabilities": dict(zip(self.labels, row.tolist()))}
            for row in probabilities
        ]


class SpanHead(TaskHead):
    """Start and end logits ``(B, S)`` each from every token's state ``(B, S, H)``; padding is masked."""

    type = "qa"
    main_metric = "span_em"

    def __init__(self, hidden_size: int, dropout: float) -> None:
        super().__init__(hidden_size, 2, dropout)

    def forward(self, states, attention_mask=None):
        start, end = self.linear(self.dropout(states)).float().unbind(-1)
        if attention_mask is not None:
            start = start.masked_fill(attention_mask == 0, torch.finfo(start.dtype).min)
            end = end.masked_fill(attention_mask == 0, torch.finfo(end.dtype).min)
        return start, end

    def loss(self, outputs, batch):
        start, end = outputs
        ce = nn.functional.cross_entropy
        return (ce(start, batch["start_positions"]) + ce(end, batch["end_positions"])) / 2

    def metrics(self):
        # Token-level: the SQuAD text EM/F1 needs offsets (instructrec.data.qa_features.decode_span).
        return MetricCollection({"span_em": MeanMetric()})

    def update_metrics(self, metrics, outputs, batch):
        start, end = outputs
        exact = (start.argmax(-1) == batch["start_positions"]) & (end.argmax(-1) == batch["end_positions"])
        metrics.update(exact.float())

    def predict(self, outputs):
        start, end = outputs
        return [{"start": int(s), "end": int(e)} for s, e in zip(start.argmax(-1), end.argmax(-1))]


class ScoreHead(TaskHead):
    """A score ``(B,)`` from the pooled state ``(B, H)``: regression or pairwise ranking."""

    def __init__(self, hidden_size: int, dropout: float, pooling: str = "first") -> None:
        super().__init__(hidden_size, 1, dropout)
        self.pooling = pooling

    def forward(self, states, attention_mask=None):
        return self.linear(self.dropout(pool(states, attention_mask, self.pooling))).squeeze(-1).float()

    def predict(self, scores):
        return [{"score": float(score)} for score in scores]


class RegressionHead(ScoreHead):
    type = "regression"
    main_metric = "pearson"

    def loss(self, scores, batch):
        return nn.functional.mse_loss(scores, batch["labels"].float())

    def metrics(self):
        return MetricCollection({"pearson": PearsonCorrCoef(), "mse": MeanSquaredError()})

    def update_metrics(self, metrics, scores, batch):
        metrics.update(scores, batch["labels"].float())


class RankingHead(ScoreHead):
    type = "ranking"
    main_metric = "spearman"

    def loss(self, scores, batch):
        return pairwise_logistic_loss(scores, batch["labels"].float())

    def metrics(self):
        return MetricCollection({"spearman": SpearmanCorrCoef()})

    def update_metrics(self, metrics, scores, batch):
        metrics.update(scores, batch["labels"].float())


def pairwise_logistic_loss(scores: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
    """RankNet: mean of ``log(1 + exp(s_j - s_i))`` over pairs with ``relevance_i > relevance_j``.

    Args:
        scores: ``(B,)`` model scores.
        relevance: ``(B,)`` graded relevance (higher ranks first).

    Returns:
        A scalar; ``0`` (still attached to ``scores``) when the batch has no ordered pair.
    """
    ordered = relevance[:, None] > relevance[None, :]
    if not ordered.any():
        return scores.sum() * 0.0
    margins = scores[:, None] - scores[None, :]
    return nn.functional.softplus(-margins[ordered]).mean()


def build_head(spec: dict, hidden_size: int, dropout: float) -> TaskHead:
    """A head for one task spec ``{"type": ..., "labels": [...], "pooling": ...}`` (labels:
    classification only; pooling: sentence-level heads, default ``first``)."""
    kind = spec.get("type")
    pooling = spec.get("pooling", "first")
    if kind != "qa" and pooling not in POOLING:
        raise ValueError(f"pooling must be one of {POOLING}, got {pooling!r}")
    if kind == "classification":
        labels = list(spec.get("labels") or [])
        if not labels or len(set(labels)) != len(labels):
            raise ValueError(f"a classification task needs distinct, non-empty labels, got {labels}")
        return ClassificationHead(hidden_size, labels, dropout, pooling)
    if kind == "qa":
        return SpanHead(hidden_size, dropout)
    if kind == "regression":
        return RegressionHead(hidden_size, dropout, pooling)
    if kind == "ranking":
        return RankingHead(hidden_size, dropout, pooling)
    raise ValueError(f"unknown task type {kind!r}; known: classification, qa, regression, ranking")
