"""The rules parser reads prose without breaking, and nothing else it read changed.

``data/parser_regression.jsonl`` holds every instruction text the test suite parsed before marker
words inside prose stopped counting as markers (texts of 400 characters at most; the synthetic
quickstart reviews sampled), with what the parser made of them then. Each must parse the same now,
unless the difference is that fix: a marker the old parser saw that was lower case mid-line or
followed a word.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from instructrec.data import raw
from instructrec.data.files import read_instruction_file
from instructrec.errors import InputError
from instructrec.instructions import Instruction, InstructionError, parse_instruction, read_instruction, render
from instructrec.instructions.markers import find_markers, opens_a_field
from instructrec.instructions.templates import get_template

FIXTURE = Path(__file__).parent / "data" / "parser_regression.jsonl"
# Texts whose reading the fix changed on purpose.
CHANGED_BY_THE_FIX = {"Context: The sky. Here is the question: why is it blue?"}
# Texts whose language changed when one rule came to decide "mostly Chinese" everywhere (Han
# characters among letters; punctuation, here ")", no longer counts).
LANGUAGE_BY_THE_ONE_RULE = {")𦳐": "zh"}


def reading(text: str) -> dict:
    try:
        x = parse_instruction(text)
    except InstructionError as error:
        return {"error": "InstructionError", "reason": error.reason, "offset": error.offset}
    return {"task": x.task, "language": x.language, "fields": x.fields}


def test_every_recorded_text_parses_as_before_unless_the_fix_says_otherwise():
    rows = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]
    assert len(rows) > 600
    changed, accepted = set(), 0
    for row in rows:
        text, before, now = row["text"], row["result"], reading(row["text"])
        if text in LANGUAGE_BY_THE_ONE_RULE:
            assert now["language"] == LANGUAGE_BY_THE_ONE_RULE[text] != before["language"], text
            before = {**before, "language": now["language"]}
        if "error" in before:
            # Refused before: still refused at the same place, or now read (a passage before a
            # question is its context, prose before a marked qa its instruction).
            accepted += "error" not in now
            assert "error" not in now or now["offset"] == before["offset"], text
            assert "error" in now or now["task"] == "qa", text
            continue
        if now == before:
            continue
        changed.add(text)
        markers = {(m.start, m.end, m.field) for m in find_markers(text)}
        dropped = {tuple(m) for m in row["markers"]} - markers
        assert dropped and markers <= {tuple(m) for m in row["markers"]}, text
        assert all(not opens_a_field(text, start) for start, _, _ in dropped), text
    assert changed == CHANGED_BY_THE_FIX
    assert accepted == 3  # 'Please answer.\nQuestion: q\nContext: c' and two fuzzed texts


PROSE = [
    # (text, task, fields)
    ("Classify the type of the question: What is the capital of Peru?\nOptions: DESC, ENTY, ABBR, HUM, LOC, NUM",
     "classification", {"instruction": "Classify the type of the question", "text": "What is the capital of Peru?",
                        "options": ["DESC", "ENTY", "ABBR", "HUM", "LOC", "NUM"]}),
    ("Summarize the following paragraph in one sentence: The cat sat on the mat all day.",
     "generation", {"prompt": "Summarize the following paragraph in one sentence: The cat sat on the mat all day."}),
    ("Given the following passage, answer the question: Question: Who sat?\nContext: The cat sat.",
     "qa", {"question": "Who sat?", "context": "The cat sat.", "instruction": "Given the following passage, answer the question:"}),
    ("Information: the cat sat. What sat? choices: cat, dog",
     "generation", {"prompt": "Information: the cat sat. What sat? choices: cat, dog"}),
    ("Text: The Short Answer: no. A long story follows.\nOptions: yes, no\nAnswer: no",
     "classification", {"text": "The Short Answer: no. A long story follows.", "options": ["yes", "no"], "answer": "no"}),
    ("Question: Who wrote Hamlet? Context: Hamlet is a play by Shakespeare. Answer: Shakespeare",
     "qa", {"question": "Who wrote Hamlet?", "context": "Hamlet is a play by Shakespeare.", "answer": "Shakespeare"}),
]


@pytest.mark.parametrize("text, task, fields", PROSE, ids=[p[0][:30] for p in PROSE])
def test_marker_words_in_prose_do_not_break_an_instruction(text, task, fields):
    parsed = parse_instruction(text)
    assert (parsed.task, parsed.fields) == (task, fields)
    assert parse_instruction(render(parsed)) == parsed


def test_structured_texts_with_a_real_mistake_keep_their_located_error():
    with pytest.raises(InstructionError, match=r"^character 8: 'Options:' \(field 'options'\) does not belong in a qa"):
        parse_instruction("Text: a\nOptions: x, y\nQuestion: why?")
    with pytest.raises(InstructionError, match=r"^character 12: field 'question' given twice"):
        parse_instruction("Question: a\nQuestion: b\nContext: c")


def test_rendered_instructions_store_one_per_block(tmp_path):
    instructions = [
        Instruction("classification", "en", {"instruction": f"Classify review {i}", "text": f"It was fine {i}.",
                                             "options": ["good", "bad"], "answer": "good"})
        for i in range(3)
    ] + [Instruction("qa", "en", {"instruction": "Answer briefly.", "question": "Who?", "context": "Ada."}),
         Instruction("qa", "zh", {"question": "谁？", "context": "曹雪芹。"})]
    path = tmp_path / "rendered.txt"
    path.write_text("\n\n".join(render(x) for x in instructions) + "\n", encoding="utf-8")
    assert [parse_instruction(r.text) for r in read_instruction_file(path)] == instructions


SYNTHETIC_RECORDS = {
    "squad": {"id": "q1", "title": "T", "context": "Ada wrote it. Question: none here.", "question": "Who wrote it?",
              "answers": [{"text": "Ada", "answer_start": 0}], "is_impossible": False},
    "cmrc2018": {"id": "q2", "title": "T", "context": "曹雪芹写了红楼梦。", "question": "谁写了红楼梦？",
                 "answers": [{"text": "曹雪芹", "answer_start": 0}], "is_impossible": False},
    "sst2": {"sentence": "the short answer: it is dull .", "label": "negative"},
    "financial_phrasebank": {"sentence": "Profit rose. Answer: unclear.", "label": "positive"},
    "agnews": {"title": "Markets", "description": "Stocks fell. Question: why?", "label": "Business"},
    "chnsenticorp": {"review": "房间很好。答案：满意", "label": "正面"},
}


@pytest.mark.parametrize("name", sorted(SYNTHETIC_RECORDS))
def test_every_builtin_template_round_trips_through_render(name):
    record = {**SYNTHETIC_RECORDS[name], "source": "synthetic", "record": 1}
    for variant in range(len(get_template(name).variants)):
        instruction = get_template(name).apply(record, seed=0, index=0, variant=variant)
        assert parse_instruction(render(instruction)) == instruction


@pytest.mark.slow
def test_every_builtin_template_round_trips_on_real_rows(shared_data):
    d = shared_data
    sets = {
        "squad": raw.read_squad(d / "squad_v1.1_dev/dev-v1.1.part1.json")[:300],
        "cmrc2018": [r for r in raw.read_squad(d / "cmrc2018/cmrc2018_trial.json") if r["question"]][:300],
        "sst2": raw.read_sst2(d / "sst2_glue/glue_dev.tsv"),
        "financial_phrasebank": raw.read_financial_phrasebank(d / "financial_phrasebank/Sentences_AllAgree.txt"),
        "agnews": raw.read_agnews(d / "agnews/test.csv")[:1000],
        "chnsenticorp": [r for r in raw.read_chnsenticorp(d / "chnsenticorp_htl/ChnSentiCorp_htl_all.csv") if r["review"]][:1000],
    }
    for name, records in sets.items():
        template = get_template(name)
        for index, record in enumerate(records):
            instruction = template.apply(record, seed=0, index=index)
            assert parse_instruction(render(instruction)) == instruction, (name, record["id"])


class FakeLearned:
    """Stands in for instructrec.models.instruction_parser: reads everything as a qa pair, or
    nothing, or has no weights."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour, self.calls = behaviour, []

    def learned_parse(self, texts):
        self.calls.append(list(texts))
        if self.behaviour == "no weights":
            raise InputError("no learned parser weights", hint="run `instructrec train-parser`")
        if self.behaviour == "nothing":
            return [(None, 0.1) for _ in texts]
        return [(Instruction("qa", "en", {"question": "Who wrote Hamlet?", "context": t}), 0.93) for t in texts]


