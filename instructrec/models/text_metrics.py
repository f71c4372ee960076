"""Metrics of generated text, per task type, as torchmetrics (so they sync across ranks):

| task type | metrics (main first) | computed by |
|---|---|---|
| ``translation`` | ``bleu``, ``chrf`` (0-100, corpus level) | the ``sacrebleu`` package (its 13a BLEU with exponential smoothing; chrF) |
| ``qa`` | ``f1``, ``exact_match`` (0-100, best over the references) | the SQuAD evaluation code (:mod:`instructrec.qa.squad_metrics`) |
| ``generation`` | ``rougeL`` (F-measure, 0-100) | torchmetrics' ``ROUGEScore`` |
| ``classification`` | ``acc`` (the generated text is the option, SQuAD-normalised) | the SQuAD normalisation |

Why sacreBLEU's sufficient statistics: corpus BLEU and chrF are functions of n-gram counts summed
over the corpus, not means of sentence scores. Each rank sums its sentences' counts (sacreBLEU's
own extraction), torchmetrics sums them across ranks, and sacreBLEU turns the totals into the
score: exactly ``sacrebleu.corpus_bleu`` / ``corpus_chrf`` of all hypotheses.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.text import ROUGEScore

from instructrec.qa.squad_metrics import exact_match, f1_v1


class SacreBleuStatistics(Metric):
    """A sacreBLEU corpus metric (``sacrebleu.metrics.BLEU()`` or ``CHRF()``) over every update.

    ``update(hypotheses, references)``: one hypothesis and its list of references per row (rows may
    have different numbers of references)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, name: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scorer = _scorer(name)
        size = len(self.scorer._extract_corpus_statistics(["a"], [["a"]])[0])
        self.add_state("totals", default=torch.zeros(size, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, hypotheses: list[str], references: list[list[str]]) -> None:
        for hypothesis, refs in zip(hypotheses, references):
            if not refs:
                continue  # nothing to score against (prediction input)
            stats = self.scorer._extract_corpus_statistics([hypothesis], [[ref] for ref in refs])
            self.totals += torch.tensor(stats[0], dtype=torch.float64, device=self.totals.device)

    def compute(self) -> torch.Tensor:
        totals = [int(round(v)) for v in self.totals.tolist()]
        return torch.tensor(float(self.scorer._compute_score_from_stats(totals).score), dtype=torch.float64)


def _scorer(name: str):
    from sacrebleu.metrics import BLEU, CHRF

    scorers = {"bleu": BLEU, "chrf": CHRF}
    if name not in scorers:
        raise ValueError(f"unknown sacreBLEU metric {name!r}; expected one of {sorted(scorers)}")
    return scorers[name]()


class AnswerOverlap(Metric):
    """SQuAD exact match or token F1 (0-100) of each answer against its best reference, averaged."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, kind: str = "f1", **kwargs) -> None:
        super().__init__(**kwargs)
        if kind not in ("f1", "exact_match"):
            raise ValueError(f"kind must be 'f1' or 'exact_match', got {kind!r}")
        self.score = f1_v1 if kind == "f1" else exact_match
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, hypotheses: list[str], references: list[list[str]]) -> None:
        for hypothesis, refs in zip(hypotheses, references):
            if refs:
                self.total += max(float(self.score(hypothesis, ref)) for ref in refs)
                self.count += 1

    def compute(self) -> torch.Tensor:
        return (100.0 * self.total / self.count.clamp(min=1)).float()


class RougeL(ROUGEScore):
    """ROUGE-L F-measure, 0-100 (torchmetrics' ROUGEScore, best over the references)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(rouge_keys="rougeL", accumulate="best", **kwargs)

    def update(self, hypotheses: list[str], references: list[list[str]]) -> None:
        scored = [(h, r) for h, r in zip(hypotheses, references) if r]
        if scored:
            super().update([h for h, _ in scored], [r for _, r in scored])

    def compute(self) -> torch.Tensor:
        return 100.0 * super().compute()["rougeL_fmeasure"]


class OptionAccuracy(AnswerOverlap):
    """Whether the generated text is the reference option (SQuAD-normalised), 0-100."""

    def __init__(self, **kwargs) -> None:
        super().__init__("exact_match", **kwargs)


METRICS = {
    "translation": ("bleu", lambda: {"bleu": SacreBleuStatistics("bleu"), "chrf": SacreBleuStatistics("chrf")}),
    "qa": ("f1", lambda: {"f1": AnswerOverlap("f1"), "exact_match": AnswerOverlap("exact_match")}),
    "generation": ("rougeL", lambda: {"rougeL": RougeL()}),
    "classification": ("acc", lambda: {"acc": OptionAccuracy()}),
}


class GeneratedTask:
    """What :class:`~instructrec.models.evaluation.TaskMetrics` asks of a task, for generated text:
    its metric collection, its main metric, and an update from generated texts and the batch's
    ``references``."""

    def __init__(self, task_type: str) -> None:
        if task_type not in METRICS:
            raise ValueError(f"no metrics for generated {task_type!r}; task types: {sorted(METRICS)}")
        self.type = task_type
        self.main_metric = METRICS[task_type][0]

    def metrics(self) -> MetricCollection:
        return MetricCollection(METRICS[self.type][1](), compute_groups=False)

    def update_metrics(self, metrics: MetricCollection, generated: list[str], batch: dict) -> None:
        metrics.update(generated, batch["references"])

