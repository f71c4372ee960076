"""`instructrec export` for every family: the reader as a transformers QA model that answers as
`instructrec ask` does, the distilled student in the heads format, model cards."""

from __future__ import annotations

import json

import pytest
import torch

from instructrec.cli import main
from instructrec.models.qa_reasoning import QAReasoningModule

from distill_helpers import random_batch, save_classification_teacher


def save(model, path, class_path, **extra):
    hparams = {**dict(model.hparams), "_class_path": class_path}
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hparams, "global_step": 7, "epoch": 1, **extra}, path)
    return path


@pytest.fixture
def reader_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = QAReasoningModule("tiny-bert")
    model.null_threshold.fill_(1.5)
    run = tmp_path / "run" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("model:\n  class_path: instructrec.models.QAReasoningModule\n")
    callbacks = {"ModelCheckpoint{'monitor': 'val/f1'}": {"best_model_score": torch.tensor(61.25), "monitor": "val/f1"}}
    return model.eval(), save(model, run / "checkpoints" / "best.ckpt", "instructrec.models.QAReasoningModule",
                              callbacks=callbacks)


QUESTIONS = [
    ("Who wrote Hamlet?", "Hamlet is a tragedy written by William Shakespeare around 1600."),
    ("Where is the milk?", "Mary got the milk in the kitchen. John went to the garden."),
    ("When was the tower built?", "The tower was built in 1889 for the World's Fair in Paris."),
]


def test_the_reader_exports_as_a_transformers_qa_model_with_the_same_logits(tmp_path, reader_checkpoint):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    model, checkpoint = reader_checkpoint
    main(["export", str(checkpoint), str(tmp_path / "reader")])
    exported = AutoModelForQuestionAnswering.from_pretrained(tmp_path / "reader").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "reader")
    questions, contexts = zip(*QUESTIONS)
    batch = tokenizer(list(questions), list(contexts), return_tensors="pt", padding=True)
    with torch.no_grad():
        start, end = model(**batch)
        out = exported(**batch)
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(out.start_logits[mask], start[mask])
    torch.testing.assert_close(out.end_logits[mask], end[mask])


def best_span(model, tokenizer, question: str, context: str, max_answer_length: int = 30) -> str:
    """What a transformers user writes to read an answer off a QA model (transformers 5 has no
    `question-answering` pipeline any more): the highest start + end logit over context tokens."""
    encoded = tokenizer(question, context, return_offsets_mapping=True, return_tensors="pt")
    offsets = encoded.pop("offset_mapping")[0].tolist()
    in_context = [s == 1 for s in encoded.sequence_ids(0)]
    with torch.no_grad():
        out = model(**encoded)
    start, end = out.start_logits[0].tolist(), out.end_logits[0].tolist()
    spans = [(start[i] + end[j], i, j) for i in range(len(start)) for j in range(i, min(i + max_answer_length, len(end)))
             if in_context[i] and in_context[j]]
    _, i, j = max(spans)
    return context[offsets[i][0]:offsets[j][1]]


def test_the_exported_reader_answers_as_instructrec_ask_does(tmp_path, reader_checkpoint, capsys):
    """The same reader: `ask` over a one-passage knowledge base and plain transformers over the
    exported folder pick the same span of the same context."""
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    _, checkpoint = reader_checkpoint
    main(["export", str(checkpoint), str(tmp_path / "reader")])
    exported = AutoModelForQuestionAnswering.from_pretrained(tmp_path / "reader").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "reader")
    for question, context in QUESTIONS:
        kb = tmp_path / "kb.jsonl"
        kb.write_text(json.dumps({"id": "p", "text": context}) + "\n")
        main(["ask", "--kb", str(kb), "--ckpt", str(checkpoint), "--json", "--hops", "1", question])
        ours = json.loads(capsys.readouterr().out.splitlines()[-1])["answer"]
        assert best_span(exported, tokenizer, question, context) == ours and ours in context, question


def test_the_reader_card_names_family_threshold_metric_and_config(tmp_path, reader_checkpoint):
    _, checkpoint = reader_checkpoint
    main(["export", str(checkpoint), str(tmp_path / "reader")])
    card = (tmp_path / "reader" / "README.md").read_text()
    assert "An instructrec `QAReasoningModule` exported from `best.ckpt` (step 7, epoch 1); backbone `tiny-bert`." in card
    assert "Loads with: AutoModelForQuestionAnswering" in card
    assert "null threshold tuned on validation: 1.5000" in card
    assert "- `ModelCheckpoint{'monitor': 'val/f1'}`: 61.2500" in card
    assert "class_path: instructrec.models.QAReasoningModule" in card


def test_the_distilled_student_exports_in_the_heads_format(tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModel

    from instructrec.distill.module import DistillationModule

    teacher = save_classification_teacher(tmp_path / "teacher")
    torch.manual_seed(0)
    model = DistillationModule(teacher=str(teacher), student_layers=[0, 2], backbone="tiny-bert").eval()
    checkpoint = save(model, tmp_path / "student.ckpt", "instructrec.distill.DistillationModule")
    main(["export", str(checkpoint), str(tmp_path / "student")])
    out = tmp_path / "student"
    manifest = json.loads((out / "heads.json").read_text())
    (task,) = manifest["tasks"]
    assert manifest["tasks"][task]["labels"] == ["positive", "negative"]
    encoder = AutoModel.from_pretrained(out, add_pooling_layer=False).eval()
    assert encoder.config.num_hidden_layers == 2  # the student, not the 6-layer teacher
    heads = load_file(out / "heads.safetensors")
    batch = random_batch()
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        expected = model(batch, task).logits
        states = encoder(**inputs).last_hidden_state[:, 0]
    torch.testing.assert_close(states @ heads[f"{task}.weight"].T + heads[f"{task}.bias"], expected)
    assert "An instructrec `DistillationModule`" in (out / "README.md").read_text()
