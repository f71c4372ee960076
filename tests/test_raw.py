"""Raw readers: exact records from tiny files, located errors, and the published row counts."""

from __future__ import annotations

import json
import re

import pytest

from instructrec.data import raw
from instructrec.babi import read_babi
from instructrec.instructions import InstructionError
from instructrec.instructions import templates


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


# -- SQuAD-style JSON ------------------------------------------------------------------------------


def squad_file(tmp_path, qas, version="v2.0"):
    document = {"version": version, "data": [{"title": "T", "paragraphs": [{"context": "Paris is in France.", "qas": qas}]}]}
    return write(tmp_path / "squad.json", json.dumps(document))


def test_read_squad_one_record_per_question(tmp_path):
    path = squad_file(
        tmp_path,
        [
            {"id": "q1", "question": " Where is Paris? ", "answers": [{"text": "France", "answer_start": 12}]},
            {"id": "q2", "question": "Who?", "answers": [], "is_impossible": True},
        ],
    )
    assert raw.read_squad(path) == [
        {
            "id": "q1",
            "title": "T",
            "context": "Paris is in France.",
            "question": "Where is Paris?",
            "answers": [{"text": "France", "answer_start": 12}],
            "is_impossible": False,
            "source": str(path),
            "record": 1,
        },
        {
            "id": "q2",
            "title": "T",
            "context": "Paris is in France.",
            "question": "Who?",
            "answers": [],
            "is_impossible": True,
            "source": str(path),
            "record": 2,
        },
    ]


def test_read_squad_errors_name_file_and_question(tmp_path):
    path = squad_file(tmp_path, [{"id": "q1", "question": "A?", "answers": []}, {"id": "q2", "answers": []}])
    with pytest.raises(InstructionError, match=re.escape(f"{path}, record 2: ") + r"missing or malformed 'question'"):
        raw.read_squad(path)
    path = squad_file(tmp_path, [{"id": "q1", "question": "A?", "answers": [{"text": "x"}], "is_impossible": True}])
    with pytest.raises(InstructionError, match=r"record 1: question is marked impossible but has answers"):
        raw.read_squad(path)
    with pytest.raises(InstructionError, match="not valid JSON"):
        raw.read_squad(write(tmp_path / "bad.json", "{"))


def test_read_squad_bad_bytes_bom_and_deep_nesting(tmp_path):
    """Found by tests/test_fuzz.py: non-UTF-8 bytes escaped as a bare UnicodeDecodeError, a BOM was
    "not valid JSON", and deep nesting escaped as a RecursionError."""
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"data":\n[\x80]}')
    with pytest.raises(InstructionError, match=r"bad.json: not utf-8: byte 0x80 on line 2") as error:
        raw.read_squad(bad)
    assert error.value.hint == "save the file as UTF-8"
    document = {"data": [{"paragraphs": [{"context": "c", "qas": [{"id": "q", "question": "Q?", "answers": []}]}]}]}
    plain = raw.read_squad(write(tmp_path / "plain.json", json.dumps(document)))
    with_bom = raw.read_squad(write(tmp_path / "plain.json", "\ufeff" + json.dumps(document, indent=1).replace("\n", "\r\n")))
    assert with_bom == plain
    with pytest.raises(InstructionError, match="not valid JSON: nested too deeply"):
        raw.read_squad(write(tmp_path / "deep.json", "[" * 100_000))


# -- CSV / TSV -------------------------------------------------------------------------------------


def test_read_delimited_csv_with_quoted_commas_and_newlines(tmp_path):
    path = write(tmp_path / "news.csv", 'label,title,description\n3,"Fears, again","two\nlines ""quoted"""\n')
    assert raw.read_delimited(
        path, text_columns=["title", "description"], label_column="label", label_map=raw.AGNEWS_LABELS
    ) == [
        {
            "id": "news.csv:2",
            "title": "Fears, again",
            "description": 'two\nlines "quoted"',
            "label": "Business",
            "source": str(path),
            "record": 2,
        }
    ]


