"""The extractive reader fits a few steps on a tiny BERT and its validation scores answer texts."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from instructrec import backbones
from instructrec.data.qa_features import prepare_qa_features
from instructrec.models.qa_reasoning import QAReasoningModule
from instructrec.qa.postprocess import write_prediction_files

EXAMPLES = [
    ("q1", "Who wrote the letter?", "The letter was written by Alice in Paris.", "Alice"),
    ("q2", "Where was the letter written?", "The letter was written by Alice in Paris.", "Paris"),
    ("q3", "What colour is the sky?", "On a clear day the sky is blue and the grass is green.", "blue"),
    ("q4", "Who is the king?", "Nobody here mentions royalty at all.", None),
]


def batches(version_2: bool, size: int = 2) -> list[dict]:
    tokenizer = backbones.load_tokenizer("tiny-bert")
    rows = [e for e in EXAMPLES if version_2 or e[3] is not None]
    ids, questions, contexts, answers = map(list, zip(*rows))
    starts = [c.find(a) if a else None for c, a in zip(contexts, answers)]
    features = prepare_qa_features(tokenizer, questions, contexts, starts, answers, max_length=48, doc_stride=16)
    out = []
    for first in range(0, len(features["input_ids"]), size):
        part = range(first, min(first + size, len(features["input_ids"])))
        padded = tokenizer.pad({"input_ids": [features["input_ids"][f] for f in part]}, return_tensors="pt")
        example = [features["example_index"][f] for f in part]
        out.append(
            {
                "input_ids": padded["input_ids"],
                "attention_mask": padded["attention_mask"],
                "start_positions": torch.tensor([features["start_positions"][f] for f in part]),
                "end_positions": torch.tensor([features["end_positions"][f] for f in part]),
                "offset_mapping": [features["offset_mapping"][f] for f in part],
                "example_id": [ids[i] for i in example],
                "context": [contexts[i] for i in example],
                "answers": [[answers[i]] if answers[i] else [] for i in example],
            }
        )
    return out


@pytest.mark.parametrize("version_2", [False, True])
def test_fits_and_scores_answer_texts(version_2, tmp_path):
    torch.manual_seed(0)
    data = batches(version_2)
    model = QAReasoningModule("tiny-bert", version_2=version_2, learning_rate=3e-3, warmup_ratio=0.0, dropout=0.0)
    trainer = L.Trainer(
        max_steps=40, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu", default_root_dir=tmp_path,
        check_val_every_n_epoch=20,
    )
    loader = DataLoader(data, batch_size=None)
    before = trainer.validate(model, loader, verbose=False)[0]
    trainer.fit(model, loader, loader)
    after = trainer.validate(model, loader, verbose=False)[0]
    assert after["val/loss"] < before["val/loss"]
    assert 0.0 <= after["val/f1"] <= 100.0 and "val/exact_match" in after
    assert after["val/f1"] >= 50.0  # a few examples, memorised

    model.eval()
    with torch.no_grad():
        collected = [{"start": s, "end": e, **b} for b in data for s, e in [model(b["input_ids"], b["attention_mask"])]]
    ids, predictions, _ = model.decode(collected)
    paths = write_prediction_files(tmp_path / "out", ids, predictions, version_2=version_2)
    written = json.loads(paths["predictions"].read_text())
    assert set(written) == set(ids) and all(isinstance(t, str) for t in written.values())
    assert ("null_odds" in paths) == version_2
