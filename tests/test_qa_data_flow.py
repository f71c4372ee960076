"""SQuAD-style data -> InstructionDataModule -> QAReasoningModule: evaluation batches carry what
decodes and scores answers, EM/F1 use every reference answer, and `predict` writes the official
files, whose scores `evaluate-squad` reproduces."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch

from instructrec.callbacks import QAPredictionWriter
from instructrec.data import InstructionDataModule
from instructrec.batch import TEXT_COLUMNS
from instructrec.models.qa_reasoning import QAReasoningModule
from instructrec.qa.squad_metrics import evaluate_v1

CONTEXT = "The letter was written by Alice in Paris in 1901. On a clear day the sky is blue."
QUESTIONS = [
    # (id, question, answers): q1 has two annotators' answers; the template keeps only the first.
    ("q1", "Who wrote the letter?", [("Alice", 26), ("Alice in Paris", 26)]),
    ("q2", "Where was the letter written?", [("Paris", 35)]),
    ("q3", "When was the letter written?", [("1901", 44)]),
    ("q4", "What colour is the sky?", [("blue", 76)]),
]


def write_squad(path, questions=QUESTIONS):
    qas = [{"id": i, "question": q, "answers": [{"text": t, "answer_start": s} for t, s in a]} for i, q, a in questions]
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": CONTEXT, "qas": qas}]}]}))
    return path


@pytest.fixture
def squad_file(tmp_path):
    return write_squad(tmp_path / "squad.json")


def qa_data(tmp_path, squad_file, **kwargs) -> InstructionDataModule:
    options = dict(train=str(squad_file), val=str(squad_file), test=str(squad_file), template="squad",
                   tokenizer="tiny-bert", max_length=56, doc_stride=8, batch_size=3, cache_dir=str(tmp_path / "cache"))
    return InstructionDataModule(**{**options, **kwargs})


def test_evaluation_batches_carry_text_columns_and_all_references(tmp_path, squad_file):
    for answers in (dict(q[2]) for q in QUESTIONS):
        for text, start in answers.items():
            assert CONTEXT[start : start + len(text)] == text
    data = qa_data(tmp_path, squad_file)
    data.setup("fit")
    train = next(iter(data.train_dataloader()))
    assert set(TEXT_COLUMNS) & set(train) == {"example_id"}, "training batches hold tensors and their record ids only"
    assert all(isinstance(i, str) for i in train["example_id"]) and len(train["example_id"]) == len(train["input_ids"])
    rows = [b for b in data.val_dataloader()]
    batch = rows[0]
    assert set(TEXT_COLUMNS) <= set(batch)
    features = sum(len(b["input_ids"]) for b in rows)
    assert features > len(QUESTIONS), "max_length 56 windows the context"
    references = {qid: answers for b in rows for qid, answers in zip(b["example_id"], b["answers"])}
    assert references == {"q1": ["Alice", "Alice in Paris"], "q2": ["Paris"], "q3": ["1901"], "q4": ["blue"]}
    assert all(context == CONTEXT for b in rows for context in b["context"])
    # offsets are the features' own: one pair per token of the padded row's real length
    for b in rows:
        for offsets, mask in zip(b["offset_mapping"], b["attention_mask"]):
            assert len(offsets) == int(mask.sum())


def test_instruction_files_score_against_their_one_answer(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"id": "a", "text": f"Question: Who wrote the letter?\nContext: {CONTEXT}\nAnswer: Alice"}) + "\n")
    data = InstructionDataModule(val=str(path), tokenizer="tiny-bert", max_length=128, cache_dir=str(tmp_path / "cache"))
    data.setup("validate")
    batch = next(iter(data.val_dataloader()))
    assert batch["answers"] == [["Alice"]] and batch["example_id"] == ["a"]


def test_fit_test_predict_and_evaluate_squad_agree(tmp_path, squad_file, capsys):
    torch.manual_seed(0)
    data = qa_data(tmp_path, squad_file, predict=str(squad_file))
    model = QAReasoningModule("tiny-bert", tasks=data.tasks, learning_rate=3e-3, warmup_ratio=0.0, dropout=0.0)
    writer = QAPredictionWriter(str(tmp_path / "predictions"))
    trainer = L.Trainer(
        max_epochs=30, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path, callbacks=[writer],
        check_val_every_n_epoch=30,
    )
    trainer.fit(model, datamodule=data)
    val = trainer.validate(model, datamodule=data, verbose=False)[0]
    test = trainer.test(model, datamodule=data, verbose=False)[0]
    assert test["test/f1"] == pytest.approx(val["val/f1"]) and test["test/exact_match"] == pytest.approx(val["val/exact_match"])
    assert val["val/f1"] >= 75.0, "four questions over one context are memorised"

    trainer.predict(model, datamodule=data, return_predictions=False)
    written = json.loads((tmp_path / "predictions" / "predictions.json").read_text())
    nbest = json.loads((tmp_path / "predictions" / "nbest_predictions.json").read_text())
    assert set(written) == set(nbest) == {"q1", "q2", "q3", "q4"}
    assert all(nbest[q][0]["text"] == written[q] and len(nbest[q]) <= 20 for q in written)
    # The predictions file scores as validation did, against every reference answer.
    official = evaluate_v1([(i, [t for t, _ in a]) for i, _, a in QUESTIONS], written)
    assert official["f1"] == pytest.approx(val["val/f1"]) and official["exact_match"] == pytest.approx(val["val/exact_match"])


def test_a_classification_task_is_refused():
    with pytest.raises(ValueError, match="one extractive QA task"):
        QAReasoningModule("tiny-bert", tasks={"sst2": {"type": "classification", "labels": ["a", "b"]}})


def test_squad2_unanswerable_questions_score_against_no_answer(tmp_path):
    path = tmp_path / "squad2.json"
    qas = [{"id": i, "question": q, "answers": [{"text": t, "answer_start": s} for t, s in a]} for i, q, a in QUESTIONS]
    qas.append({"id": "q5", "question": "Who painted the sky?", "answers": [], "is_impossible": True})
    path.write_text(json.dumps({"version": "v2.0", "data": [{"title": "T", "paragraphs": [{"context": CONTEXT, "qas": qas}]}]}))
    torch.manual_seed(0)
    data = qa_data(tmp_path, path)
    data.setup("fit")
    references = {qid: answers for b in data.val_dataloader() for qid, answers in zip(b["example_id"], b["answers"])}
    assert references["q5"] == [] and references["q1"] == ["Alice", "Alice in Paris"]
    model = QAReasoningModule("tiny-bert", tasks=data.tasks, version_2=True, learning_rate=3e-3, warmup_ratio=0.0, dropout=0.0)
    trainer = L.Trainer(max_epochs=30, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path, check_val_every_n_epoch=30)
    trainer.fit(model, datamodule=data)
    val = trainer.validate(model, datamodule=data, verbose=False)[0]
    assert float(model.null_threshold) == pytest.approx(val["val/null_threshold"])
    test = trainer.test(model, datamodule=data, verbose=False)[0]
    assert test["test/f1"] == pytest.approx(val["val/f1"]), "test answers with the threshold validation tuned"
    assert val["val/f1"] >= 70.0


def test_labels_point_at_the_referenced_occurrence_of_a_repeated_answer(tmp_path):
    # "kitchen" first occurs in fact 1, but the answer is told by fact 4 (the supporting fact):
    # the label must point there, as the reader's record says, not at the text's first occurrence.
    story = tmp_path / "qa1_train.txt"
    story.write_text(
        "1 Mary went to the kitchen.\n2 Mary went to the garden.\n3 John went to the hallway.\n"
        "4 Mary went to the kitchen.\n5 Where is Mary?\tkitchen\t4\n"
    )
    data = InstructionDataModule(train=str(story), template="babi", tokenizer="tiny-bert", max_length=256,
                                 doc_stride=16, cache_dir=str(tmp_path / "cache"))
    dataset, _, _ = data.encode("train")
    (feature,) = list(dataset)
    context = feature["context"]
    start, end = feature["offset_mapping"][feature["start_positions"]][0], feature["offset_mapping"][feature["end_positions"]][1]
    assert context[start:end] == "kitchen"
    assert start == context.rindex("kitchen") != context.index("kitchen")


def test_retrieval_options_and_retrieval_code_key_the_cache(tmp_path, monkeypatch):
    """A bAbI split that reads what retrieval selects is cached under its retrieval options and the
    retrieval code itself: changing either makes a new entry, with no version to bump by hand."""
    from instructrec.data import raw

    story = tmp_path / "qa2_train.txt"
    story.write_text("1 Mary moved to the garden.\n2 Mary got the milk there.\n3 John went to the garden.\n"
                     "4 Mary went to the hall.\n5 Where is the milk?\thall\t2 4\n")
    from instructrec import babi

    reads = []

    real_read = babi.read_babi
    monkeypatch.setattr(babi, "read_babi", lambda path: reads.append(path) or real_read(path))

    def entries(retrieve):
        data = InstructionDataModule(train=str(story), template="babi", reader_args={"retrieve": retrieve},
                                     tokenizer="tiny-bert", max_length=64, doc_stride=16, val_fraction=0.0,
                                     cache_dir=str(tmp_path / "cache"))
        data.setup("fit")
        return sorted(p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith("train-"))

    first = entries([1, 10])
    assert len(reads) == 1, "encoding the split (label set, records, reference answers) read the bAbI file once"
    assert len(first) == 1 and entries([1, 10]) == first  # the same options and code: a cache hit
    assert len(entries([1, 5])) == 2  # another retrieval option
    monkeypatch.setattr(raw, "file_digest", lambda path: "edited")  # as if the retrieval code changed
    assert len(entries([1, 10])) == 3
