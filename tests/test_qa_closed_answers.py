"""Closed answers for the extractive reader: answers no span of the context can be (bAbI's yes/no,
counts, lists, directions) are labelled as classes, read by an answer head, and written as the
example's answer; spans are read as before. Commands that cannot use the head refuse the reader.
Supporting facts: bAbI's are labelled per context token and learnt by an auxiliary loss."""

from __future__ import annotations

import json
import re

import lightning as L
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from instructrec.batch import IGNORE_LABEL, SPAN_CLASS, encoder_inputs
from instructrec.callbacks import QAPredictionWriter
from instructrec.data import InstructionDataModule
from instructrec.data.raw import read_babi_qa
from instructrec.errors import InputError
from instructrec.instructions import InstructionError
from instructrec.models.qa_reasoning import QAReasoningModule

# An answer is chosen where its context does not hold it as a word and extracted where it does:
# "no" is chosen at line 3 ("north" does not hold it) and extracted at line 6 ("no longer");
# "kitchen" is chosen in story 1 (inferred from "hungry", as in bAbI task 20) and extracted in story 2.
STORY = (
    "1 Mary moved to the bathroom.\n"
    "2 John went north to the hallway.\n"
    "3 Is John in the kitchen?\tno\t2\n"
    "4 Is Mary in the bathroom?\tyes\t1\n"
    "5 Daniel is no longer in the office.\n"
    "6 Is Daniel in the office?\tno\t5\n"
    "7 Where is Mary?\tbathroom\t1\n"
    "1 Sandra is hungry.\n"
    "2 Where will Sandra go?\tkitchen\t1\n"
    "1 John went to the kitchen.\n"
    "2 Where is John?\tkitchen\t1\n"
)
ANSWERS = {"s0:3": "no", "s0:4": "yes", "s0:6": "no", "s0:7": "bathroom", "s1:2": "kitchen", "s2:2": "kitchen"}
CLASSES = {"s0:3": 2, "s0:4": 3, "s0:6": SPAN_CLASS, "s0:7": SPAN_CLASS, "s1:2": 1, "s2:2": SPAN_CLASS}


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
    assert data.answer_classes == ["kitchen", "no", "yes"]
    assert data.tasks == {"babi": {"type": "qa", "answers": ["kitchen", "no", "yes"]}}
    assert "answers" not in babi_data(tmp_path, story, closed_answers=None).tasks["babi"]


def test_features_carry_the_answer_class_and_a_span_only_where_the_context_holds_the_answer(tmp_path, story):
    data = babi_data(tmp_path, story)
    dataset, _, _ = data.encode("train")
    rows = {short_id(r["example_id"]): r for r in dataset}
    assert {i: r["answer_class"] for i, r in rows.items()} == CLASSES
    for i, row in rows.items():
        if CLASSES[i] != SPAN_CLASS:
            assert (row["start_positions"], row["end_positions"]) == (0, 0)
            continue
        offsets = row["offset_mapping"]
        start, end = offsets[row["start_positions"]][0], offsets[row["end_positions"]][1]
        assert row["context"][start:end] == ANSWERS[i]
        if i == "s0:6":
            assert start == row["context"].index("no longer"), "the word, not the 'no' of 'north'"
    assert all(r["answers"] == [ANSWERS[i]] for i, r in rows.items()), "closed answers score against their text"


@pytest.mark.parametrize(("context", "answer", "hint", "expected"), [
    ("John went north.", "no", None, None),
    ("Daniel is no longer here, no.", "no", None, 10),
    ("Daniel is no longer here, no.", "no", 26, 26),
    ("Daniel is no longer here, no.", "no", 3, 10),  # not a word at the hint: the first word occurrence
    ("xno no", "no", 1, 4),  # inside a word at the hint (the character before it counts)
    ("north no", "no", 0, 6),
    ("Someone has one apple.", "one", None, 12),
    ("milk,apple were taken", "milk,apple", None, 0),
    ("他在北京工作。", "北京", None, 2),  # no spaces between Chinese words: Han edges never block
    ("", "no", None, None),
])
def test_word_occurrence(context, answer, hint, expected):
    from instructrec.data.encoding import word_occurrence

    assert word_occurrence(context, answer, hint) == expected


@settings(max_examples=200, deadline=None)
@given(words=st.lists(st.sampled_from(["no", "north", "none", "one", "someone", "kitchen", "yes", ",", "."]), max_size=12),
       answer=st.sampled_from(["no", "one", "yes", "kitchen"]))
