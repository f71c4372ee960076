"""render: exact texts, minimal escaping, and parse_instruction(render(x)) == x for any x."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from instructrec.instructions import Instruction, InstructionError, parse_instruction, render


def cls(text, options, **optional):
    return Instruction("classification", "en", {"text": text, "options": options} | optional)


def tr(language, source, target, text, **optional):
    fields = {"source_language": source, "target_language": target, "text": text} | optional
    return Instruction("translation", language, fields)


def gen(language, prompt):
    return Instruction("generation", language, {"prompt": prompt})


@pytest.mark.parametrize(
    "instruction, text",
    [
        (
            Instruction("qa", "en", {"question": "Who?", "context": "A play.", "answer": "Him"}),
            "Question: Who?\nContext: A play.\nAnswer: Him",
        ),
        (
            Instruction("qa", "zh", {"question": "作者是谁？", "context": "作者是曹雪芹。", "answer": "曹雪芹"}),
            "问题：作者是谁？\n上下文：作者是曹雪芹。\n答案：曹雪芹",
        ),
        (
            cls("I loved it.", ["pos", "neg"], instruction="Classify the sentiment", answer="pos"),
            "Classify the sentiment\nText: I loved it.\nOptions: pos, neg\nAnswer: pos",
        ),
        (
            Instruction("classification", "zh", {"text": "很好", "options": ["正面", "负面"]}),
            "文本：很好\n选项：正面, 负面",
        ),
        # Options go one per line only when ', ' would not read back.
        (cls("t", ["a, b", "c"]), "Text: t\nOptions:\na, b\nc"),
        (cls("t", ["a/b"]), "Text: t\nOptions:\na/b"),
        (cls("t", ["a、b", "c"]), "Text: t\nOptions: a、b, c"),
        (cls("t", ["- x", "y"]), "Text: t\nOptions: - x, y"),
        (cls("t", ["- x, y", "z"]), "Text: t\nOptions:\n- - x, y\nz"),
        (
            tr("en", "English", "German", "Hi", answer="Hallo"),
            "Translate English to German: Hi\nAnswer: Hallo",
        ),
        (tr("zh", "英语", "法语", "Hi"), "将英语翻译成法语：Hi"),
        (gen("en", "Write a poem."), "Instruction: Write a poem."),
        (Instruction("generation", "zh", {"prompt": "写诗", "answer": "春眠"}), "指令：写诗\n答案：春眠"),
        # Escaping only where needed.
        (gen("en", "Say Answer: 42"), "Instruction: Say Answer: 42"),  # after a word: prose, no escape
        (gen("en", "Say it. Answer: 42"), "Instruction: Say it. Answer\\: 42"),
        (gen("en", "Say\nanswer: 42"), "Instruction: Say\nanswer\\: 42"),  # a line start: escaped
        (gen("en", r"Open C:\Users, then a\:b"), r"Instruction: Open C:\Users, then a\\:b"),
        (gen("zh", "请问：答案：x"), "指令：请问：答案\\：x"),
        (gen("zh", "Answer: x"), "指令：Answer: x"),  # not after white space: no marker
        (gen("en", "Plan-A: go"), "Instruction: Plan-A: go"),
    ],
)
def test_renders(instruction, text):
    assert render(instruction) == text
    assert parse_instruction(text) == instruction


@pytest.mark.parametrize(
    "source, target, language",
    [
        ("Old to Middle English", "German", "en"),
        ("English:", "German", "en"),
        ("Eng\nlish", "German", "en"),
        ("Eng\\lish", "German", "en"),
        ("古英语翻译成现代英语", "法语", "zh"),
    ],
)
def test_refuses_languages_that_do_not_read_back(source, target, language):
    fields = {"source_language": source, "target_language": target, "text": "x"}
    with pytest.raises(InstructionError, match="cannot write the languages"):
        render(Instruction("translation", language, fields))


def test_render_needs_an_instruction():
    with pytest.raises(InstructionError, match="render needs an Instruction"):
        render({"task": "qa"})


# Round trip over arbitrary instructions. Values are any unicode text (plus a CJK-only source, so
# Chinese is common), salted with what is hard for the grammar: marker words with either colon,
# escapes and backslash runs, option separators and bullets, line breaks.
_HARD = st.sampled_from(
    ["Answer:", "答案：", "A:", "Q：", "question:", "Options:\n", "Translate A to B:",
     "将英语翻译成法语：", "please translate x to y:", "请问：", "问：", "Plan-A:", ":", "：", "\\",
     "\\:", "\\\\：", "C:\\Users", "\n", "\r\n", "\r", " ", "\t", "\u3000", "- ", "* ", ",", "，",
     "、", "/", " to ", "翻译成", "Text: "]
)
_CJK = st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), max_size=5)
_RAW = st.lists(st.one_of(_HARD, st.text(max_size=5), _CJK), max_size=10).map("".join)
VALUES = _RAW.map(str.strip).filter(bool)
ONE_LINE = _RAW.map(lambda s: re.sub(r"[\r\n]", " ", s).strip()).filter(bool)
OPTIONS = st.lists(ONE_LINE, min_size=1, max_size=5, unique=True)
# Not restricted: render refuses the few language names it cannot write unambiguously, and the
# round trip checks it refuses no others (see _unwritable).
LANGUAGES = st.one_of(st.sampled_from(["English", "German", "英语", "法语", "Old English"]), VALUES)


@st.composite
def instructions(draw):
    task = draw(st.sampled_from(["qa", "classification", "translation", "generation"]))
    if task == "qa":
        fields = {"question": draw(VALUES), "context": draw(VALUES)}
    elif task == "classification":
        fields = {"text": draw(VALUES), "options": draw(OPTIONS)}
        if draw(st.booleans()):
            fields["instruction"] = draw(VALUES)
    elif task == "translation":
        fields = {"source_language": draw(LANGUAGES), "target_language": draw(LANGUAGES)}
        fields["text"] = draw(VALUES)
    else:
        fields = {"prompt": draw(VALUES)}
    if draw(st.booleans()):
        fields["answer"] = draw(VALUES)
    return Instruction(task, draw(st.sampled_from(["en", "zh"])), fields)


def _unwritable(instruction):
    """Why a translation marker cannot carry these languages (a necessary condition)."""
    source, target = instruction.fields["source_language"], instruction.fields["target_language"]
    if any(c in "\r\n:：\\" for c in source + target):
        return "a line break, colon or backslash"
    english_to = re.search(r"[ \t]to[ \t]", source + " ", re.IGNORECASE | re.ASCII)
    if instruction.language == "en" and english_to:
        return "'to' in an English source language"
    if instruction.language == "zh" and "翻译成" in source:
        return "'翻译成' in a Chinese source language"
    return None


@given(instructions())
def test_round_trip(instruction):
    try:
        text = render(instruction)
    except InstructionError:
        assert instruction.task == "translation" and _unwritable(instruction)
        return
    assert parse_instruction(text) == instruction
