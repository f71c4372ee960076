"""Fuzzing: 10,000 generated cases per property (slow; CI runs them).

- the instruction language: any text parses to an ``Instruction`` or raises ``InstructionError``
  (located inside the text), and what parses is a fixed point of render + parse; every valid
  ``Instruction`` (any task, English and Chinese) round-trips through ``render``.
  ``tests/test_parser.py`` and ``tests/test_renderer.py`` hold fast versions of these properties
  (100 cases over a smaller vocabulary); here the inputs are also mutated rendered instructions.
- every dataset reader: arbitrary bytes and mutated valid files give records or an ``InputError``,
  nothing else; valid generated files (any line end, with or without a UTF-8 BOM) read back what
  was written.
- QA post-processing: random logits, offsets (``None``, ``NO_OFFSET``, ``(0, 0)`` special tokens,
  overlapping windows, rows that run short) and contexts never crash it, and every answer is the
  context slice of a valid span of its feature (no leading character dropped).

Why seeds: a Hypothesis draw costs about 0.1 ms here, and a structured case needs hundreds, so
each case is built by plain Python from two draws, a seed and a size. Hypothesis still prints the
built value of a failing case (and shrinks the size). ``INSTRUCTREC_FUZZ_EXAMPLES`` overrides the
number of cases (e.g. 200 for a quick run).
"""

from __future__ import annotations

import atexit
import codecs
import csv
import io
import json
import math
import os
import random
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from instructrec.data import raw
from instructrec.data.files import read_instruction_file, write_jsonl
from instructrec.batch import NO_OFFSET
from instructrec.errors import InputError
from instructrec.instructions import Instruction, InstructionError, parse_instruction, render
from instructrec.instructions.markers import MARKER_WORDS
from instructrec.qa.postprocess import postprocess_qa_predictions