def test_read_delimited_header_choices(tmp_path):
    path = write(tmp_path / "rows.tsv", "good film \t1\n\nbad\t0\n")  # a blank line is no record
    by_position = raw.read_delimited(path, text_columns=[0], label_column=1, header=False)
    assert [(r[0], r["label"], r["record"]) for r in by_position] == [("good film", "1", 1), ("bad", "0", 3)]
    named = raw.read_delimited(path, text_columns=["text"], label_column="y", header=["text", "y"], label_map=raw.SST2_LABELS)
    assert [(r["text"], r["label"]) for r in named] == [("good film", "positive"), ("bad", "negative")]


def test_read_delimited_quotechar_none_keeps_quotes(tmp_path):
    path = write(tmp_path / "glue.tsv", 'sentence\tlabel\n"quoted" start\t1\n')
    (record,) = raw.read_delimited(path, text_columns=["sentence"], label_column="label", quotechar=None)
    assert record["sentence"] == '"quoted" start'


@pytest.mark.parametrize(
    "text, message",
    [
        ("sentence\tlabel\nfine\t1\nbroken\n", r"rows.tsv, record 3: expected 2 fields \(sentence, label\), got 1"),
        ("sentence\tlabel\nfine\t2\n", r"rows.tsv, record 2: unknown label '2'; known: \['0', '1'\]"),
        ("sentence\tlabel\nfine\t\n", r"rows.tsv, record 2: empty label"),
        ("sentence\ty\nfine\t1\n", r"rows.tsv, record 1: no column\(s\) \['label'\]; the columns are \['sentence', 'y'\]"),
    ],
)
def test_read_delimited_errors(tmp_path, text, message):
    path = write(tmp_path / "rows.tsv", text)
    with pytest.raises(InstructionError, match=message):
        raw.read_delimited(path, text_columns=["sentence"], label_column="label", label_map=raw.SST2_LABELS)


def test_read_delimited_bad_quoting_and_encoding(tmp_path):
    with pytest.raises(InstructionError, match=r"bad.csv, record 2: malformed row"):
        raw.read_delimited(write(tmp_path / "bad.csv", 'label,text\n1,"open"quote\n'), text_columns=["text"], label_column="label")
    latin = write(tmp_path / "latin.csv", "label,text\n1,café\n", encoding="latin-1")
    with pytest.raises(InstructionError, match=r"latin.csv, record 2: not utf-8: byte 0xe9 on line 2"):
        raw.read_delimited(latin, text_columns=["text"], label_column="label")
    (row,) = raw.read_delimited(latin, text_columns=["text"], label_column="label", encoding="latin-1")
    assert row["text"] == "café"


def test_read_delimited_bom_line_ends_and_located_bad_bytes(tmp_path):
    """Found by tests/test_fuzz.py: a UTF-8 BOM became part of the first column's name ("no column
    'sentence'"), and a bad byte was reported on the line where the 8 KiB decoding chunk began."""
    expected = raw.read_sst2(write(tmp_path / "sst2.tsv", "sentence\tlabel\nok\t1\nbad\t0\n"))
    for line_end in ("\r\n", "\r"):
        text = "\ufeffsentence\tlabel\nok\t1\nbad\t0\n".replace("\n", line_end)
        assert raw.read_sst2(write(tmp_path / "sst2.tsv", text)) == expected
    rows = "label,text\n" + "1,fine\n" * 2000
    path = tmp_path / "late.csv"
    path.write_bytes(rows.encode() + b"1,caf\xe9\n")
    with pytest.raises(InstructionError, match=r"late.csv, record 2002: not utf-8: byte 0xe9 on line 2002") as error:
        raw.read_delimited(path, text_columns=["text"], label_column="label")
    assert "encoding" in error.value.hint


def test_read_delimited_needs_a_delimiter_for_other_suffixes(tmp_path):
    with pytest.raises(InstructionError, match="pass delimiter="):
        raw.read_delimited(write(tmp_path / "x.txt", "a|b\n"), text_columns=["a"], label_column="b")