def test_word_occurrence_finds_exactly_the_whole_word_occurrences(words, answer):
    from instructrec.data.encoding import word_occurrence

    context = " ".join(words)
    found = word_occurrence(context, answer)
    starts = [sum(len(w) + 1 for w in words[:k]) for k, w in enumerate(words) if w == answer]
    assert found == (starts[0] if starts else None)


def test_an_answer_outside_its_context_that_is_not_closed_is_refused_by_name(tmp_path, story):
    data = babi_data(tmp_path, story, closed_answers=["kitchen", "yes"])
    with pytest.raises(InstructionError, match=r"answer 'no' does not occur in the context as a word nor is one of the "
                                               r"closed answers \['kitchen', 'yes'\]"):
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
    outputs = model._outputs(batch)
    start, end, answer = outputs["start"], outputs["end"], outputs["answer"]
    assert answer.shape == (len(batch["input_ids"]), 4) and model(**encoder_inputs(batch))[2].equal(answer)
    ce = torch.nn.functional.cross_entropy
    expected = (ce(start, batch["start_positions"]) + ce(end, batch["end_positions"])) / 2 + ce(answer, batch["answer_class"])
    torch.testing.assert_close(model._loss(outputs, batch), expected)
    # prediction input (no answers) adds nothing, and is never NaN
    unlabelled = {**batch, "answer_class": torch.full_like(batch["answer_class"], IGNORE_LABEL)}
    torch.testing.assert_close(model._loss(outputs, unlabelled), model.head.loss((start, end), batch))


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
    data = babi_data(tmp_path, story, supporting_facts=True)
    model = QAReasoningModule("tiny-bert", tasks=data.tasks, learning_rate=1e-3, warmup_ratio=0.0, dropout=0.0,
                              support_weight=1.0)
    writer = QAPredictionWriter(str(tmp_path / "predictions"))
    trainer = fit_briefly(tmp_path, data, model, writer)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    # The head decides: biased to "yes", every question is answered "yes" (1 of the 6 is right) ...
    with torch.no_grad():
        model.answer_head.linear.weight.zero_()
        model.answer_head.linear.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 5.0]))
    assert trainer.validate(model, datamodule=data, verbose=False)[0]["val/exact_match"] == pytest.approx(100 / 6)
    trainer.predict(model, datamodule=data, return_predictions=False)
    written = json.loads((tmp_path / "predictions" / "predictions.json").read_text())
    assert {short_id(i): text for i, text in written.items()} == {i: "yes" for i in ANSWERS}
    # ... biased to "extract a span", every answer is a span of the story
    with torch.no_grad():
        model.answer_head.linear.bias.copy_(torch.tensor([5.0, 0.0, 0.0, 0.0]))
    trainer.predict(model, datamodule=data, return_predictions=False)
    written = json.loads((tmp_path / "predictions" / "predictions.json").read_text())
    nbest = json.loads((tmp_path / "predictions" / "nbest_predictions.json").read_text())
    assert len(written) == 6 and all(text == nbest[i][0]["text"] for i, text in written.items())


def save_reader(model, path):
    hparams = {**dict(model.hparams), "_class_path": "instructrec.models.QAReasoningModule"}
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hparams, "global_step": 1, "epoch": 0}, path)
    return path


@pytest.mark.parametrize(("bias", "closed"), [([0.0, 0.0, 5.0], "yes"), ([5.0, 0.0, 0.0], None)])
def test_ask_answers_with_the_closed_answer_the_head_picks(tmp_path, capsys, bias, closed):
    from instructrec.cli import main

    torch.manual_seed(0)
    model = QAReasoningModule("tiny-bert", tasks={"babi": {"type": "qa", "answers": ["no", "yes"]}})
    with torch.no_grad():
        model.answer_head.linear.weight.zero_()
        model.answer_head.linear.bias.copy_(torch.tensor(bias))
    path = save_reader(model, tmp_path / "reader.ckpt")
    story = tmp_path / "qa6_test.txt"
    story.write_text("1 Mary moved to the garden.\n2 Mary got the milk there.\n3 John went to the kitchen.\n")
    main(["ask", "--kb", str(story), "--ckpt", str(path), "--stories", "--select", "1", "10", "--json", "Is Mary in the garden?"])
    record = json.loads(capsys.readouterr().out.strip())
    assert record["trace"], "the trace says what was read, whichever way the answer was given"
    if closed:
        probability = torch.softmax(torch.tensor(bias), 0)[2].item()
        assert (record["answer"], record["passage_id"]) == ("yes", None)
        assert record["score"] == pytest.approx(probability, abs=1e-5)
    else:
        assert record["answer"] not in ("yes", "no") and record["answer"] in story.read_text()


