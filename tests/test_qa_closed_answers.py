"""Closed answers for the extractive reader: answers no span of the context can be (bAbI's yes/no,
counts, lists, directions) are labelled as classes, read by an answer head, and written as the
example's answer; spans are read as before. Commands that cannot use the head refuse the reader."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch

from instructrec.batch import IGNORE_LABEL, SPAN_CLASS
from instructrec.callbacks import QAPredictionWriter
from instructrec.data import InstructionDataModule
from instructrec.errors import InputError
from instructrec.instructions import InstructionError
from instructrec.models.qa_reasoning import QAReasoningModule

# "no" is told by no fact before line 3, but occurs in fact 5 ("no longer"): a closed answer is a
# class wherever its text happens to occur.
STORY = (
    "1 Mary moved to the bathroom.\n"
    "2 John went to the hallway.\n"
    "3 Is John in the kitchen?\tno\t2\n"
    "4 Is Mary in the bathroom?\tyes\t1\n"
    "5 Daniel is no longer in the office.\n"
    "6 Is Daniel in the office?\tno\t5\n"
    "7 Where is Mary?\tbathroom\t1\n"
)
ANSWERS = {"s0:3": "no", "s0:4": "yes", "s0:6": "no", "s0:7": "bathroom"}


@pytest.fixture
def story(tmp_path):
    path = tmp_path / "qa_train.txt"
    path.write_text(STORY)
    return path


def babi_data(tmp_path, story, **options) -> InstructionDataModule:
    settings = dict(train=str(story), val=str(story), test=str(story), predict=str(story), template="babi",
                    tokenizer="tiny-bert", max_length=256, doc_stride=16, batch_size=4, closed_answers="auto",
                    cache_dir=str(tmp_path / "cache"))
    return InstructionDataModule(**{**settings, **options})


def short_id(example_id: str) -> str:
    return example_id.split(":", 1)[1]


def test_auto_closed_answers_are_the_training_answers_outside_their_context(tmp_path, story):
    data = babi_data(tmp_path, story)
    assert data.answer_classes == ["no", "yes"]
    assert data.tasks == {"babi": {"type": "qa", "answers": ["no", "yes"]}}
    assert "answers" not in babi_data(tmp_path, story, closed_answers=None).tasks["babi"]


def test_features_carry_the_answer_class_and_closed_answers_no_span(tmp_path, story):
    data = babi_data(tmp_path, story)
    dataset, _, _ = data.encode("train")
    rows = {short_id(r["example_id"]): r for r in dataset}
    assert {i: r["answer_class"] for i, r in rows.items()} == {"s0:3": 1, "s0:4": 2, "s0:6": 1, "s0:7": SPAN_CLASS}
    for closed in ("s0:3", "s0:4", "s0:6"):  # "no" in "no longer" (s0:6) is not labelled as a span
        assert (rows[closed]["start_positions"], rows[closed]["end_positions"]) == (0, 0)
    span = rows["s0:7"]
    start, end = span["offset_mapping"][span["start_positions"]][0], span["offset_mapping"][span["end_positions"]][1]
    assert span["context"][start:end] == "bathroom"
    assert all(r["answers"] == [ANSWERS[i]] for i, r in rows.items()), "closed answers score against their text"


def test_an_answer_outside_its_context_that_is_not_closed_is_refused_by_name(tmp_path, story):
    data = babi_data(tmp_path, story, closed_answers=["yes"])
    with pytest.raises(InstructionError, match=r"answer 'no' does not occur in the context nor one of the closed answers \['yes'\]"):
        data.encode("train")
    with pytest.raises(ValueError, match="closed_answers must be a list of answers or 'auto'"):
        babi_data(tmp_path, story, closed_answers="yes")


def test_auto_needs_a_training_split(tmp_path, story):
    data = babi_data(tmp_path, story, train=None, val=None, predict=None)
    with pytest.raises(InstructionError, match="auto reads the answers off the training split"):
        data.tasks


def test_the_loss_adds_the_answer_heads_cross_entropy(tmp_path, story):
    torch.manual_seed(0)
    data = babi_data(tmp_path, story)
    data.setup("fit")
    model = QAReasoningModule("tiny-bert", tasks=data.tasks, dropout=0.0).eval()
    batch = next(iter(data.val_dataloader()))
    start, end, answer = model._outputs(batch)
    assert answer.shape == (len(batch["input_ids"]), 3)
    ce = torch.nn.functional.cross_entropy
    expected = (ce(start, batch["start_positions"]) + ce(end, batch["end_positions"])) / 2 + ce(answer, batch["answer_class"])
    torch.testing.assert_close(model._loss((start, end, answer), batch), expected)
    # prediction input (no answers) adds nothing, and is never NaN
    unlabelled = {**batch, "answer_class": torch.full_like(batch["answer_class"], IGNORE_LABEL)}
    torch.testing.assert_close(model._loss((start, end, answer), unlabelled), model.head.loss((start, end), batch))


def test_decode_picks_the_closed_answer_of_the_features_mean_logits():
    model = QAReasoningModule("tiny-bert", tasks={"babi": {"type": "qa", "answers": ["no", "yes"]}})
    context = "Mary moved to the bathroom."
    offsets = [(-1, -1), (0, 4), (5, 10), (11, 13), (14, 17), (18, 26), (26, 27), (-1, -1)]
    span_logits = torch.tensor([[0.0, 0, 0, 0, 0, 5, 0, 0]])  # the best span: "bathroom"
    collected = [{
        "start": span_logits.repeat(3, 1), "end": span_logits.repeat(3, 1),
        # example a: two features, [2, 0, 1] and [0, 0, 2]: their mean picks "yes" (the first alone: a span);
        # example b: one feature that picks "extract a span"
        "answer": torch.tensor([[2.0, 0, 1], [0, 0, 2], [3, 1, 1]]),
        "offset_mapping": [offsets] * 3, "example_id": ["a", "a", "b"], "context": [context] * 3,
        "answers": [["yes"], ["yes"], ["bathroom"]],
    }]
    ids, predictions, _ = model.decode(collected)
    assert ids == ["a", "b"]
    assert [(p.text, p.closed) for p in predictions] == [("yes", True), ("bathroom", False)]
    assert predictions[0].best.text == "bathroom", "the span read is kept beside the closed answer"


def fit_briefly(tmp_path, data, model, writer=None) -> L.Trainer:
    trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path,
                        callbacks=[writer] if writer else [], num_sanity_val_steps=0)
    trainer.fit(model, datamodule=data)
    return trainer


def test_fit_validate_and_predict_answer_with_the_head(tmp_path, story):
    torch.manual_seed(0)
    data = babi_data(tmp_path, story)
    model = QAReasoningModule("tiny-bert", tasks=data.tasks, learning_rate=1e-3, warmup_ratio=0.0, dropout=0.0)
    writer = QAPredictionWriter(str(tmp_path / "predictions"))
    trainer = fit_briefly(tmp_path, data, model, writer)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    # The head decides: biased to "yes", every question is answered "yes" (1 of the 4 is right) ...
    with torch.no_grad():
        model.answer_head.linear.weight.zero_()
        model.answer_head.linear.bias.copy_(torch.tensor([0.0, 0.0, 5.0]))
    assert trainer.validate(model, datamodule=data, verbose=False)[0]["val/exact_match"] == pytest.approx(25.0)
    trainer.predict(model, datamodule=data, return_predictions=False)
    written = json.loads((tmp_path / "predictions" / "predictions.json").read_text())
    assert {short_id(i): text for i, text in written.items()} == {i: "yes" for i in ANSWERS}
    # ... biased to "extract a span", every answer is a span of the story
    with torch.no_grad():
        model.answer_head.linear.bias.copy_(torch.tensor([5.0, 0.0, 0.0]))
    trainer.predict(model, datamodule=data, return_predictions=False)
    written = json.loads((tmp_path / "predictions" / "predictions.json").read_text())
    nbest = json.loads((tmp_path / "predictions" / "nbest_predictions.json").read_text())
    assert all(text == nbest[i][0]["text"] and text not in ("yes", "no") for i, text in written.items())


def test_ask_and_export_refuse_a_reader_with_closed_answers(tmp_path):
    from instructrec.export import export_checkpoint
    from instructrec.qa.ask import build_pipeline

    model = QAReasoningModule("tiny-bert", tasks={"babi": {"type": "qa", "answers": ["no", "yes"]}})
    path = tmp_path / "reader.ckpt"
    hparams = {**dict(model.hparams), "_class_path": "instructrec.models.QAReasoningModule"}
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hparams, "global_step": 1, "epoch": 0}, path)
    with pytest.raises(InputError, match=r"closed answers \(no, yes\).*spans only"):
        build_pipeline([], str(path))
    with pytest.raises(InputError, match=r"closed answers \(no, yes\).*spans only"):
        export_checkpoint(path, tmp_path / "exported")
