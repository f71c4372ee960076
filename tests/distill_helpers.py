"""Builders for the distillation tests: tiny teachers saved locally (never downloaded)."""

from __future__ import annotations

from pathlib import Path

import torch

from instructrec.backbones import _tiny_bert_config

LABELS = ["positive", "negative"]


def tiny_config(layers: int = 6, hidden: int = 32, heads: int = 2):
    from transformers import BertConfig

    base = _tiny_bert_config()
    return BertConfig(
        vocab_size=base["vocab_size"], hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=2 * hidden, max_position_embeddings=128,
        initializer_range=0.2,  # larger than BERT's 0.02, so logits differ between inputs
    )


def save_classification_teacher(folder: Path, layers: int = 6, labels=LABELS, seed: int = 0) -> Path:
    """A random tiny-bert-shaped BertForSequenceClassification in save_pretrained format."""
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    config = tiny_config(layers)
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def save_qa_teacher(folder: Path, layers: int = 4, seed: int = 0) -> Path:
    from transformers import BertForQuestionAnswering

    torch.manual_seed(seed)
    BertForQuestionAnswering(tiny_config(layers)).save_pretrained(folder)
    return folder


def random_batch(batch: int = 4, seq: int = 12, seed: int = 0, pad: bool = True) -> dict:
    """Token ids of the tiny vocabulary with right padding on some rows, and labels."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (batch, seq), generator=generator)
    ids[:, 0] = 2  # [CLS]
    mask = torch.ones(batch, seq, dtype=torch.long)
    if pad:
        for row in range(1, batch, 2):
            mask[row, seq - 3 - row % 4 :] = 0
    ids = ids.masked_fill(mask == 0, 0)
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": torch.zeros_like(ids),
        "labels": torch.randint(0, 2, (batch,), generator=generator),
    }