def test_read_agnews_train_tsv_has_label_names_and_no_header(tmp_path):
    path = write(tmp_path / "train.tsv", '"He said ""no"", twice"\tWorld\nplain\tSci/Tech\n')
    assert [(r["description"], r["label"], r["record"]) for r in raw.read_agnews(path)] == [
        ('He said "no", twice', "World", 1),
        ("plain", "Sci/Tech", 2),
    ]
    with pytest.raises(InstructionError, match=r"train.tsv, record 1: unknown label 'Politics'"):
        raw.read_agnews(write(tmp_path / "train.tsv", "text\tPolitics\n"))


# -- line formats ----------------------------------------------------------------------------------


def test_read_financial_phrasebank_splits_at_the_last_at(tmp_path):
    path = write(tmp_path / "fpb.txt", "Mail me @ home , says CEO .@neutral\r\nSales fell .@negative\n")
    assert raw.read_financial_phrasebank(path) == [
        {"id": "fpb.txt:1", "sentence": "Mail me @ home , says CEO .", "label": "neutral", "source": str(path), "record": 1},
        {"id": "fpb.txt:2", "sentence": "Sales fell .", "label": "negative", "source": str(path), "record": 2},
    ]


def test_read_financial_phrasebank_falls_back_to_latin1(tmp_path):
    path = write(tmp_path / "fpb.txt", "Café prices rose .@positive\n", encoding="latin-1")
    assert raw.read_financial_phrasebank(path)[0]["sentence"] == "Café prices rose ."
    with pytest.raises(InstructionError, match="not utf-8"):
        raw.read_financial_phrasebank(path, encoding="utf-8")


@pytest.mark.parametrize(
    "text, message",
    [("Good .@positive\nno label here\n", r"record 2: no '@' before the label"), ("Good .@great\n", r"record 1: unknown label 'great'")],
)
def test_read_financial_phrasebank_errors(tmp_path, text, message):
    with pytest.raises(InstructionError, match=message):
        raw.read_financial_phrasebank(write(tmp_path / "fpb.txt", text))


def test_read_parallel(tmp_path):
    en = write(tmp_path / "val.en", "A dog runs.\nTwo men \n")
    de = write(tmp_path / "val.de", "Ein Hund rennt.\nZwei Männer\n")
    assert raw.read_parallel(en, de) == [
        {"id": "val.en:1", "text": "A dog runs.", "target": "Ein Hund rennt.", "source": str(en), "target_source": str(de), "record": 1},
        {"id": "val.en:2", "text": "Two men", "target": "Zwei Männer", "source": str(en), "target_source": str(de), "record": 2},
    ]


def test_read_parallel_errors(tmp_path):
    en = write(tmp_path / "val.en", "one\ntwo\nthree\n")
    de = write(tmp_path / "val.de", "eins\nzwei\n")
    with pytest.raises(InstructionError) as error:
        raw.read_parallel(en, de)
    assert f"{en} has 3 lines, {de} has 2" in str(error.value)
    write(tmp_path / "val.de", "eins\n\ndrei\n")
    with pytest.raises(InstructionError, match=re.escape(f"{tmp_path / 'val.de'}, record 2: empty line")):
        raw.read_parallel(en, de)


def test_read_parallel_bad_bytes_name_the_line_and_the_encoding_option(tmp_path):
    en = write(tmp_path / "val.en", "one\ntwo\n")
    de = tmp_path / "val.de"
    de.write_bytes(b"eins\nzw\xffei\n")
    with pytest.raises(InstructionError, match=re.escape(f"{de}, record 2: not utf-8: byte 0xff on line 2")) as error:
        raw.read_parallel(en, de)
    assert "encoding" in error.value.hint
    assert [r["target"] for r in raw.read_parallel(en, de, encoding="latin-1")] == ["eins", "zwÿei"]
    with pytest.raises(InstructionError, match="unknown encoding 'no-such-codec'"):
        raw.read_parallel(en, de, encoding="no-such-codec")


# -- bAbI ------------------------------------------------------------------------------------------

BABI = "1 Mary moved to the garden.\n2 Mary got the milk there.\n3 John went to the garden.\n4 Mary went to the hall.\n5 Where is the milk? \thall\t2 4\n1 Sandra went to the office.\n2 Where is Sandra? \toffice\t1\n"


