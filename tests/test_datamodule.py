import json

import pytest
import torch

from instructrec.data.datamodule import InstructionDataModule
from instructrec.data.files import write_jsonl
from instructrec.instructions import InstructionError

from helpers import classification_text, write_classification

ROWS = [("great film", "positive"), ("dull plot", "negative"), ("loved it", "positive"), ("awful", "negative")]


def make(tmp_path, **kwargs):
    kwargs.setdefault("cache_dir", str(tmp_path / "cache"))
    kwargs.setdefault("tokenizer", "tiny-bert")
    return InstructionDataModule(**kwargs)


def test_classification_labels_follow_the_options(tmp_path):
    train = write_classification(tmp_path / "train.jsonl", ROWS)
    dm = make(tmp_path, train=str(train), val=str(train), batch_size=4)
    assert dm.task == "classification"
    assert dm.label_names == ["positive", "negative"]
    dm.setup("fit")
    assert dm.datasets["train"]["labels"] == [0, 1, 0, 1]
    batch = next(iter(dm.val_dataloader()))
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels", "example_id"}
    assert batch["labels"].tolist() == [0, 1, 0, 1]
    assert batch["example_id"] == dm.example_ids("val")  # every batch names its records
    # The model reads the instruction without its answer.
    tokens = dm.tokenizer.decode(batch["input_ids"][0], skip_special_tokens=True).replace(" ", "").replace("#", "")
    assert "greatfilm" in tokens and "options" in tokens and "answer" not in tokens


def test_group_by_length_pads_less_and_keeps_every_row(tmp_path):
    rows = [(" ".join(["word"] * n), "positive" if n % 2 else "negative") for n in (1, 40, 2, 39, 3, 38, 4, 37)]
    train = write_classification(tmp_path / "train.jsonl", rows)

    def padding(group_by_length):
        dm = make(tmp_path, train=str(train), val_fraction=0.0, batch_size=2, group_by_length=group_by_length)
        dm.setup("fit")
        batches = list(dm.train_dataloader())
        assert sorted(i for b in batches for i in b["example_id"]) == sorted(dm.example_ids("train"))
        lengths = sorted(len(ids) for ids in dm.datasets["train"]["input_ids"])
        return sum(int((b["attention_mask"] == 0).sum()) for b in batches), lengths

    # Grouped, each batch pairs neighbours in length; shuffled, this seed pairs short with long rows.
    grouped, lengths = padding(True)
    assert grouped == sum(lengths[i + 1] - lengths[i] for i in range(0, 8, 2)) < 10
    assert padding(False)[0] > 50


def test_a_length_pool_under_one_batch_is_refused(tmp_path):
    with pytest.raises(ValueError, match="length_pool must be at least 1 batch, got 0"):
        make(tmp_path, train=str(write_classification(tmp_path / "train.jsonl", ROWS)), group_by_length=True, length_pool=0)


def test_second_load_comes_from_the_cache(tmp_path, monkeypatch):
    train = write_classification(tmp_path / "train.jsonl", ROWS)
    first = make(tmp_path, train=str(train), val_fraction=0.0)
    first.setup("fit")
    monkeypatch.setattr(InstructionDataModule, "encode", lambda self, split: pytest.fail("cache missed"))
    second = make(tmp_path, train=str(train), val_fraction=0.0)
    second.setup("fit")
    assert second.datasets["train"]["input_ids"] == first.datasets["train"]["input_ids"]


def test_cache_key_follows_content_and_settings(tmp_path):
    train = write_classification(tmp_path / "train.jsonl", ROWS)
    dm = make(tmp_path, train=str(train), val_fraction=0.0)
    dm.setup("fit")
    entries = lambda: sorted(p.name for p in (tmp_path / "cache").iterdir())  # noqa: E731
    assert len(entries()) == 1
    make(tmp_path, train=str(train), val_fraction=0.0, max_length=32).setup("fit")
    assert len(entries()) == 2
    write_classification(train, ROWS[:3])
    dm = make(tmp_path, train=str(train), val_fraction=0.0)
    dm.setup("fit")
    assert len(entries()) == 3 and len(dm.datasets["train"]) == 3


def test_first_bad_record_stops_with_file_record_and_reason(tmp_path):
    path = tmp_path / "train.jsonl"
    write_jsonl(path, [{"text": classification_text("fine", "positive")}, {"text": "Question: ?\nContext:"}])
    dm = make(tmp_path, train=str(path), val_fraction=0.0)
    with pytest.raises(InstructionError, match=r"train\.jsonl, record 2, character 12: 'Context:' has an empty value"):
        dm.setup("fit")


def test_skip_counts_logs_and_writes_rejects(tmp_path, caplog):
    rows = [
        {"id": "ok1", "text": classification_text("fine", "positive")},
        {"id": "bad-answer", "text": classification_text("meh", "maybe", ["positive", "negative", "maybe"])},
        {"id": "not-in-options", "text": "Text: hm\nOptions: positive, negative\nAnswer: neutral"},
        {"id": "qa", "text": "Question: who?\nContext: me\nAnswer: me"},
        {"id": "ok2", "text": classification_text("bad", "negative")},
    ]
    path = tmp_path / "train.jsonl"
    write_jsonl(path, rows)
    dm = make(tmp_path, train=str(path), on_error="skip", val_fraction=0.0)
    with caplog.at_level("WARNING"):
        dm.setup("fit")
    meta = dm.meta["train"]
    assert (meta["parsed"], meta["rejected"], meta["total"]) == (2, 3, 5)
    rejects = [json.loads(line) for line in open(meta["rejects_file"], encoding="utf-8")]
    assert [r["id"] for r in rejects] == ["bad-answer", "not-in-options", "qa"]
    assert [r["record"] for r in rejects] == [2, 3, 4]
    assert "differ from the label set" in rejects[0]["reason"]
    assert "'neutral' is not one of the options" in rejects[1]["reason"]
    assert "expected a classification instruction, got qa" in rejects[2]["reason"]
    assert "2 parsed + 3 rejected = 5 records" in caplog.text


