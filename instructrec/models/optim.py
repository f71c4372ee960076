"""The optimiser every model family shares: AdamW with linear warm-up and linear decay."""

from __future__ import annotations

import lightning as L
from torch import nn
from torch.optim import AdamW
from transformers import get_linear_schedule_with_warmup

# Biases and normalisation weights are not decayed (the BERT recipe), nor learned loss log-variances.
NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight", "log_vars")


def decay_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups of ``module``'s trainable parameters: ``NO_DECAY`` ones undecayed."""
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    return [
        {"params": [p for n, p in named if not n.endswith(NO_DECAY)], "weight_decay": weight_decay},
        {"params": [p for n, p in named if n.endswith(NO_DECAY)], "weight_decay": 0.0},
    ]


def adamw_with_warmup(module: L.LightningModule):
    """The ``configure_optimizers`` return value, with the schedule stepped every batch.

    Reads ``learning_rate``, ``weight_decay`` and ``warmup_ratio`` from the module's hyperparameters,
    which every model family takes under those names.
    """
    learning_rate = module.hparams.learning_rate
    weight_decay = module.hparams.weight_decay
    warmup_ratio = module.hparams.warmup_ratio
    optimizer = AdamW(decay_groups(module, weight_decay), lr=learning_rate)
    total = max(1, int(module.trainer.estimated_stepping_batches))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * total), total)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