def test_read_babi_qa_context_is_the_story_so_far(tmp_path):
    records = raw.read_babi_qa(write(tmp_path / "qa2_train.txt", BABI))
    assert [(r["id"], r["record"], r["story"], r["supporting"]) for r in records] == [
        ("qa2_train.txt:s0:5", 1, 0, [2, 4]),
        ("qa2_train.txt:s1:2", 2, 1, [1]),
    ]
    first = records[0]
    assert first["context"] == "Mary moved to the garden. Mary got the milk there. John went to the garden. Mary went to the hall."
    assert first["question"] == "Where is the milk?"
    (answer,) = first["answers"]
    assert first["context"][answer["answer_start"] :].startswith("hall.") and answer["text"] == "hall"
    assert records[1]["context"] == "Sandra went to the office."
    story = read_babi(tmp_path / "qa2_train.txt")[0]
    assert story.context_before(5) == (first["context"], {1: 0, 2: 26, 3: 51, 4: 76})
    assert first["facts"] == [1, 2, 3, 4]
    assert story.fact_at(first["facts"], answer["answer_start"]) == 4 and story.fact_at(first["facts"], 25) is None  # a space
    assert story.context_before(5, max_facts=2) == ("John went to the garden. Mary went to the hall.", {3: 0, 4: 25})
    (latest, _) = raw.read_babi_qa(tmp_path / "qa2_train.txt", max_facts=2)
    assert latest["context"] == "John went to the garden. Mary went to the hall."
    assert latest["context"][latest["answers"][0]["answer_start"]:].startswith("hall.")
    instruction = templates.get_template("babi").apply(first, seed=0, index=0)
    assert (instruction.task, instruction.answer, instruction.fields["context"]) == ("qa", "hall", first["context"])


def test_read_babi_qa_can_read_what_multi_hop_retrieval_selected(tmp_path):
    """Hop 1: the latest fact naming the milk; hop 2: Mary's facts (John's, which match no query
    term, never); the context keeps story order and the label its supporting fact."""
    path = write(tmp_path / "qa2_train.txt", BABI)
    first, second = raw.read_babi_qa(path, retrieve=[1, 10])
    assert first["context"] == "Mary moved to the garden. Mary got the milk there. Mary went to the hall."
    assert first["facts"] == [1, 2, 4] and first["supporting"] == [2, 4]
    assert first["answers"] == [{"text": "hall", "answer_start": first["context"].index("hall")}]
    assert read_babi(path)[0].fact_at(first["facts"], first["answers"][0]["answer_start"]) == 4
    assert (second["context"], second["facts"]) == ("Sandra went to the office.", [1])
    (missed, _) = raw.read_babi_qa(path, retrieve=[1])  # one hop: Mary's move to the hall is not read
    assert missed["context"] == "Mary got the milk there." and missed["answers"][0]["answer_start"] is None


def test_read_babi_qa_errors_name_the_file(tmp_path):
    path = write(tmp_path / "bad.txt", "1 Mary went home.\nthree Where?\thome\t1\n")
    with pytest.raises(InstructionError, match=re.escape(str(path))):
        raw.read_babi_qa(path)


def test_read_babi_bom_line_ends_and_located_errors(tmp_path):
    """Found by tests/test_fuzz.py: a UTF-8 BOM made line 1 "not start with its number", and bad
    bytes, non-ASCII digits (²) and non-numeric supporting ids gave unlocated messages."""
    expected = raw.read_babi_qa(write(tmp_path / "qa2_train.txt", BABI))
    for line_end in ("\r\n", "\r"):
        path = write(tmp_path / "qa2_train.txt", "\ufeff" + BABI.replace("\n", line_end))
        assert [{**r, "source": None} for r in raw.read_babi_qa(path)] == [{**r, "source": None} for r in expected]
    cases = [
        (b"1 Mary went home.\n2 Where is \xff?\thome\t1\n", r"record 2: not utf-8: byte 0xff on line 2 cannot be decoded"),
        ("1 Mary went home.\n² Where?\thome\t1\n".encode(), r"record 2: line 2: a bAbI line starts with its number"),
        (b"1 Mary went home.\n2 Where?\thome\tx\n", r"record 2: line 2: supporting ids are line numbers"),
        (b"1 Mary went home.\n2 Where?\t \t1\n", r"record 2: line 2: a question needs an answer"),
    ]
    for data, message in cases:
        path = tmp_path / "bad.txt"
        path.write_bytes(data)
        with pytest.raises(InstructionError, match=re.escape(str(path)) + ", " + message):
            raw.read_babi_qa(path)


