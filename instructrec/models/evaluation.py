"""Evaluation pieces every family shares: per-task metrics for a stage, the stage's ``score``, the
task a batch belongs to, and parameter counts.

Why here and not in a base class: a module composes what it needs (a ``TaskMetrics`` per stage)
and stays a plain LightningModule that a Lightning user reads without a guide.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


class TaskMetrics(nn.Module):
    """One stage's metrics (``val``, ``test``...): a torchmetrics collection per task head, the
    tasks updated since the last :meth:`compute`, and the stage's score.

    Args:
        heads: task name -> head (:class:`~instructrec.models.heads.TaskHead`): its ``metrics()``
            builds the collection, its ``main_metric`` names the value the score averages.
    """

    def __init__(self, heads: nn.ModuleDict) -> None:
        super().__init__()
        self.collections = nn.ModuleDict({name: head.metrics() for name, head in heads.items()})
        self.main_metric = {name: head.main_metric for name, head in heads.items()}
        self._updated: set[str] = set()

    def update(self, task: str, head: nn.Module, outputs, batch: dict) -> None:
        head.update_metrics(self.collections[task], outputs, batch)
        self._updated.add(task)

    def compute(self) -> dict[str, dict[str, torch.Tensor]]:
        """``{task: {metric: value}}`` for the tasks updated since the last call (torchmetrics
        syncs them across ranks), in the heads' order; every collection is reset."""
        values = {}
        for task, collection in self.collections.items():
            if task in self._updated:
                values[task] = collection.compute()
            collection.reset()
        self._updated.clear()
        return values

    def score(self, values: dict[str, dict[str, torch.Tensor]]) -> torch.Tensor | None:
        """The mean of each computed task's main metric (``val/score``, the checkpoint monitor)."""
        main = [values[task][self.main_metric[task]] for task in values]
        return torch.stack(main).float().mean() if main else None


def log_stage_metrics(module, stage: str, metrics: TaskMetrics) -> dict[str, dict[str, torch.Tensor]]:
    """Log each evaluated task's metrics as ``<stage>/<task>/<metric>`` (synced across ranks by
    torchmetrics) and their ``<stage>/score``; the values. On the progress bar: a single task's
    validation metrics, and the validation score."""
    values = metrics.compute()
    single = len(metrics.collections) == 1
    for name, task_values in values.items():
        for metric, value in task_values.items():
            module.log(f"{stage}/{name}/{metric}", value, prog_bar=stage == "val" and single)
    score = metrics.score(values)
    if score is not None:
        module.log(f"{stage}/score", score, prog_bar=stage == "val")
    return values


def retention(student: dict, teacher: dict, main_metric: dict[str, str]) -> dict[str, float]:
    """A distillation report's metrics: each task's ``<task>/<metric>`` for the student,
    ``teacher/<task>/<metric>``, their ratio ``<task>/<metric>_retention``, and ``retention``, the
    mean over tasks of their main metric's ratio."""
    report: dict[str, float] = {}
    main = []
    for task, values in student.items():
        for metric, value in values.items():
            s, t = float(value), float(teacher[task][metric])
            report[f"{task}/{metric}"] = s
            report[f"teacher/{task}/{metric}"] = t
            report[f"{task}/{metric}_retention"] = s / t if t else float("nan")
        main.append(report[f"{task}/{main_metric[task]}_retention"])
    if main:
        report["retention"] = sum(main) / len(main)
    return report


def task_of(batch_task: str | None, tasks: Iterable[str]) -> str:
    """The task a batch belongs to: its ``batch["task"]``, or the model's only task."""
    names = list(tasks)
    if batch_task is None:
        if len(names) != 1:
            raise ValueError(f"a batch without 'task' is ambiguous for tasks {names}")
        return names[0]
    if batch_task not in names:
        raise KeyError(f"batch task {batch_task!r} has no head; tasks: {names}")
    return batch_task


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