def test_a_cached_split_still_reports_its_rejects_and_broken_lines_are_skipped(tmp_path, caplog):
    path = tmp_path / "train.jsonl"
    write_jsonl(path, [{"id": "ok1", "text": classification_text("fine", "positive")},
                       {"id": "no-text", "prompt": "x"},
                       {"id": "ok2", "text": classification_text("bad", "negative")}])
    with path.open("ab") as handle:
        handle.write(b"{broken\n\xff\n")
    for run in ("fresh", "cached"):
        caplog.clear()
        dm = make(tmp_path, train=str(path), on_error="skip", val_fraction=0.0)
        with caplog.at_level("WARNING"):
            dm.setup("fit")
        meta = dm.meta["train"]
        assert (meta["parsed"], meta["rejected"]) == (2, 3), run
        assert f"2 parsed + 3 rejected = 5 records; rejects written to {meta['rejects_file']}" in caplog.text, run
        assert caplog.text.count("rejected = 5 records") == 1, run
    rejects = [json.loads(line) for line in open(meta["rejects_file"], encoding="utf-8")]
    assert [r["record"] for r in rejects] == [2, 4, 5]
    assert [r["reason"] for r in rejects] == ["line 2 has no string field 'text'", "line 4 is not valid JSON: Expecting property "
                                              "name enclosed in double quotes",
                                              "line 5 is not valid UTF-8 (byte 0xff at column 1); save the file as UTF-8"]


def test_qa_answer_missing_from_context_is_a_reject(tmp_path):
    path = tmp_path / "qa.jsonl"
    write_jsonl(
        path,
        [
            {"id": "a", "text": "Question: Who?\nContext: Ada wrote it.\nAnswer: Ada"},
            {"id": "b", "text": "Question: Who?\nContext: Ada wrote it.\nAnswer: Bob"},
        ],
    )
    with pytest.raises(InstructionError, match=r"record 2: answer 'Bob' does not occur in the context"):
        make(tmp_path, train=str(path), val_fraction=0.0).setup("fit")
    dm = make(tmp_path, train=str(path), val_fraction=0.0, on_error="skip")
    dm.setup("fit")
    data = dm.datasets["train"]
    assert dm.meta["train"]["rejected"] == 1 and data["example_id"] == ["a"]
    tokens = dm.tokenizer.convert_ids_to_tokens(data["input_ids"][0])
    start, end = data["start_positions"][0], data["end_positions"][0]
    assert "".join(t.lstrip("#") for t in tokens[start : end + 1]) == "ada"


def test_empty_data_is_a_clear_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(InstructionError, match="has no usable records"):
        make(tmp_path, train=str(path)).setup("fit")


def test_holdout_is_disjoint_complete_and_repeatable(tmp_path):
    rows = [(f"text {i}", "positive" if i % 2 else "negative") for i in range(200)]
    train = write_classification(tmp_path / "train.jsonl", rows)
    ids = {}
    for run in range(2):
        dm = make(tmp_path / str(run), train=str(train), val_fraction=0.25, seed=7)
        dm.setup("fit")
        ids[run] = (dm.datasets["train"]["example_id"], dm.datasets["val"]["example_id"])
    train_ids, val_ids = ids[0]
    assert ids[0] == ids[1]
    assert not set(train_ids) & set(val_ids)
    assert len(train_ids) + len(val_ids) == 200
    assert 30 <= len(val_ids) <= 70


def test_batch_from_texts_matches_file_encoding(tmp_path):
    train = write_classification(tmp_path / "train.jsonl", ROWS)
    dm = make(tmp_path, train=str(train), val_fraction=0.0)
    dm.setup("fit")
    batch = dm.batch_from_texts([classification_text("great film", None)])
    assert batch["input_ids"][0].tolist() == dm.datasets["train"]["input_ids"][0]
    assert batch["labels"].tolist() == [-100]
    with pytest.raises(InstructionError, match=r"<input>, record 1: options"):
        dm.batch_from_texts([classification_text("x", None, ["yes", "no"])])


def test_a_generation_task_on_an_encoder_is_refused_with_a_pointer(tmp_path):
    path = tmp_path / "gen.txt"
    path.write_text("Summarize this paragraph: it rained.", encoding="utf-8")
    with pytest.raises(InstructionError, match="generation instructions need a generative backbone .*smollm2-135m-instruct"):
        make(tmp_path, train=str(path)).setup("fit")


@pytest.mark.slow
def test_raw_data_set_through_a_template(tmp_path, shared_data):
    dm = make(
        tmp_path,
        train=str(shared_data / "financial_phrasebank" / "Sentences_AllAgree.txt"),
        template="financial_phrasebank",
        val_fraction=0.2,
    )
    dm.setup("fit")
    assert dm.label_names == ["negative", "neutral", "positive"]
    assert len(dm.datasets["train"]) + len(dm.datasets["val"]) == 2264
    assert dm.meta["train"]["rejected"] == 0
    labels = torch.tensor(list(dm.datasets["train"]["labels"]) + list(dm.datasets["val"]["labels"]))
    # AllAgree: 303 negative, 1391 neutral, 570 positive (counted with awk on the file).
    assert torch.bincount(labels).tolist() == [303, 1391, 570]
