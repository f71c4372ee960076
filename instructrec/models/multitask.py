"""``MultiTaskModule``: one shared encoder, one head per task; a single-task model is the same
module with one task.

A plain LightningModule: it takes batches and never sees a DataModule. A batch holds one task's
examples and names it in ``batch["task"]`` (a string; a batch without one belongs to the model's
only task). ``tasks`` (``{name: {"type": ..., "labels": [...]}}``) comes from the data (the CLI
links it) and is saved in the checkpoint, so a reloaded model rebuilds its heads and names its
predictions.

Logged: ``train/loss`` (weighted), ``train/<task>/loss``; per task ``val/<task>/loss`` and its
metrics ``val/<task>/<metric>`` (classification ``acc``, ``f1``; see :mod:`.heads`), and
``val/score``, the mean of the tasks' main metrics (the checkpoint monitor). Same for ``test/``.

DDP: a step's batch touches one head, so the other heads get no gradient. All ranks step the same
task (the data's schedule is shared), and the strategy must be ``ddp_find_unused_parameters_true``
when there are several tasks: globally unused heads then keep ``grad=None`` and AdamW leaves them
alone, exactly as on one device. :meth:`on_fit_start` refuses plain DDP with a clear message.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn

from instructrec import backbones
from instructrec.batch import encoder_inputs
from instructrec.models.evaluation import TaskMetrics, log_stage_metrics, task_of
from instructrec.models.heads import TaskHead, build_head
from instructrec.models.optim import adamw_with_warmup
from instructrec.models.weighting import DynamicWeightAveraging, build_weighting


class MultiTaskModule(L.LightningModule):
    """A shared encoder with one head per task.

    Args:
        tasks: task name -> ``{"type": "classification" | "qa" | "regression" | "ranking",
            "labels": [...]}`` (labels, in label-index order, for classification), linked from the
            data module's ``tasks``.
        backbone: encoder name: ``auto``, ``minilm-l6``, ``tiny-bert``, a local folder (an
            ``instructrec export`` folder too), or a hub id online.
        pretrained: load the backbone's weights (False: same architecture, random weights).
        loss_weighting: ``static`` (``task_weights``), ``uncertainty`` (Kendall et al. 2018) or
            ``dwa`` (dynamic weight averaging, Liu et al. 2019); see :mod:`.weighting`.
        task_weights: static weights by task name (missing tasks: 1).
        dwa_temperature: DWA's temperature.
        learning_rate: peak AdamW learning rate.
        weight_decay: AdamW weight decay (not on biases, LayerNorm weights, log-variances).
        warmup_ratio: share of the training steps spent warming the learning rate up linearly.
        dropout: dropout before each head.
        pooling: how sentence-level heads (classification, regression, ranking) read the tokens:
            ``first`` or ``mean`` (see :mod:`.heads`); a task spec's own ``pooling`` wins. It is
            kept in :attr:`tasks`, so a distillation student built from them pools the same way.
    """

    def __init__(
        self,
        tasks: dict[str, dict[str, Any]],
        backbone: str = "tiny-bert",
        pretrained: bool = True,
        loss_weighting: str = "static",
        task_weights: dict[str, float] | None = None,
        dwa_temperature: float = 2.0,
        learning_rate: float = 5e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        dropout: float = 0.1,
        pooling: str = "first",
    ) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("MultiTaskModule needs at least one task")
        self.save_hyperparameters()
        # Record what `auto` meant here, so the checkpoint rebuilds the same architecture anywhere.
        self.hparams.backbone = backbones.canonical(backbone)
        self.tasks = {name: with_pooling(spec, pooling) for name, spec in tasks.items()}
        self.task_names = list(self.tasks)
        self.encoder = backbones.load_encoder(backbone, pretrained=pretrained)
        hidden = self.encoder.config.hidden_size
        self.heads = nn.ModuleDict({name: build_head(spec, hidden, dropout) for name, spec in self.tasks.items()})
        self.loss_weighting = build_weighting(
            loss_weighting, {n: s["type"] for n, s in self.tasks.items()}, task_weights, dwa_temperature
        )
        self.val_metrics = TaskMetrics(self.heads)
        self.test_metrics = TaskMetrics(self.heads)

    # -- the model -------------------------------------------------------------------------------

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, task: str | None = None):
        """The head's outputs for ``task`` (see :mod:`.heads`) from token ids ``(batch, seq)``."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        states = self.encoder(**inputs).last_hidden_state
        return self.heads[self._name(task)](states, attention_mask)

    def task_of(self, batch: dict) -> str:
        return task_of(batch.get("task"), self.task_names)

    def _name(self, task: str | None) -> str:
        return task_of(task, self.task_names)

    def _outputs(self, batch: dict, name: str):
        return self(**encoder_inputs(batch), task=name)

    # -- training --------------------------------------------------------------------------------

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        name = self.task_of(batch)
        head: TaskHead = self.heads[name]
        loss = head.loss(self._outputs(batch, name), batch)
        weighted = self.loss_weighting(loss, self.task_names.index(name))
        size = len(batch["input_ids"])
        self.log("train/loss", weighted, prog_bar=True, batch_size=size)
        if len(self.task_names) > 1:
            self.log(f"train/{name}/loss", loss, batch_size=size)
        return weighted

    def on_fit_start(self) -> None:
        from lightning.pytorch.strategies import DDPStrategy

        strategy = self.trainer.strategy
        if (
            len(self.task_names) > 1
            and isinstance(strategy, DDPStrategy)
            and self.trainer.world_size > 1
            and not strategy._ddp_kwargs.get("find_unused_parameters", False)
        ):
            raise RuntimeError(
                "MultiTaskModule with several tasks leaves the heads a batch does not touch without "
                "gradients: use strategy 'ddp_find_unused_parameters_true' (see configs/trainer/ddp.yaml)"
            )

    def on_train_epoch_end(self) -> None:
        if isinstance(self.loss_weighting, DynamicWeightAveraging):
            self.loss_weighting.end_epoch(reduce=lambda t: self.trainer.strategy.reduce(t, reduce_op="sum"))
        if len(self.task_names) > 1:
            for name, weight in zip(self.task_names, self.loss_weighting.current_weights()):
                self.log(f"train/{name}/weight", weight.float())

    # -- evaluation ------------------------------------------------------------------------------

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, "test", self.test_metrics)

    def _evaluate(self, batch: dict, stage: str, metrics: TaskMetrics) -> None:
        name = self.task_of(batch)
        head: TaskHead = self.heads[name]
        outputs = self._outputs(batch, name)
        size = len(batch["input_ids"])
        self.log(f"{stage}/{name}/loss", head.loss(outputs, batch), batch_size=size, sync_dist=True, add_dataloader_idx=False)
        metrics.update(name, head, outputs, batch)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val", self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test", self.test_metrics)

    def _log_metrics(self, stage: str, metrics: TaskMetrics) -> None:
        log_stage_metrics(self, stage, metrics)

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> list[dict]:
        """Per example: the head's prediction (classification: the option and its probabilities)."""
        name = self.task_of(batch)
        rows = self.heads[name].predict(self._outputs(batch, name))
        return [{"task": name, **row} for row in rows]

    def configure_optimizers(self):
        return adamw_with_warmup(self)


def with_pooling(spec: dict[str, Any], pooling: str) -> dict[str, Any]:
    """A copy of a task spec with its ``pooling`` set (sentence-level tasks only; its own wins)."""
    spec = dict(spec)
    if spec.get("type") != "qa":
        spec.setdefault("pooling", pooling)
    return spec