EXAMPLES = int(os.environ.get("INSTRUCTREC_FUZZ_EXAMPLES", "10000"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
pytestmark = pytest.mark.slow

# One scratch folder for the files the reader tests write: function-scoped tmp_path is not reset
# between Hypothesis cases, so each case overwrites its files. /dev/shm when there is one: on some
# overlay file systems a write costs milliseconds.
_SHM = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
_SCRATCH = Path(tempfile.mkdtemp(prefix="instructrec-fuzz-", dir=_SHM))
atexit.register(shutil.rmtree, _SCRATCH, True)


def _scratch(name: str, data: bytes) -> Path:
    path = _SCRATCH / name
    path.write_bytes(data)
    return path


def seeded(generate, max_size: int = 8):
    """Cases built by ``generate(rng, size)`` from a drawn seed and size (shrinking lowers the size;
    a failure prints the built case as a note)."""
    def build(drawn):
        case = generate(random.Random(drawn[0]), drawn[1])
        note(case)  # pretty-printed only for the failing case Hypothesis reports
        return case

    return st.tuples(st.integers(0, 2**32 - 1), st.integers(0, max_size)).map(build)


# -- random text -------------------------------------------------------------------------------------

_WHITE = " \t\n\r\x0b\x0c\x1c\x85\xa0\u2028\u3000"
_PUNCT = ":：\\,，、/@\"'{}[]-*#.?。！\x00\ufeff"
_ALL_MARKER_WORDS = sorted({w for table in MARKER_WORDS.values() for ws in table.values() for w in ws})
_PIECES = [
    *(w + c for w in _ALL_MARKER_WORDS for c in ":："), "\\:", "\\\\：", "\n\n", "\r\n", "- ", "* ", " to ", "翻译成",
    "Translate ", "Please translate ", "将", "请将", "请", "English", "英语", "Classify ", "判断", "请判断", "Is ",
    "the following text", "Plan-A:", "C:\\Users", "ſ", "İ", "\U0001F600", "Options:\n", "Answer:", "答案：",
]


def _char(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.4:
        return chr(rng.randrange(0x20, 0x7F))
    if kind < 0.55:
        return rng.choice(_WHITE)
    if kind < 0.7:
        return rng.choice(_PUNCT)
    if kind < 0.85:
        return chr(rng.randrange(0x4E00, 0x9FA6))
    code = rng.randrange(0x110000)
    return chr(code) if not 0xD800 <= code < 0xE000 else "\ufffd"


def rtext(rng: random.Random, size: int, *, exclude: str = "", pieces: bool = True) -> str:
    """Up to about ``size * 3`` characters: any Unicode (no lone surrogates), weighted towards
    ASCII, white space, punctuation, CJK and marker words; without the characters in ``exclude``."""
    parts = []
    for _ in range(rng.randint(0, size)):
        if pieces and rng.random() < 0.2:
            parts.append(rng.choice(_PIECES))
        else:
            parts.append("".join(_char(rng) for _ in range(rng.randint(1, 4))))
    text = "".join(parts)
    return text.translate({ord(c): None for c in exclude}) if exclude else text


# -- the instruction language ----------------------------------------------------------------------

_LANGUAGE_NAMES = ["English", "German", "Simplified Chinese", "英语", "法语", "古汉语", "to", "To be", "Old to"]


def _value(rng, size, one_line=False):
    while True:
        value = rtext(rng, max(size, 1) + 1)
        if one_line:
            value = re.sub(r"[\r\n]", " ", value)
        if value.strip():
            return value.strip()


def random_instruction(rng: random.Random, size: int) -> Instruction:
    task = rng.choice(["qa", "classification", "translation", "generation"])
    if task == "qa":
        fields = {"question": _value(rng, size), "context": _value(rng, size)}
    elif task == "classification":
        options = list(dict.fromkeys(_value(rng, size, one_line=True) for _ in range(rng.randint(1, 5))))
        fields = {"text": _value(rng, size), "options": options}
        if rng.random() < 0.5:
            fields["instruction"] = _value(rng, size)
    elif task == "translation":
        names = [rng.choice(_LANGUAGE_NAMES) if rng.random() < 0.5 else _value(rng, 1, one_line=True) for _ in "st"]
        fields = {"source_language": names[0], "target_language": names[1], "text": _value(rng, size)}
    else:
        fields = {"prompt": _value(rng, size)}
    if rng.random() < 0.5:
        fields["answer"] = _value(rng, size)
    return Instruction(task, rng.choice(["en", "zh"]), fields)


def _rendered_or_none(instruction):
    try:
        return render(instruction)
    except InstructionError:  # translation languages render cannot write (see test_renderer)
        assert instruction.task == "translation"
        return None


def mutate_text(rng: random.Random, text: str) -> str:
    """A few edits: a slice deleted, duplicated or case-swapped, or a marker word or character inserted."""
    for _ in range(rng.randint(1, 4)):
        i = rng.randint(0, len(text))
        j = rng.randint(i, min(len(text), i + 12))
        edit = rng.randrange(4)
        if edit == 0:
            text = text[:i] + text[j:]
        elif edit == 1:
            text = text[:i] + (rng.choice(_PIECES) if rng.random() < 0.6 else _char(rng)) + text[i:]
        elif edit == 2:
            text = text[:j] + text[i:j] + text[j:]
        else:
            text = text[:i] + text[i:j].swapcase() + text[j:]
    return text


def _instruction_text(rng, size):
    """Text near the grammar: a rendered instruction (maybe mutated), or marker-salted text."""
    kind = rng.random()
    if kind < 0.6:
        text = _rendered_or_none(random_instruction(rng, size)) or rtext(rng, size)
        return mutate_text(rng, text) if kind < 0.45 else text
    return rtext(rng, size * 2)


def _check_parse(text):
    """parse_instruction returns an Instruction or raises InstructionError located in the text."""
    try:
        result = parse_instruction(text)
    except InstructionError as error:
        assert error.reason
        assert error.offset is None or 0 <= error.offset <= len(text), (error.offset, len(text))
        return None
    assert isinstance(result, Instruction)
    return result


@FUZZ
@given(st.one_of(seeded(_instruction_text), st.text()))
def test_any_text_parses_or_raises_an_instruction_error_and_reads_back(text):
    parsed = _check_parse(text)
    if parsed is not None:
        # What the parser accepted renders (its languages came from a marker) and reads back.
        assert parse_instruction(render(parsed)) == parsed


@FUZZ
@given(seeded(random_instruction))
def test_every_instruction_round_trips(instruction):
    text = _rendered_or_none(instruction)
    if text is None:
        return
    assert parse_instruction(text) == instruction
    assert parse_instruction(render(instruction.without_answer())) == instruction.without_answer()
    assert Instruction.from_dict(json.loads(json.dumps(instruction.to_dict()))) == instruction


# -- files: byte-level mutation, reading -------------------------------------------------------------

_BYTE_INSERTS = [
    b"\n", b"\r\n", b"\r", b"\n\n", b"\t", b",", b'"', b"'", b"@", b"{", b"}", b"[", b"]", b":", b"\\", b"\x00",
    codecs.BOM_UTF8, b"\xff", b"\xc3", b"\xe4\xb8", b"\xed\xa0\x80", b"\x80", b"1 ", b"2 ", b"0", b"-1", b" ", b"\xb2",
    b"null", b"true", b"1e999", b'"\\ud800"', b"NaN", b"positive", b"neutral", b"negative", b"\xe2\x80\xa8",
]


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    """A few byte-level edits, maybe other line ends and a UTF-8 BOM."""
    if rng.random() < 0.3:
        data = rng.choice([b"\r\n", b"\r"]).join(data.split(b"\n"))
    for _ in range(rng.randint(0, 4)):
        i = rng.randint(0, len(data))
        j = rng.randint(i, min(len(data), i + 8))
        edit = rng.randrange(4)
        if edit == 0:
            data = data[:i] + data[j:]
        elif edit == 1:
            piece = rng.choice(_BYTE_INSERTS) if rng.random() < 0.7 else rng.randbytes(rng.randint(1, 3))
            data = data[:i] + piece + data[i:]
        elif edit == 2:
            data = data[:j] + data[i:j] + data[j:]
        else:
            data = data[:i]
    if rng.random() < 0.3:
        data = codecs.BOM_UTF8 + data
    return data


def bytes_or_mutated(*valid):
    """Arbitrary bytes, or one of the ``valid(rng, size) -> bytes`` files with a few edits."""

    def generate(rng, size):
        return mutate_bytes(rng, rng.choice(valid)(rng, size))

    return st.one_of(st.binary(max_size=200), seeded(generate))


def _records_or_input_error(read, *args, **kwargs):
    """What a reader gives: its records, or None after an InputError (anything else propagates)."""
    try:
        return list(read(*args, **kwargs))
    except InputError as error:
        assert error.reason and error.source, error
        return None


def _encoded(text: str, bom: bool, line_end: str = "\n") -> bytes:
    data = text.replace("\n", line_end).encode("utf-8")
    return codecs.BOM_UTF8 + data if bom else data


_NO_BREAKS = "\r\n"


def line_text(rng, size):
    """One line's text as readers give it back: stripped, no CR or LF (other breaks are text), no
    leading U+FEFF (at the start of a file that is a byte-order mark)."""
    if rng.random() < 0.2:
        return rng.choice(["I loved it.", "很好", "a,b", 'say "hi"', "x\ty", "@", "中文，逗号", "1", ""])
    return rtext(rng, size, exclude=_NO_BREAKS).strip().lstrip("\ufeff").strip()


# -- instruction files: JSONL and blank-line blocks ----------------------------------------------------


def _jsonl_rows(rng, size):
    rows = []
    for _ in range(rng.randint(0, min(size, 5))):
        row = {"text": rtext(rng, size)}
        if rng.random() < 0.3:
            row["id"] = rng.choice([rtext(rng, 2), rng.randint(-5, 5)])
        rows.append(row)
    return rows


def _jsonl_bytes(rng, size):
    return "".join(json.dumps(r, ensure_ascii=rng.random() < 0.5) + "\n" for r in _jsonl_rows(rng, size)).encode()


def _blocks(rng, size):
    """Blocks as the block reader gives them back: non-blank lines, stripped, no blank line inside."""
    blocks = []
    for _ in range(rng.randint(0, min(size, 5))):
        lines = [line for line in (line_text(rng, size) for _ in range(rng.randint(1, 3))) if line.strip()]
        if lines:
            blocks.append("\n".join(lines).strip())
    return blocks


def _blocks_bytes(rng, size):
    return "\n\n".join(_blocks(rng, size)).encode()


def _check_instruction_files(data):
    path = _scratch("fuzz.jsonl", data)
    for format in ("jsonl", "blocks"):
        records = _records_or_input_error(read_instruction_file, path, format=format)
        for number, record in enumerate(records or [], start=1):
            assert isinstance(record.text, str) and record.record == number
            error = getattr(record, "error", None)  # a broken record is yielded with its error
            if error is not None:
                assert isinstance(error, InputError) and error.source == record.source and error.record == number


def _written_files(rng, size):
    return _jsonl_rows(rng, size), _blocks(rng, size), rng.choice(["\n\n", "\n \n", "\n\t\n\n", "\n\n\n"])


def _check_instruction_files_read_back(written, line_end, bom):
    rows, blocks, separator = written
    path = _SCRATCH / "written.jsonl"
    write_jsonl(path, rows)
    records = list(read_instruction_file(path))
    assert [(r.text, r.record, r.id) for r in records] == [
        (row["text"], i, str(row.get("id", f"written-{i}"))) for i, row in enumerate(rows, start=1)
    ]
    if bom and blocks and blocks[0].startswith("\ufeff"):
        blocks[0] = blocks[0][1:].strip()  # what a BOM and then a U+FEFF text read as is ambiguous
        blocks = [b for b in blocks if b]
    path = _scratch("written.txt", _encoded(separator.join(blocks), bom, line_end))
    assert [(r.text, r.record) for r in read_instruction_file(path)] == [(b, i) for i, b in enumerate(blocks, start=1)]


# -- SQuAD JSON -------------------------------------------------------------------------------------


def squad_document(rng, size):
    def qa():
        item = {"question": rtext(rng, 3), "answers": []}
        for _ in range(rng.randint(0, 2)):
            answer = {"text": rtext(rng, 2)}
            if rng.random() < 0.8:
                answer["answer_start"] = rng.randint(-1, 40)
            item["answers"].append(answer)
        if rng.random() < 0.7:
            item["id"] = rtext(rng, 2)
        if rng.random() < 0.5:
            item["is_impossible"] = not item["answers"] and rng.random() < 0.5
        return item

    def article():
        paragraphs = [
            {"context": rtext(rng, 4), "qas": [qa() for _ in range(rng.randint(0, 3))]} for _ in range(rng.randint(0, 2))
        ]
        return {"title": rtext(rng, 2), "paragraphs": paragraphs} if rng.random() < 0.7 else {"paragraphs": paragraphs}

    return {"version": "v2.0", "data": [article() for _ in range(rng.randint(0, min(size, 3)))]}


def _json_value(rng, depth=0):
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind < 5:
        return [None, True, rng.randint(-9, 9), rng.random() * 1e6, rtext(rng, 2)][kind]
    if kind < 7:
        return [_json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rtext(rng, 1): _json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def _squad_bytes(rng, size):
    """A SQuAD document, maybe with one value (any depth) replaced by other JSON or removed."""
    document = squad_document(rng, size)
    places, stack = [], [document]
    while stack:
        node = stack.pop()
        for key, value in node.items() if isinstance(node, dict) else enumerate(node):
            places.append((node, key))
            if isinstance(value, (dict, list)):
                stack.append(value)
    if places and rng.random() < 0.7:
        node, key = rng.choice(places)
        if isinstance(node, dict) and rng.random() < 0.3:
            del node[key]
        else:
            node[key] = _json_value(rng)
    return json.dumps(document, ensure_ascii=rng.random() < 0.5).encode()


def _structurally_broken_squad(rng, size):
    return _squad_bytes(rng, size) if rng.random() < 0.5 else mutate_bytes(rng, _squad_bytes(rng, size))


def _check_squad(data):
    _records_or_input_error(raw.read_squad, _scratch("squad.json", data))


def _check_squad_reads_back(document, ensure_ascii, indent, bom, line_end):
    path = _scratch("squad.json", _encoded(json.dumps(document, ensure_ascii=ensure_ascii, indent=indent), bom, line_end))
    expected = []
    for article in document["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                number = len(expected) + 1
                expected.append({
                    "id": qa.get("id", f"squad.json:{number}"),
                    "title": article.get("title", ""),
                    "context": paragraph["context"],
                    "question": qa["question"].strip(),
                    "answers": [{"text": a["text"], "answer_start": a.get("answer_start")} for a in qa["answers"]],
                    "is_impossible": qa.get("is_impossible", False),
                    "source": str(path),
                    "record": number,
                })
    assert raw.read_squad(path) == expected


# -- CSV / TSV, FinancialPhraseBank, parallel text, bAbI ------------------------------------------------


def _csv_bytes(rows, delimiter, line_end="\n", encoding="utf-8"):
    out = io.StringIO()
    # The writer quotes only fields holding characters of its line end: with CR, LF needs quoting too.
    quoting = csv.QUOTE_ALL if line_end == "\r" else csv.QUOTE_MINIMAL
    csv.writer(out, delimiter=delimiter, lineterminator=line_end, quoting=quoting).writerows(rows)
    return out.getvalue().encode(encoding)


_CELLS = ["0", "1", "2", "4", "World", "正面", "text", "label", "sentence", "review", 'a "b"', "x,y", "a\nb", "", "a\tb"]


def _delimited_bytes(rng, size):
    rows = [[rng.choice(_CELLS) if rng.random() < 0.7 else rtext(rng, 2) for _ in range(rng.randint(1, 3))]
            for _ in range(rng.randint(0, min(size, 5)))]
    return _csv_bytes(rows, rng.choice(",\t"))


_FPB_LABELS = list(raw.FINANCIAL_PHRASEBANK_LABELS)


def _fpb_bytes(rng, size):
    rows = [f"{line_text(rng, size)}@{rng.choice(_FPB_LABELS)}\n" for _ in range(rng.randint(0, min(size, 5)))]
    return "".join(rows).encode()


def _lines_bytes(rng, size):
    return "".join(line_text(rng, size) + "\n" for _ in range(rng.randint(0, min(size, 5)))).encode()


_BABI_WORDS = ["Mary", "John", "went", "to", "the", "garden", "hall", "milk", "got", "office", "Where", "is", "北京"]


def babi_stories(rng, size):
    """Stories as lists of lines: ("fact", sentence) or ("question", sentence, answer, supporting)."""
    stories = []
    for _ in range(rng.randint(0, min(size, 3))):
        lines = []
        for _ in range(rng.randint(1, 8)):
            sentence = " ".join(rng.choice(_BABI_WORDS) for _ in range(rng.randint(1, 5)))
            facts = [n for n, line in enumerate(lines, start=1) if line[0] == "fact"]
            if facts and rng.random() < 0.4:
                supporting = [rng.choice(facts) for _ in range(rng.randint(1, 3))]
                lines.append(("question", sentence + "?", rng.choice(_BABI_WORDS), supporting))
            else:
                lines.append(("fact", sentence + "."))
        stories.append(lines)
    return stories


def _babi_text(stories):
    out = []
    for lines in stories:
        for n, (kind, sentence, *question) in enumerate(lines, start=1):
            if kind == "fact":
                out.append(f"{n} {sentence}\n")
            else:
                answer, supporting = question
                out.append(f"{n} {sentence} \t{answer}\t{' '.join(map(str, supporting))}\n")
    return "".join(out)


def _babi_bytes(rng, size):
    return _babi_text(babi_stories(rng, size)).encode()


# Every line-based reader, on the file name it expects.
_LINE_READERS = {
    ".tsv": [
        raw.read_sst2,
        raw.read_agnews,  # the ALPS .tsv subset
        lambda p: raw.read_delimited(p, text_columns=["text"], label_column="label", quotechar=None),
    ],
    ".csv": [
        raw.read_agnews,  # the official test.csv
        raw.read_chnsenticorp,
        lambda p: raw.read_delimited(p, text_columns=[0], label_column=1, header=False),
        lambda p: raw.read_delimited(p, text_columns=["text"], label_column="label", encoding="latin-1"),
    ],
    ".txt": [
        raw.read_financial_phrasebank,
        lambda p: raw.read_financial_phrasebank(p, encoding="utf-8"),
        lambda p: raw.read_parallel(p, p),
        lambda p: raw.read_parallel(p, _scratch("val.de", b"eins\nzwei\n")),
        raw.read_babi_qa,
        lambda p: raw.read_babi_qa(p, max_facts=2),
    ],
}


def _check_line_readers(data):
    for suffix, readers in _LINE_READERS.items():
        path = _scratch("fuzz" + suffix, data)
        for read in readers:
            for record in _records_or_input_error(read, path) or []:
                assert isinstance(record["record"], int) and record["source"]


def _delimited_case(rng, size):
    rows = [(line_text(rng, size), line_text(rng, size), rng.choice("1234")) for _ in range(rng.randint(0, min(size, 5)))]
    if rng.random() < 0.2:  # quoted line breaks inside a field
        rows = [(a + "\n" + b if a and b else a, b, label) for a, b, label in rows]
    return rows


def _check_delimited_read_back(rows, reader, line_end, bom):
    if reader == "sst2":
        rows = [(s, str(int(label) % 2)) for s, _, label in rows]
        data, read, name = _csv_bytes([("sentence", "label"), *rows], "\t", line_end), raw.read_sst2, "sst2.tsv"
        expected = [{"sentence": s, "label": raw.SST2_LABELS[label]} for s, label in rows]
    elif reader == "agnews":
        data = _csv_bytes([("label", "title", "description"), *[(label, t, d) for t, d, label in rows]], ",", line_end)
        read, name = raw.read_agnews, "test.csv"
        expected = [{"title": t, "description": d, "label": raw.AGNEWS_LABELS[label]} for t, d, label in rows]
    elif reader == "chnsenticorp":
        rows = [(str(int(label) % 2), review) for review, _, label in rows]
        data, read, name = _csv_bytes([("label", "review"), *rows], ",", line_end), raw.read_chnsenticorp, "c.csv"
        expected = [{"review": r, "label": raw.CHNSENTICORP_LABELS[label]} for label, r in rows]
    else:  # another encoding, named by the caller (no BOM: that is UTF-8's)
        rows = [(t.encode("latin-1", "replace").decode("latin-1").strip(), label) for t, _, label in rows]
        data, name, bom = _csv_bytes([("text", "label"), *rows], ",", line_end, "latin-1"), "l.csv", False

        def read(path):
            return raw.read_delimited(path, text_columns=["text"], label_column="label", encoding="latin-1")

        expected = [{"text": t, "label": label} for t, label in rows]
    records = read(_scratch(name, codecs.BOM_UTF8 + data if bom else data))
    assert [{k: v for k, v in r.items() if k not in ("id", "source", "record")} for r in records] == expected
    lines = [r["record"] for r in records]
    assert lines == sorted(set(lines)) and all(line > 1 for line in lines)  # after the header, increasing


def _phrasebank_case(rng, size):
    return [(line_text(rng, size), rng.choice(_FPB_LABELS), line_text(rng, size) or "x") for _ in range(rng.randint(0, min(size, 5)))]


def _check_phrasebank_and_parallel_read_back(rows, line_end, bom):
    text = "\n".join(f"{s}@{label}" for s, label, _ in rows)
    records = raw.read_financial_phrasebank(_scratch("fpb.txt", _encoded(text, bom, line_end)))
    assert [(r["sentence"], r["label"], r["record"]) for r in records] == [(s, l, i) for i, (s, l, _) in enumerate(rows, 1)]
    pairs = [(f"{s}@{label}", t) for s, label, t in rows]  # the phrasebank lines, translated
    source = _scratch("val.en", _encoded("".join(f"{s}\n" for s, _ in pairs), bom, line_end))
    target = _scratch("val.de", _encoded("".join(f"{t}\n" for _, t in pairs), False, line_end))
    records = raw.read_parallel(source, target)
    assert [(r["text"], r["target"], r["record"]) for r in records] == [(s, t, i) for i, (s, t) in enumerate(pairs, 1)]


def _check_babi_read_back(stories, line_end, bom, max_facts):
    path = _scratch("qa1_train.txt", _encoded(_babi_text(stories), bom, line_end))
    records = raw.read_babi_qa(path, max_facts=max_facts)
    expected = []
    for index, lines in enumerate(stories):
        for n, (kind, sentence, *question) in enumerate(lines, start=1):
            if kind == "question":
                facts = [i for i, line in enumerate(lines[: n - 1], start=1) if line[0] == "fact"]
                facts = facts[-max_facts:] if max_facts else facts
                expected.append((index, n, sentence, question[0], question[1], " ".join(lines[i - 1][1] for i in facts)))
    assert [(r["story"], int(r["id"].rsplit(":", 1)[1]), r["question"], r["answers"][0]["text"], r["supporting"], r["context"])
            for r in records] == expected
    for record in records:
        (answer,) = record["answers"]
        if answer["answer_start"] is not None:
            start = answer["answer_start"]
            assert record["context"][start : start + len(answer["text"])] == answer["text"]


# -- every reader, one property each: any bytes are records or an InputError; files read back --------

_ANY_VALID_FILE = (
    _jsonl_bytes, _blocks_bytes, _structurally_broken_squad, _delimited_bytes, _fpb_bytes, _lines_bytes, _babi_bytes,
)


@FUZZ
@given(bytes_or_mutated(*_ANY_VALID_FILE))
def test_every_reader_gives_records_or_an_input_error(data):
    """Each case (arbitrary bytes, or a valid file of any format with byte-level edits) goes through
    every reader: JSONL and blocks, SQuAD JSON, CSV/TSV, FinancialPhraseBank, parallel text, bAbI."""
    _check_instruction_files(data)
    _check_squad(data)
    _check_line_readers(data)


@pytest.mark.parametrize("name", ["fuzz.jsonl", "squad.json"])
@pytest.mark.parametrize("data", [b"[" * 100_000, b'{"data": [' + b"[" * 100_000 + b"\n"])
def test_deeply_nested_json_is_an_input_error(name, data):
    """What random bytes never reach: past about 1,000 levels json raises RecursionError."""
    path = _scratch(name, data)
    if name == "squad.json":
        _records_or_input_error(raw.read_squad, path)
    else:
        _check_instruction_files(data)


def _file_format(rng):
    return rng.choice(["\n", "\r\n", "\r"]), rng.random() < 0.5  # line end, UTF-8 BOM


def _json_files(rng, size):
    return (
        _written_files(rng, size),
        squad_document(rng, size),
        dict(ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 1])),
        *_file_format(rng),
    )


def _line_files(rng, size):
    return (
        _delimited_case(rng, size),
        rng.choice(["sst2", "agnews", "chnsenticorp", "latin-1"]),
        _phrasebank_case(rng, size),
        babi_stories(rng, size),
        rng.choice([None, 1, 3]),
        *_file_format(rng),
    )


@FUZZ
@given(seeded(_json_files), seeded(_line_files))
def test_every_reader_reads_back_what_was_written(json_files, line_files):
    """Valid generated files, any line end, with or without a UTF-8 BOM: write_jsonl and blank-line
    blocks through read_instruction_file, SQuAD JSON through read_squad, CSV/TSV (SST-2, AG News,
    ChnSentiCorp, latin-1), FinancialPhraseBank, parallel text and bAbI through their readers."""
    written, document, dump, line_end, bom = json_files
    _check_instruction_files_read_back(written, line_end, bom)
    _check_squad_reads_back(document, dump["ensure_ascii"], dump["indent"], bom, line_end)
    delimited, reader, phrasebank, stories, max_facts, line_end, bom = line_files
    _check_delimited_read_back(delimited, reader, line_end, bom)
    _check_phrasebank_and_parallel_read_back(phrasebank, line_end, bom)
    _check_babi_read_back(stories, line_end, bom, max_facts)


# -- QA post-processing ------------------------------------------------------------------------------

_LOGIT_SPECIALS = [math.nan, -math.inf, math.inf, 1e300, -1e300, 0.0, -0.0]


def _logit(rng):
    kind = rng.random()
    if kind < 0.4:
        return float(rng.randint(-3, 3))  # many ties
    if kind < 0.9:
        return rng.uniform(-1e3, 1e3)
    return rng.choice(_LOGIT_SPECIALS)


def qa_features(rng, size):
    """Features of a few contexts: tokenised windows that overlap, with special and question tokens
    as ``NO_OFFSET``, ``None`` or ``(0, 0)``, padding, and offsets or logits that run short."""
    contexts = ["".join(rng.choice("ab 北京。\n\t") for _ in range(rng.randint(0, 16))) for _ in range(rng.randint(1, 3))]
    start, end, offsets, example_index = [], [], [], []
    for e, context in enumerate(contexts):
        # tokens: consecutive character ranges of the context, a few empty, a few overlapping
        cuts = sorted(rng.randint(0, len(context)) for _ in range(rng.randint(0, 8)))
        tokens = [(a, b) for a, b in zip([0, *cuts], [*cuts, len(context)]) if a < b or rng.random() < 0.2]
        if tokens and rng.random() < 0.3:
            i = rng.randrange(len(tokens))
            tokens[i] = (max(0, tokens[i][0] - 1), tokens[i][1])
        stride, window = rng.randint(1, 4), rng.randint(1, 6)
        for first in range(0, max(1, len(tokens)), stride):
            special = rng.choice([NO_OFFSET, None, (0, 0), [-1, -1]])
            row = [special, *[NO_OFFSET] * rng.randint(0, 2), special, *tokens[first : first + window], special]
            row += [rng.choice([NO_OFFSET, None, (0, 0)])] * rng.randint(0, 2)  # padding
            length = max(0, len(row) + rng.randint(-2, 2))  # logits may run short or long
            example_index.append(e)
            offsets.append(row)
            start.append([_logit(rng) for _ in range(length)])
            end.append([_logit(rng) for _ in range(length)])
            if first + window >= len(tokens):
                break
    return start, end, offsets, example_index, contexts


def _valid_spans(start, end, offsets, max_len):
    """Per feature: (start_char, end_char) -> the scores of its valid spans, as the docs define them."""
    spans = []
    for s_row, e_row, row in zip(start, end, offsets):
        found = {}
        n = min(len(s_row), len(e_row), len(row))
        ok = [row[i] is not None and row[i][0] >= 0 and row[i][1] >= 0 and math.isfinite(s_row[i]) and math.isfinite(e_row[i])
              for i in range(n)]
        for i in range(n):
            for j in range(i, min(n, i + max_len)):
                if ok[i] and ok[j] and row[j][1] > row[i][0]:
                    found.setdefault((row[i][0], row[j][1]), set()).add(s_row[i] + e_row[j])
        spans.append(found)
    return spans


def _postprocess_case(rng, size):
    options = dict(
        n_best=rng.randint(1, 5), max_answer_length=rng.randint(1, 6), version_2=rng.random() < 0.5,
        chunk_size=rng.choice([2, 256]),
    )
    return qa_features(rng, size), options, rng.random() < 0.5


@FUZZ
@given(seeded(_postprocess_case))
def test_postprocessing_never_crashes_and_answers_are_context_slices(case):
    inputs, options, as_array = case
    n_best, max_answer_length = options["n_best"], options["max_answer_length"]
    start, end, offsets, example_index, contexts = inputs
    if as_array and start and len({len(r) for r in start + end}) == 1:
        start, end = np.array(start), np.array(end)
    predictions = postprocess_qa_predictions(start, end, offsets, example_index, contexts, **options)
    assert len(predictions) == len(contexts)
    valid = _valid_spans([list(r) for r in start], [list(r) for r in end], offsets, max_answer_length)
    for e, (prediction, context) in enumerate(zip(predictions, contexts)):
        features = [f for f, x in enumerate(example_index) if x == e]
        spans = [c for c in prediction.nbest if (c.start_char, c.end_char) != (-1, -1)]
        for span in spans + ([prediction.best] if prediction.best else []):
            assert span.feature in features
            assert 0 <= span.start_char < span.end_char <= len(context)
            assert span.text == context[span.start_char : span.end_char] and span.text
            # a valid span of its feature: from a context token's first character to one's last
            assert span.score in valid[span.feature].get((span.start_char, span.end_char), ()), span
        assert len({c.text for c in prediction.nbest}) == len(prediction.nbest) <= n_best
        if prediction.nbest:
            assert math.isclose(sum(c.probability for c in prediction.nbest), 1.0, rel_tol=1e-9)
        scores = [score for f in features for found in valid[f].values() for score in found]
        assert (prediction.best is not None) == bool(scores)
        if prediction.best is not None:  # the best span scores highest of all valid spans of its example
            assert prediction.best.score == max(scores)
            assert prediction.text in ("", prediction.best.text)
        else:
            assert prediction.text == ""