def test_export_refuses_a_reader_with_closed_answers(tmp_path):
    from instructrec.export import export_checkpoint

    model = QAReasoningModule("tiny-bert", tasks={"babi": {"type": "qa", "answers": ["no", "yes"]}})
    path = save_reader(model, tmp_path / "reader.ckpt")
    with pytest.raises(InputError, match=r"closed answers \(no, yes\).*spans only"):
        export_checkpoint(path, tmp_path / "exported")


# -- supporting facts ------------------------------------------------------------------------------

def test_babi_records_give_their_supporting_facts_as_evidence(story):
    records = {r["id"].split(":", 1)[1]: r for r in read_babi_qa(story)}
    assert records["s0:6"]["evidence"] == [{"text": "Daniel is no longer in the office.", "start": 60}]
    assert records["s0:6"]["context"][60:].startswith("Daniel is no longer")
    retrieved = {r["id"].split(":", 1)[1]: r for r in read_babi_qa(story, max_facts=1)}
    assert retrieved["s0:7"]["evidence"] == [], "a supporting fact the context does not hold is no evidence"


def test_support_labels_mark_the_supporting_facts_tokens(tmp_path, story):
    data = babi_data(tmp_path, story, supporting_facts=True)
    dataset, _, _ = data.encode("train")
    fact = "Daniel is no longer in the office."
    for row in dataset:
        labels, offsets = row["support_labels"], row["offset_mapping"]
        assert len(labels) == len(row["input_ids"])
        assert all((label == IGNORE_LABEL) == (offset[0] < 0) for label, offset in zip(labels, offsets))
        inside = [offset for label, offset in zip(labels, offsets) if label == 1]
        told = row["context"][min(o[0] for o in inside) : max(o[1] for o in inside)]
        if short_id(row["example_id"]) == "s0:6":
            assert told == fact
        else:
            assert fact not in told and told in row["context"]
        if short_id(row["example_id"]).startswith("s0:"):  # stories 1 and 2 tell one fact, the supporting one
            assert labels.count(0) > 0
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    width = batch["input_ids"].shape[1]
    assert batch["support_labels"].shape == (len(batch["input_ids"]), width)
    padding = batch["attention_mask"] == 0
    assert padding.any() and (batch["support_labels"][padding] == IGNORE_LABEL).all()


def test_the_support_loss_is_weighted_binary_cross_entropy_over_context_tokens(tmp_path, story):
    torch.manual_seed(0)
    data = babi_data(tmp_path, story, supporting_facts=True)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    model = QAReasoningModule("tiny-bert", tasks=data.tasks, dropout=0.0, support_weight=0.5).eval()
    outputs = model._outputs(batch)
    labels = batch["support_labels"]
    mask = labels != IGNORE_LABEL
    bce = torch.nn.functional.binary_cross_entropy_with_logits(outputs["support"][mask], labels[mask].float())
    ce = torch.nn.functional.cross_entropy
    expected = ((ce(outputs["start"], batch["start_positions"]) + ce(outputs["end"], batch["end_positions"])) / 2
                + ce(outputs["answer"], batch["answer_class"]) + 0.5 * bce)
    torch.testing.assert_close(model._loss(outputs, batch), expected)
    assert len(model(**encoder_inputs(batch))) == 3, "forward returns what answers: the support logits are training's"
    plain = babi_data(tmp_path, story)
    plain.setup("fit")
    unlabelled = next(iter(plain.train_dataloader()))
    with pytest.raises(ValueError, match="support_weight > 0 needs support_labels"):
        model._loss(model._outputs(unlabelled), unlabelled)


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_evidence_its_context_lacks_is_a_bad_record_that_on_error_decides(tmp_path, story, monkeypatch, on_error):
    from instructrec.data import datamodule

    real = datamodule.evidence_spans
    wrong = {}

    def one_passage_elsewhere(records):
        evidence = real(records)
        wrong["id"] = sorted(evidence)[1]
        evidence[wrong["id"]] = [{"text": "Nobody went to the moon.", "start": 0}]
        return evidence

    monkeypatch.setattr(datamodule, "evidence_spans", one_passage_elsewhere)
    data = babi_data(tmp_path, story, supporting_facts=True, on_error=on_error)
    if on_error == "raise":
        with pytest.raises(InstructionError) as raised:
            data.encode("train")
        assert re.fullmatch(rf".*{story.name}, record \d+: evidence 'Nobody went to the moon.' does not occur in the "
                            rf"context of {re.escape(wrong['id'])}", str(raised.value))
        return
    dataset, meta, loaded = data.encode("train")
    assert [r["id"] for r in loaded.rejects] == [wrong["id"]]
    assert "does not occur in the context" in loaded.rejects[0]["reason"]
    assert wrong["id"] not in set(dataset["example_id"]) and len(set(dataset["example_id"])) == len(ANSWERS) - 1
    assert (meta["parsed"], meta["rejected"], meta["total"]) == (len(ANSWERS) - 1, 1, len(ANSWERS))