@pytest.fixture
def learned(monkeypatch):
    def install(behaviour):
        fake = FakeLearned(behaviour)
        monkeypatch.setitem(sys.modules, "instructrec.models.instruction_parser", fake)
        return fake
    return install


MARKED = "Question: Who?\nContext: Ada."
UNMARKED = "Who wrote Hamlet, given that Hamlet is a play by Shakespeare?"


def test_auto_keeps_the_rules_where_they_find_a_structure(learned):
    fake = learned("reads")
    reading_ = read_instruction(MARKED)
    assert (reading_.method, reading_.confidence, reading_.note) == ("rules", 1.0, None)
    assert fake.calls == []  # the learned parser is never loaded for a structured text
    assert parse_instruction(MARKED, mode="auto") == parse_instruction(MARKED)


def test_auto_asks_the_learned_parser_where_the_rules_find_no_markers_or_fail(learned):
    fake = learned("reads")
    for text in (UNMARKED, "Question: no context here"):
        reading_ = read_instruction(text, mode="auto")
        assert (reading_.method, reading_.confidence, reading_.instruction.task) == ("learned", 0.93, "qa")
    assert fake.calls == [[UNMARKED], ["Question: no context here"]]
    assert read_instruction(MARKED, mode="learned").method == "learned"


def test_auto_falls_back_to_the_rules_and_says_why(learned, caplog):
    learned("no weights")
    with caplog.at_level("WARNING"):
        first, second = read_instruction(UNMARKED), read_instruction(UNMARKED + " ")
    assert first.method == "rules" and first.instruction == Instruction("generation", "en", {"prompt": UNMARKED})
    assert "run `instructrec train-parser`" in first.note and first.note == second.note
    assert caplog.text.count("the learned parser is not available") <= 1
    with pytest.raises(InputError, match="no learned parser weights"):
        read_instruction(UNMARKED, mode="learned")
    learned("nothing")
    assert read_instruction(UNMARKED).note == "the learned parser found no valid instruction; the rules read this text"
    with pytest.raises(InstructionError, match="qa instruction has no context"):
        read_instruction("Question: no context here")  # the rules' own error when neither reads it
    with pytest.raises(InstructionError, match="found no valid instruction"):
        read_instruction(UNMARKED, mode="learned")


def test_unknown_mode_is_refused():
    with pytest.raises(InstructionError, match="unknown parse mode 'fuzzy'"):
        read_instruction("x", mode="fuzzy")