def test_reader_for_templates():
    assert raw.reader_for("sst2") is raw.read_sst2
    assert raw.reader_for("babi") is raw.read_babi_qa
    assert raw.reader_for("promptsource/squad_v2/Trivia") is raw.read_squad
    with pytest.raises(InstructionError, match="no raw reader known"):
        raw.reader_for("promptsource/trec/trec1")


# -- the real data: counts as published in the data README -------------------------------------------


@pytest.mark.parametrize(
    "relative, reader, count",
    [
        ("squad_v1.1_dev/dev-v1.1.part1.json", raw.read_squad, 5401),
        ("squad_v1.1_dev/dev-v1.1.part2.json", raw.read_squad, 5169),
        ("financial_phrasebank/Sentences_AllAgree.txt", raw.read_financial_phrasebank, 2264),
        ("financial_phrasebank/Sentences_50Agree.txt", raw.read_financial_phrasebank, 4846),
        ("agnews/test.csv", raw.read_agnews, 7600),
        ("sst2_glue/glue_dev.tsv", raw.read_sst2, 872),
        ("chnsenticorp_htl/ChnSentiCorp_htl_all.csv", raw.read_chnsenticorp, 7766),
        ("cmrc2018/cmrc2018_trial.json", raw.read_squad, 1002),
        ("babi_en_1k/qa3_three-supporting-facts_test.txt", raw.read_babi_qa, 1000),
    ],
)
def test_real_row_counts(shared_data, relative, reader, count):
    records = reader(shared_data / relative)
    assert len(records) == count
    assert len({r["id"] for r in records}) == count


@pytest.mark.slow
@pytest.mark.parametrize(
    "relative, reader, count",
    [
        ("squad_v2.0_dev/dev-v2.0.json", raw.read_squad, 11873),
        ("cmrc2018/cmrc2018_dev.json", raw.read_squad, 3219),
        ("agnews/train_subset_10k.tsv", raw.read_agnews, 10001),
        ("sst2_glue/glue_train_part1.tsv", raw.read_sst2, 60614),
        ("sst2_glue/glue_train_part2.tsv", raw.read_sst2, 6735),
    ],
)
def test_real_row_counts_large(shared_data, relative, reader, count):
    assert len(reader(shared_data / relative)) == count


def test_real_label_balance(shared_data):
    agnews = raw.read_agnews(shared_data / "agnews/test.csv")
    assert {label: sum(r["label"] == label for r in agnews) for label in templates.AGNEWS_OPTIONS} == dict.fromkeys(
        templates.AGNEWS_OPTIONS, 1900
    )
    fpb = raw.read_financial_phrasebank(shared_data / "financial_phrasebank/Sentences_AllAgree.txt")
    assert [sum(r["label"] == label for r in fpb) for label in raw.FINANCIAL_PHRASEBANK_LABELS] == [303, 1391, 570]


@pytest.mark.slow
def test_real_squad_v2_answerable_split(shared_data):
    records = raw.read_squad(shared_data / "squad_v2.0_dev/dev-v2.0.json")
    assert sum(not r["is_impossible"] for r in records) == 5928


def test_real_multi30k_val(shared_data):
    records = raw.read_parallel(shared_data / "multi30k/val.en", shared_data / "multi30k/val.de")
    assert len(records) == 1014
    assert records[0]["text"] == "A group of men are loading cotton onto a truck"
    assert records[0]["target"] == "Eine Gruppe von Männern lädt Baumwolle auf einen Lastwagen"
    with pytest.raises(InstructionError, match="1014 lines.*1000"):
        raw.read_parallel(shared_data / "multi30k/val.en", shared_data / "multi30k/test_2016_flickr.de")
