"""``DistillationModule``: a student learns from a frozen teacher.

Features:

* teacher: a transformers folder or one of our checkpoints (:mod:`.teacher`), frozen (eval mode,
  ``requires_grad=False``, ``torch.no_grad``), optionally in bfloat16/float16;
* student: the teacher's chosen layers (DistilBERT), a pretrained backbone or a random one, with a
  head per task (:mod:`.student`);
* loss: ``soft * KL_T + hard * CE + hidden * MSE + attention * AT`` (:mod:`.losses`), every weight
  and the temperature a number or a schedule (:mod:`.schedules`); classification logits and QA
  start/end logits (QA compares context positions only when batches carry ``context_mask``);
* cached teacher logits: a batch with ``teacher_logits`` (or top-k, or QA start/end; see
  :mod:`.teacher_cache`) is trained without running the teacher, unless hidden-state or
  attention transfer needs the teacher's internals;
* multi-task: a batch names its task (``batch["task"]``); the student's and the teacher's heads of
  that task are compared, task by task;
* test: student and teacher run on the same batches in one run; logged are both parameter counts,
  their latencies (each forward pass timed per batch), each metric for both, and retention =
  student / teacher. The exact numbers are also in :attr:`DistillationModule.test_report` and in
  ``<log_dir>/distillation_report.json``.

Logged: ``train/loss`` and its parts ``train/soft``, ``train/hard``, ``train/hidden``,
``train/attention`` (only the weighted ones), ``train/temperature``, ``train/<part>_weight``;
``val/<task>/loss`` (cross-entropy), ``val/<task>/<metric>``, ``val/score``; at test
``test/<task>/<metric>``, ``test/teacher/<task>/<metric>``, ``test/<task>/<metric>_retention``,
``test/retention`` (mean over tasks' main metrics), ``test/student_params``,
``test/teacher_params``, ``test/param_ratio``, ``test/student_latency_ms``,
``test/teacher_latency_ms`` (mean per batch, first batch left out as warm-up when there are
more), ``test/speedup``.

Checkpoints hold the student (and loss projections), not the teacher: it is reloaded from the
``teacher`` path saved in the hyper-parameters.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Union

import lightning as L
import torch

from instructrec import backbones
from instructrec.distill import student as students
from instructrec.distill.losses import (
    AttentionTransferLoss,
    HardLabelCrossEntropyLoss,
    HiddenStateMSELoss,
    SoftTargetKLLoss,
    TopKSoftTargetKLLoss,
    over_spans,
)
from instructrec.distill.outputs import ModelOutputs, cached_logits
from instructrec.distill.schedules import build_schedule
from instructrec.distill.teacher import expect_frozen_teacher, load_teacher
from instructrec.models.evaluation import TaskMetrics, count_parameters, log_stage_metrics, retention, task_of
from instructrec.models.optim import adamw_with_warmup

PARTS = ("soft", "hard", "hidden", "attention")


class DistillationModule(L.LightningModule):
    """A student trained from a frozen teacher.

    Args:
        teacher: the teacher: a transformers folder (classification or QA model) or a ``.ckpt`` of
            ours (see :mod:`instructrec.distill.teacher` for the protocol).
        tasks: ``{name: {"type": "classification" | "qa", "labels": [...]}}`` (linked from the data
            by the CLI); None: the teacher's own tasks.
        backbone: the student's backbone name (its tokenizer encodes the data; the CLI links it).
            A teacher that numbers the same tokens otherwise reads them translated
            (:func:`~instructrec.distill.teacher.token_id_map`: a MiniLM student of an mpnet teacher).
            With ``student_init: teacher_layers`` it only names the tokenizer, which must be the
            teacher's.
        student_init: ``teacher_layers``, ``pretrained`` or ``random``.
        student_layers: teacher layers to copy (``teacher_layers``; default every other one).
        student_num_layers: keep the backbone's first this many layers (``pretrained``/``random``).
        teacher_dtype: ``float32`` (default), ``bfloat16`` or ``float16`` for the teacher.
        soft_weight, hard_weight, hidden_weight, attention_weight: each part's weight: a number or
            a schedule ``{"type": "linear" | "cosine", "start", "end", "steps"}``.
        temperature: the soft-target temperature, a number or a schedule.
        layer_map: ``[[student, teacher], ...]`` ``hidden_states`` indices (0 = embeddings) for
            hidden-state transfer; attention transfer uses the same pairs shifted to layers.
            Default: each copied layer to the end of the teacher block it replaces
            (``teacher_layers``), else TinyBERT's uniform map.
        attention_style: ``minilm`` (KL of attention distributions) or ``tinybert`` (MSE).
        init_heads_from_teacher: copy the teacher's heads when both read the same hidden size
            (checkpoint teachers; transformers heads read the pooler and are not copied).
        learning_rate, weight_decay, warmup_ratio: AdamW with linear warm-up and decay.
        dropout: dropout before each student head.
    """

    def __init__(
        self,
        teacher: str,
        tasks: dict[str, dict[str, Any]] | None = None,
        backbone: str = "tiny-bert",
        student_init: str = "teacher_layers",
        student_layers: list[int] | None = None,
        student_num_layers: int | None = None,
        teacher_dtype: str | None = None,
        soft_weight: Union[float, dict] = 0.5,
        hard_weight: Union[float, dict] = 0.5,
        hidden_weight: Union[float, dict] = 0.0,
        attention_weight: Union[float, dict] = 0.0,
        temperature: Union[float, dict] = 2.0,
        layer_map: list[list[int]] | None = None,
        attention_style: str = "minilm",
        init_heads_from_teacher: bool = True,
        learning_rate: float = 5e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.hparams.backbone = backbones.canonical(backbone)
        self.schedules = {part: build_schedule(w) for part, w in zip(PARTS, (soft_weight, hard_weight, hidden_weight, attention_weight))}
        self.temperature = build_schedule(temperature)
        uses = {part: _ever_positive(self.schedules[part]) for part in PARTS}
        self.teacher = load_teacher(
            teacher, tasks=tasks, dtype=teacher_dtype, attentions=uses["attention"], tokenizer=self.hparams.backbone
        )
        self.tasks = self.teacher.tasks
        self.hparams.tasks = self.tasks
        if student_init == "teacher_layers" and student_layers is None:
            student_layers = students.default_layers(students.num_layers(self.teacher.encoder))
        encoder = students.build_student_encoder(
            student_init, backbone, self.teacher.encoder, student_layers, student_num_layers
        )
        if uses["attention"]:
            encoder.set_attn_implementation("eager")
        self.student = students.Student(encoder, self.tasks, dropout)
        if init_heads_from_teacher and self.teacher.kind == "checkpoint":
            self._copy_teacher_heads()
        if layer_map is None:
            layer_map = (
                students.selection_layer_map(student_layers, students.num_layers(self.teacher.encoder))
                if student_init == "teacher_layers"
                else students.uniform_layer_map(students.num_layers(encoder), students.num_layers(self.teacher.encoder))
            )
        self.layer_map = [list(pair) for pair in layer_map]
        self.soft_loss = SoftTargetKLLoss()
        self.topk_loss = TopKSoftTargetKLLoss()
        self.hard_loss = HardLabelCrossEntropyLoss()
        self.hidden_loss = (
            HiddenStateMSELoss(encoder.config.hidden_size, self.teacher.encoder.config.hidden_size, self.layer_map)
            if uses["hidden"] else None
        )
        self.attention_loss = (
            AttentionTransferLoss(students.attention_map(self.layer_map), attention_style) if uses["attention"] else None
        )
        heads = self.student.heads
        self.val_metrics = TaskMetrics(heads)
        self.test_metrics = TaskMetrics(heads)
        self.teacher_metrics = TaskMetrics(heads)
        self._latency: dict[str, list[float]] = {"student": [], "teacher": []}
        self.test_report: dict[str, Any] = {}

    def _copy_teacher_heads(self) -> None:
        teacher_heads = self.teacher.model.heads
        for name, head in self.student.heads.items():
            source = teacher_heads[name] if name in teacher_heads else None
            if source is not None and source.linear.weight.shape == head.linear.weight.shape:
                head.load_state_dict({k: v.float() for k, v in source.state_dict().items()})

    # -- the model ---------------------------------------------------------------------------------

    def forward(self, batch: dict, task: str | None = None) -> ModelOutputs:
        """The student's outputs (``.logits``: ``(B, C)``, or QA ``(start, end)`` ``(B, S)``)."""
        return self.student(batch, self._task(batch) if task is None else task)

    def _task(self, batch: dict) -> str:
        return task_of(batch.get("task"), self.tasks)

    # -- losses ------------------------------------------------------------------------------------

    def on_fit_start(self) -> None:
        expect_frozen_teacher(self, self.teacher)

    def current_weights(self) -> tuple[dict[str, float], float]:
        """Each part's weight and the temperature at the current optimiser step."""
        step, total = self._steps()
        return {part: schedule(step, total) for part, schedule in self.schedules.items()}, self.temperature(step, total)

    def _steps(self) -> tuple[int, int | None]:
        trainer = self._trainer
        if trainer is None:
            return 0, None
        return trainer.global_step, max(1, int(trainer.estimated_stepping_batches))

    def losses(
        self, batch: dict, student: ModelOutputs, teacher: ModelOutputs | None, weights: dict[str, float], temperature: float
    ) -> dict[str, torch.Tensor]:
        """The weighted parts' unweighted values: ``{"soft", "hard", "hidden", "attention"}``.

        The soft target comes from ``batch``'s cached teacher logits when it has them, else from
        ``teacher`` (which hidden-state and attention transfer always need).
        """
        task = self._task(batch)
        qa = self.tasks[task]["type"] == "qa"
        parts: dict[str, torch.Tensor] = {}
        if weights["soft"] > 0:
            mask = _span_mask(batch) if qa else None
            cached = cached_logits(batch, self.tasks[task]["type"])
            if cached is None:
                if teacher is None:
                    raise ValueError("the soft-target loss needs teacher outputs or cached teacher logits in the batch")
                parts["soft"] = over_spans(self.soft_loss, student.logits, teacher.logits, mask=mask, temperature=temperature)
            elif cached[0] == "full":
                parts["soft"] = over_spans(self.soft_loss, student.logits, cached[1], mask=mask, temperature=temperature)
            else:
                parts["soft"] = over_spans(
                    self.topk_loss, student.logits, cached[1], teacher_indices=cached[2], mask=mask, temperature=temperature
                )
        if weights["hard"] > 0:
            if qa:
                labels = (batch["start_positions"], batch["end_positions"])
                parts["hard"] = over_spans(self.hard_loss, student.logits, labels)
            else:
                parts["hard"] = self.hard_loss(student.logits, batch["labels"])
        mask = batch.get("attention_mask")
        if weights["hidden"] > 0:
            parts["hidden"] = self.hidden_loss(student.hidden_states, teacher.hidden_states, mask)
        if weights["attention"] > 0:
            parts["attention"] = self.attention_loss(student.attentions, teacher.attentions, mask)
        return parts

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        task = self._task(batch)
        weights, temperature = self.current_weights()
        internals = {"hidden_states": weights["hidden"] > 0, "attentions": weights["attention"] > 0}
        student = self.student(batch, task, **internals)
        needs_teacher = any(internals.values()) or (
            weights["soft"] > 0 and cached_logits(batch, self.tasks[task]["type"]) is None
        )
        teacher = self.teacher(batch, task, **internals) if needs_teacher else None
        parts = self.losses(batch, student, teacher, weights, temperature)
        loss = sum(weights[name] * value for name, value in parts.items())
        size = len(batch["input_ids"])
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        for name, value in parts.items():
            self.log(f"train/{name}", value, batch_size=size)
            self.log(f"train/{name}_weight", float(weights[name]), batch_size=size)
        self.log("train/temperature", float(temperature), batch_size=size)
        return loss

    # -- evaluation --------------------------------------------------------------------------------

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        task = self._task(batch)
        head = self.student.heads[task]
        outputs = self.student(batch, task).logits
        self.log(f"val/{task}/loss", head.loss(outputs, batch), batch_size=len(batch["input_ids"]), sync_dist=True, add_dataloader_idx=False)
        self.val_metrics.update(task, head, outputs, batch)

    def on_validation_epoch_end(self) -> None:
        log_stage_metrics(self, "val", self.val_metrics)

    def on_test_epoch_start(self) -> None:
        self._latency = {"student": [], "teacher": []}

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Both models on the same batch, each forward pass timed."""
        task = self._task(batch)
        student, seconds = self._timed(lambda: self.student(batch, task).logits)
        self._latency["student"].append(seconds)
        teacher, seconds = self._timed(lambda: self.teacher(batch, task).logits)
        self._latency["teacher"].append(seconds)
        head = self.student.heads[task]
        self.test_metrics.update(task, head, student, batch)
        self.teacher_metrics.update(task, head, _float(teacher), batch)

    def _timed(self, run):
        synchronize = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            result = run()
        synchronize()
        return result, time.perf_counter() - start

    def on_test_epoch_end(self) -> None:
        student = self.test_metrics.compute()
        teacher = self.teacher_metrics.compute()
        report = self._report(student, teacher)
        self.test_report = report
        for key, value in _flatten(report).items():
            self.log(f"test/{key}", float(value))
        log_dir = self.trainer.log_dir if self._trainer is not None else None
        if log_dir and self.trainer.is_global_zero:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            (Path(log_dir) / "distillation_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    def _report(self, student: dict, teacher: dict) -> dict[str, Any]:
        """Parameters, latencies, metrics and retention, as exact Python numbers."""
        student_params = count_parameters(self.student)
        teacher_params = self.teacher.num_parameters()
        latency = {name: _mean_ms(times) for name, times in self._latency.items()}
        report: dict[str, Any] = {
            "student_params": student_params,
            "teacher_params": teacher_params,
            "param_ratio": student_params / teacher_params,
            "student_latency_ms": latency["student"],
            "teacher_latency_ms": latency["teacher"],
            "speedup": latency["teacher"] / latency["student"] if latency["student"] else float("nan"),
            "latency_batches": len(self._latency["student"]),
        }
        report.update(retention(student, teacher, {task: self.student.heads[task].main_metric for task in student}))
        return report

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> list[dict]:
        task = self._task(batch)
        rows = self.student.heads[task].predict(self.student(batch, task).logits)
        return [{"task": task, **row} for row in rows]

    # -- optimisation and checkpoints --------------------------------------------------------------

    def configure_optimizers(self):
        return adamw_with_warmup(self)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Leave the frozen teacher out: it is reloaded from its own source."""
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("teacher.")}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"].update({f"teacher.{k}": v for k, v in self.teacher.state_dict().items()})


def _ever_positive(schedule) -> bool:
    return schedule.start > 0 or schedule.end > 0


def _span_mask(batch: dict) -> torch.Tensor | None:
    """Positions a QA span may take: real tokens, and context tokens (plus CLS) when known."""
    mask = batch.get("attention_mask")
    context = batch.get("context_mask")
    if context is None:
        return None if mask is None else mask.bool()
    return context.bool() if mask is None else context.bool() & mask.bool()


def _float(logits):
    return logits.float() if isinstance(logits, torch.Tensor) else tuple(x.float() for x in logits)


def _mean_ms(times: list[float]) -> float:
    kept = times[1:] if len(times) > 1 else times  # the first batch warms caches up
    return 1000.0 * statistics.fmean(kept) if kept else float("nan")


def _flatten(report: dict) -> dict[str, float]:
    return {k: v for k, v in report.items() if isinstance(v, (int, float))}
