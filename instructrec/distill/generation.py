"""Distillation for generation: a causal-LM student learns from a frozen causal-LM teacher.

* :class:`GenerationDistillationModule` is a :class:`~instructrec.models.GenerationModule` (the
  student: its generation, metrics, generation files and export are that module's) whose training
  loss also reads the teacher: ``soft * T^2 KL(teacher_T || student_T)`` over the vocabulary at
  every answer token (word-level KD, Kim and Rush 2016 after Hinton et al. 2015) plus ``hard *``
  the cross-entropy on the data's answer tokens. The student starts as a copy of the teacher that
  keeps ``student_layers`` (default every other layer: half the depth), the DistilBERT recipe
  applied to a decoder.
* Sequence-level KD (Kim and Rush 2016): :class:`SequenceKDDataModule` replaces every training
  answer by the teacher's beam-search output, generated once and cached (keyed by the teacher's
  bytes, the decoding options and the training prompts, like the classification teacher cache);
  a plain hard-label loss on those answers is sequence-level distillation.
* ``test`` generates with both models on the same batches, each ``generate`` timed, and logs both
  models' metrics, retention (student / teacher), parameter counts and generation throughput
  (``test/student_tokens_per_s``, ``test/teacher_tokens_per_s``, ``test/speedup``); the numbers
  are also in ``<default_root_dir>/distillation_report.json``.

The teacher is an ``instructrec fit`` checkpoint of a GenerationModule, or a causal-LM backbone
(a registered name or a folder, e.g. an ``instructrec export``); checkpoints of this module hold
the student only, and the teacher is reloaded from its source.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from instructrec.batch import IGNORE_LABEL, PROMPT_INPUTS
from instructrec.distill.losses import SoftTargetKLLoss
from instructrec.distill.teacher import expect_frozen_teacher
from instructrec.models.evaluation import TaskMetrics, count_parameters, retention
from instructrec.models.generation import DecodingOptions, GenerationModule, answer_logits, load_generator


def select_decoder_layers(model: nn.Module, layers: list[int]) -> nn.Module:
    """A copy of a causal LM keeping its embeddings, head and the decoder ``layers`` (in order),
    each attention renumbered for the KV cache, and the config's layer count updated."""
    student = copy.deepcopy(model)
    decoder = student.get_decoder()
    total = len(decoder.layers)
    if not layers or any(not 0 <= i < total for i in layers) or sorted(set(layers)) != list(layers):
        raise ValueError(f"student layers must be increasing indices of the teacher's {total} layers, got {layers}")
    decoder.layers = nn.ModuleList(decoder.layers[i] for i in layers)
    for position, layer in enumerate(decoder.layers):
        if hasattr(layer.self_attn, "layer_idx"):
            layer.self_attn.layer_idx = position
    student.config.num_hidden_layers = len(layers)
    if getattr(student.config, "layer_types", None):
        student.config.layer_types = [student.config.layer_types[i] for i in layers]
    return student


def every_other_layer(total: int) -> list[int]:
    """Half the depth, spread over the teacher (0, 2, 4, ...), as DistilBERT."""
    return list(range(0, total, 2))