def test_supporting_facts_need_records_that_give_them(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"id": "a", "text": "Question: Who wrote it?\nContext: Alice wrote it.\nAnswer: Alice"}) + "\n")
    data = InstructionDataModule(train=str(path), tokenizer="tiny-bert", supporting_facts=True, val_fraction=0.0,
                                 cache_dir=str(tmp_path / "cache"))
    with pytest.raises(InstructionError, match="supporting_facts labels QA contexts from raw records"):
        data.encode("train")


# -- the evidence a support head marks -------------------------------------------------------------

def test_marked_spans_join_runs_of_marked_context_tokens():
    from instructrec.qa.postprocess import marked_spans, merge_spans

    # [CLS] Mary moved . John went . [SEP]
    offsets = [(-1, -1), (0, 4), (5, 10), (10, 11), (12, 16), (17, 21), (21, 22), (-1, -1)]
    assert marked_spans(offsets, [True, True, True, True, False, True, True, True]) == [(0, 11), (17, 22)]
    assert marked_spans(offsets, [False] * 8) == []
    assert merge_spans([(17, 22), (0, 11), (5, 12), (12, 14)]) == ((0, 14), (17, 22))


@settings(max_examples=200, deadline=None)
@given(marks=st.lists(st.booleans(), min_size=1, max_size=30))
def test_marked_spans_cover_exactly_the_marked_tokens(marks):
    from instructrec.qa.postprocess import marked_spans

    offsets = [(-1, -1)] + [(3 * i, 3 * i + 2) for i in range(len(marks) - 1)]  # words of 2 characters and a space
    spans = marked_spans(offsets, marks)
    inside = [any(a <= start and end <= b for a, b in spans) for start, end in offsets]
    assert inside == [mark and start >= 0 for mark, (start, _) in zip(marks, offsets)]


def test_decode_reads_the_evidence_over_an_examples_windows():
    model = QAReasoningModule("tiny-bert", tasks={"babi": {"type": "qa"}}, support_weight=1.0)
    context = "Mary moved to the bathroom. John went to the hallway."
    # two windows of one example: tokens of "Mary moved" and of "to the bathroom." / "the bathroom. John"
    first = [(-1, -1), (0, 4), (5, 10), (11, 13), (-1, -1)]
    second = [(-1, -1), (14, 17), (18, 26), (26, 27), (28, 32), (-1, -1)]
    collected = [{
        "start": torch.zeros(2, 6), "end": torch.zeros(2, 6),
        "support": torch.tensor([[9.0, 2, 2, -1, 9, 0], [9.0, 3, 3, 3, -2, 9]]),  # padding and specials never count
        "offset_mapping": [first, second], "example_id": ["a", "a"], "context": [context] * 2, "answers": [["bathroom"]] * 2,
    }]
    _, (prediction,), _ = model.decode(collected)
    assert [(e.start, e.end, e.text) for e in prediction.evidence] == [(0, 10, "Mary moved"), (14, 27, "the bathroom.")]


def test_predict_writes_the_evidence_file(tmp_path, story):
    torch.manual_seed(0)
    data = babi_data(tmp_path, story, supporting_facts=True)
    model = QAReasoningModule("tiny-bert", tasks=data.tasks, dropout=0.0, support_weight=1.0)
    with torch.no_grad():  # every token marked: each example's evidence is its whole context
        model.support_head.weight.zero_()
        model.support_head.bias.fill_(5.0)
    writer = QAPredictionWriter(str(tmp_path / "predictions"))
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                        default_root_dir=tmp_path, callbacks=[writer])
    trainer.predict(model, datamodule=data, return_predictions=False)
    evidence = json.loads((tmp_path / "predictions" / "evidence.json").read_text())
    contexts = {r["id"]: r["context"] for r in read_babi_qa(story)}
    assert evidence == {i: [{"start": 0, "end": len(c), "text": c}] for i, c in contexts.items()}
