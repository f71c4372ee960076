import json

import pytest

from instructrec.data.files import read_instruction_file, write_jsonl
from instructrec.instructions import InstructionError


def test_jsonl_round_trip_keeps_ids_and_record_numbers(tmp_path):
    path = tmp_path / "a.jsonl"
    write_jsonl(path, [{"id": "x", "text": "Q: 你好？\nContext: c"}, {"text": "second"}])
    records = list(read_instruction_file(path))
    assert [(r.text, r.record, r.id) for r in records] == [("Q: 你好？\nContext: c", 1, "x"), ("second", 2, "a-2")]
    assert records[0].source == str(path)


def test_blocks_are_split_on_blank_lines(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("Question: a\nContext: b\n\n  \n\nInstruction: c\r\n\r\nd\n", encoding="utf-8")
    assert [r.text for r in read_instruction_file(path)] == ["Question: a\nContext: b", "Instruction: c", "d"]


def test_broken_jsonl_line_names_file_and_record(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "ok"}) + "\n\n{not json\n", encoding="utf-8")
    with pytest.raises(InstructionError, match=r"bad\.jsonl, record 2: line 3 is not valid JSON"):
        list(read_instruction_file(path))


def test_jsonl_without_text_field(tmp_path):
    path = tmp_path / "a.jsonl"
    write_jsonl(path, [{"prompt": "x"}])
    with pytest.raises(InstructionError, match="record 1: line 1 has no string field 'text'"):
        list(read_instruction_file(path))
    assert [r.text for r in read_instruction_file(path, text_field="prompt")] == ["x"]


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(read_instruction_file(tmp_path / "none.jsonl"))
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="unknown instruction file format 'csv'"):
        list(read_instruction_file(tmp_path / "a.txt", format="csv"))
