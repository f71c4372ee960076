"""The optimiser every model family shares: AdamW with linear warm-up and linear decay."""

from __future__ import annotations

import lightning as L
from torch.optim import AdamW
from transformers import get_linear_schedule_with_warmup

# Biases and normalisation weights are not decayed (the BERT recipe), nor learned loss log-variances.
NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight", "log_vars")


def adamw_with_warmup(module: L.LightningModule):
    """The ``configure_optimizers`` return value, with the schedule stepped every batch.

    Reads ``learning_rate``, ``weight_decay`` and ``warmup_ratio`` from the module's hyperparameters,
    which every model family takes under those names.
    """
    learning_rate = module.hparams.learning_rate
    weight_decay = module.hparams.weight_decay
    warmup_ratio = module.hparams.warmup_ratio
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if not n.endswith(NO_DECAY)], "weight_decay": weight_decay},
        {"params": [p for n, p in named if n.endswith(NO_DECAY)], "weight_decay": 0.0},
    ]
    optimizer = AdamW(groups, lr=learning_rate)
    total = max(1, int(module.trainer.estimated_stepping_batches))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * total), total)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
