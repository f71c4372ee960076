import json

import pytest

from instructrec.data.files import read_instruction_file, write_jsonl
from instructrec.data.loading import collect, parsed
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


def read_strictly(path, **options):
    """The file's instructions as a run with ``on_error: raise`` reads them."""
    return collect(parsed(read_instruction_file(path, **options)), on_error="raise").examples


def test_broken_jsonl_line_names_file_and_record(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "Instruction: ok"}) + "\n\n{not json\n", encoding="utf-8")
    records = list(read_instruction_file(path))
    assert [r.error is None for r in records] == [True, False]
    assert str(records[1].error) == f"{path}, record 2: line 3 is not valid JSON: Expecting property name enclosed in double quotes"
    with pytest.raises(InstructionError, match=r"bad\.jsonl, record 2: line 3 is not valid JSON"):
        read_strictly(path)


def test_jsonl_without_text_field(tmp_path):
    path = tmp_path / "a.jsonl"
    write_jsonl(path, [{"prompt": "x"}])
    with pytest.raises(InstructionError, match="record 1: line 1 has no string field 'text'"):
        read_strictly(path)
    assert [r.text for r in read_instruction_file(path, text_field="prompt")] == ["x"]


TEXTS = ["Instruction: première ligne\nsuite", "Question: 你好？\nContext: 上下文"]


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"], ids=["plain", "bom"])
@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
def test_utf8_with_or_without_bom_and_any_line_end_read_the_same(tmp_path, bom, newline):
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_bytes(bom + newline.join(json.dumps({"text": t}, ensure_ascii=False).encode() for t in TEXTS) + newline)
    assert [(r.text, r.error) for r in read_instruction_file(jsonl)] == [(t, None) for t in TEXTS]
    blocks = tmp_path / "a.txt"
    blocks.write_bytes(bom + (newline * 2).join(t.encode().replace(b"\n", newline) for t in TEXTS) + newline)
    assert [(r.text, r.error) for r in read_instruction_file(blocks)] == [(t, None) for t in TEXTS]
    assert [e.instruction.fields for e in read_strictly(blocks)][0] == {"prompt": "première ligne\nsuite"}


def test_bytes_that_are_not_utf8_are_a_located_bad_record(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"text": "Instruction: ok"}\n{"text": "Instruction: caf\xe9"}\n')
    good, bad = read_instruction_file(path)
    assert good.error is None
    assert str(bad.error) == f"{path}, record 2: line 2 is not valid UTF-8 (byte 0xe9 at column 27); save the file as UTF-8"
    assert bad.text == '{"text": "Instruction: caf\ufffd"}'  # what the rejects file shows
    blocks = tmp_path / "latin1.txt"
    blocks.write_bytes(b"Instruction: a\n\nInstruction: b\n\xff\xfe\n")
    assert [str(r.error).split(": ", 1)[1] if r.error else None for r in read_instruction_file(blocks)] == [
        None, "line 4 is not valid UTF-8 (byte 0xff at column 1); save the file as UTF-8"]


def test_skip_mode_skips_broken_lines_and_counts_them(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b'{"text": "Instruction: one"}\n{broken\n{"id": "t", "prompt": "x"}\n\xff\n["a"]\n'
                     b'{"text": "Instruction: two"}\n')
    split = collect(parsed(read_instruction_file(path)), on_error="skip")
    assert [e.instruction.fields["prompt"] for e in split.examples] == ["one", "two"]
    assert [(r["record"], r["reason"].split(" is ")[0].split(" has ")[0]) for r in split.rejects] == [
        (2, "line 2"), (3, "line 3"), (4, "line 4"), (5, "line 5")]
    assert split.total == 6


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(read_instruction_file(tmp_path / "none.jsonl"))
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="unknown instruction file format 'csv'"):
        list(read_instruction_file(tmp_path / "a.txt", format="csv"))


def test_deep_nesting_and_lone_surrogates_are_handled(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_bytes(b"[" * 100_000 + b"\n" + b'{"text": "Instruction: a\\ud800b"}\n')
    deep, surrogate = read_instruction_file(path)
    assert str(deep.error).endswith("record 1: line 1 is not valid JSON: nested too deeply")
    assert surrogate.error is None and surrogate.text == "Instruction: a\ud800b"
    out = tmp_path / "rejects.jsonl"
    write_jsonl(out, [{"text": surrogate.text}])  # a rejects file never fails on what was read
    assert [r.text for r in read_instruction_file(out)] == ["Instruction: a\ud800b"]
