"""``InstructionClassifier``: an encoder reads a classification instruction; a linear head on the
first token's state picks one of the options.

A plain LightningModule: it takes batches (``input_ids``, ``attention_mask``, optional
``token_type_ids``, ``labels``) and never sees a DataModule. ``label_names`` come from the data
(the CLI links them), and are saved in the checkpoint so a reloaded model names its predictions.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from instructrec import backbones
from instructrec.models.optim import adamw_with_warmup

ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class InstructionClassifier(L.LightningModule):
    """Sequence classification over instruction text.

    Args:
        label_names: the options, in label-index order (linked from the data module).
        backbone: encoder name: ``auto``, ``minilm-l6``, ``tiny-bert``, a local folder, or a hub id online.
        pretrained: load the backbone's weights (False: same architecture, random weights).
        learning_rate: peak AdamW learning rate.
        weight_decay: AdamW weight decay (not applied to biases and LayerNorm weights).
        warmup_ratio: share of the training steps spent warming the learning rate up linearly.
        dropout: dropout before the classification head.
    """

    def __init__(
        self,
        label_names: list[str],
        backbone: str = "tiny-bert",
        pretrained: bool = True,
        learning_rate: float = 5e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if not label_names or len(set(label_names)) != len(label_names):
            raise ValueError(f"label_names must be distinct and non-empty, got {label_names}")
        self.save_hyperparameters()
        # Record what `auto` meant here, so the checkpoint rebuilds the same architecture anywhere.
        self.hparams.backbone = backbones.canonical(backbone)
        self.label_names = list(label_names)
        self.encoder = backbones.load_encoder(backbone, pretrained=pretrained)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.encoder.config.hidden_size, len(label_names))
        num_classes = len(label_names)
        metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes, average="micro"),
                "f1": MulticlassF1Score(num_classes, average="macro"),
            }
        )
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def forward(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        """Logits ``(batch, num_labels)`` from token ids ``(batch, seq)``."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        states = self.encoder(**inputs).last_hidden_state
        return self.head(self.dropout(states[:, 0]))

    def _logits(self, batch: dict) -> torch.Tensor:
        return self(**{k: batch[k] for k in ENCODER_INPUTS if k in batch})

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = nn.functional.cross_entropy(self._logits(batch), batch["labels"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["labels"]))
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_metrics)

    def _evaluate(self, batch: dict, stage: str, metrics: MetricCollection) -> None:
        logits = self._logits(batch)
        labels = batch["labels"]
        self.log(f"{stage}/loss", nn.functional.cross_entropy(logits, labels), batch_size=len(labels), sync_dist=True)
        metrics.update(logits, labels)
        self.log_dict(metrics, batch_size=len(labels), prog_bar=stage == "val")

    def predict_step(self, batch: dict, batch_idx: int) -> list[dict]:
        """Per example: the predicted option and each option's probability."""
        probabilities = self._logits(batch).softmax(-1)
        return [
            {"label": self.label_names[int(row.argmax())], "probabilities": dict(zip(self.label_names, row.tolist()))}
            for row in probabilities
        ]

    def configure_optimizers(self):
        return adamw_with_warmup(
            self,
            learning_rate=self.hparams.learning_rate,
            weight_decay=self.hparams.weight_decay,
            warmup_ratio=self.hparams.warmup_ratio,
        )