class GenerationDistillationModule(GenerationModule):
    """A causal-LM student (the teacher's layers) trained from a frozen causal-LM teacher.

    Args:
        teacher: a GenerationModule checkpoint (``.ckpt``) or a causal-LM backbone name or folder.
        tasks: the tasks (linked from the data by the CLI); None: the teacher's.
        backbone: the tokenizer the data is encoded with (linked to the data): the teacher's.
        student_layers: the teacher layers the student keeps (default every other one).
        soft_weight: weight of the word-level KL to the teacher's token distributions.
        hard_weight: weight of the cross-entropy on the data's answers (with
            :class:`SequenceKDDataModule`, the teacher's answers: sequence-level KD).
        temperature: the soft targets' temperature.
        decoding, learning_rate, weight_decay, warmup_ratio: as :class:`GenerationModule`.
    """

    def __init__(
        self,
        teacher: str,
        tasks: dict[str, dict[str, Any]] | None = None,
        backbone: str = "tiny-llama",
        student_layers: list[int] | None = None,
        soft_weight: float = 0.5,
        hard_weight: float = 0.5,
        temperature: float = 2.0,
        decoding: DecodingOptions | None = None,
        learning_rate: float = 1e-4,
        weight_decay: float = 0.0,
        warmup_ratio: float = 0.0,
    ) -> None:
        frozen = load_generator(teacher, tasks)
        frozen.requires_grad_(False)
        tasks = tasks or frozen.tasks
        super().__init__(tasks, backbone=backbone, pretrained=False, decoding=decoding, learning_rate=learning_rate,
                         weight_decay=weight_decay, warmup_ratio=warmup_ratio)
        self.save_hyperparameters()
        self.hparams.decoding = dict(self.decoding.__dict__)
        layers = student_layers if student_layers is not None else every_other_layer(len(frozen.model.get_decoder().layers))
        self.hparams.student_layers = list(layers)
        self.model = select_decoder_layers(frozen.model, layers).train()
        self.model.requires_grad_(True)
        self.teacher = frozen
        self.soft_loss = SoftTargetKLLoss()
        self.teacher_metrics = TaskMetrics(self.generated)
        self._timing: dict[str, list[tuple[float, int]]] = {"student": [], "teacher": []}
        self.test_report: dict[str, Any] = {}

    def train(self, mode: bool = True):
        """The teacher stays in eval mode whatever Lightning sets."""
        super().train(mode)
        self.teacher.eval()
        return self

    def on_fit_start(self) -> None:
        expect_frozen_teacher(self, self.teacher)

    # -- training --------------------------------------------------------------------------------

    def distillation_losses(self, batch: dict) -> dict[str, torch.Tensor]:
        """The unweighted parts: ``soft`` (KL at the answer tokens, times T^2) and ``hard``."""
        logits, targets = answer_logits(self.model, batch)
        answer = targets != IGNORE_LABEL
        parts = {}
        if self.hparams.hard_weight > 0:
            parts["hard"] = nn.functional.cross_entropy(logits[answer].float(), targets[answer])
        if self.hparams.soft_weight > 0:
            with torch.no_grad():
                teacher, _ = answer_logits(self.teacher.model, batch)
            parts["soft"] = self.soft_loss(logits[answer].float(), teacher[answer].float(), temperature=self.hparams.temperature)
        return parts

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        parts = self.distillation_losses(batch)
        weights = {"soft": self.hparams.soft_weight, "hard": self.hparams.hard_weight}
        loss = sum(weights[name] * value for name, value in parts.items())
        size = len(batch["input_ids"])
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        for name, value in parts.items():
            self.log(f"train/{name}", value, batch_size=size)
        return loss

    # -- test: both models, timed ----------------------------------------------------------------

    def on_test_epoch_start(self) -> None:
        self._timing = {"student": [], "teacher": []}

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        name = self.task_of(batch)
        prompts = tuple(batch[key] for key in PROMPT_INPUTS)
        for who, module, metrics in (("student", self, self.test_metrics), ("teacher", self.teacher, self.teacher_metrics)):
            texts, seconds, tokens = self._timed_generation(module, prompts)
            self._timing[who].append((seconds, tokens))
            metrics.update(name, self.generated[name], texts, batch)
            if who == "student":
                self._written.setdefault(f"test:{name}", []).extend(
                    {"id": i, "prompt": p, "prediction": g, "references": r}
                    for i, p, g, r in zip(batch["example_id"], batch["prompt"], texts, batch["references"])
                )

    def _timed_generation(self, module: GenerationModule, prompts) -> tuple[list[str], float, int]:
        """Generated texts, seconds, and the new tokens generated (up to each row's end token)."""
        synchronize = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        synchronize()
        start = time.perf_counter()
        texts = module.generate(*prompts)
        synchronize()
        seconds = time.perf_counter() - start
        tokens = sum(len(ids) + 1 for ids in module.tokenizer(texts, add_special_tokens=False)["input_ids"])
        return texts, seconds, tokens

    def on_test_epoch_end(self) -> None:
        student, teacher = self.test_metrics.compute(), self.teacher_metrics.compute()
        report = self.generation_report(student, teacher)
        self.test_report = report
        for key, value in report.items():
            if isinstance(value, (int, float)):
                self.log(f"test/{key}", float(value))
        self._write_generations("test")
        trainer = self._trainer
        if trainer is not None and trainer.is_global_zero:
            path = Path(trainer.default_root_dir) / "distillation_report.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    def generation_report(self, student: dict, teacher: dict) -> dict[str, Any]:
        """Parameters, throughput (new tokens per second over the test set, first batch left out
        as warm-up when there are more), metrics and retention, as plain numbers."""
        throughput = {}
        for who, timings in self._timing.items():
            kept = timings[1:] if len(timings) > 1 else timings
            seconds = sum(s for s, _ in kept)
            throughput[who] = sum(t for _, t in kept) / seconds if seconds else float("nan")
        report: dict[str, Any] = {
            "student_params": count_parameters(self.model),
            "teacher_params": count_parameters(self.teacher.model),
            "student_layers": len(self.model.get_decoder().layers),
            "teacher_layers": len(self.teacher.model.get_decoder().layers),
            "student_tokens_per_s": throughput["student"],
            "teacher_tokens_per_s": throughput["teacher"],
            "speedup": throughput["student"] / throughput["teacher"] if throughput["teacher"] else float("nan"),
            # the same batches: a student that stops earlier is faster per batch, not per token
            "student_seconds": sum(s for s, _ in self._timing["student"]),
            "teacher_seconds": sum(s for s, _ in self._timing["teacher"]),
        }
        report["param_ratio"] = report["student_params"] / report["teacher_params"]
        report.update(retention(student, teacher, {task: self.generated[task].main_metric for task in student}))
        return report

    # -- checkpoints: the student only -----------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("teacher.")}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"].update({f"teacher.{k}": v for k, v in self.teacher.state_dict().items()})
