"""parse_instruction: realistic inputs with exact results, every error, and two properties."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from instructrec.instructions import Instruction, InstructionError, parse_instruction
from instructrec.instructions.markers import MARKER_WORDS, TRANSLATE, find_markers, guess_language, is_mostly_chinese, unescape


def _with(fields, **optional):
    return fields | {k: v for k, v in optional.items() if v}


def qa(language, question, context, answer=None):
    fields = {"question": question, "context": context}
    return Instruction("qa", language, _with(fields, answer=answer))


def cls(language, text, options, answer=None, instruction=None):
    fields = _with({"text": text, "options": options}, answer=answer, instruction=instruction)
    return Instruction("classification", language, fields)


def tr(language, source, target, text, answer=None):
    fields = {"source_language": source, "target_language": target, "text": text}
    return Instruction("translation", language, _with(fields, answer=answer))


def gen(language, prompt, answer=None):
    return Instruction("generation", language, _with({"prompt": prompt}, answer=answer))


HAMLET = "Hamlet is a play by Shakespeare."
RED_CHAMBER = "《红楼梦》是中国古典四大名著之一，作者是曹雪芹。"
POS_NEG = ["positive", "negative"]
CLASSIFY = "Classify the sentiment of the following text"


@pytest.mark.parametrize(
    "text, expected",
    [
        # qa
        (
            f"Question: Who wrote Hamlet? Context: {HAMLET} Answer: Shakespeare",
            qa("en", "Who wrote Hamlet?", HAMLET, "Shakespeare"),
        ),
        (
            "Question: Who wrote Hamlet?\nContext: A tragedy\nwritten around 1600.\n\n"
            "Answer: Shakespeare\n",
            qa("en", "Who wrote Hamlet?", "A tragedy\nwritten around 1600.", "Shakespeare"),
        ),
        (
            f"问题：《红楼梦》的作者是谁？\n上下文：{RED_CHAMBER}\n答案：曹雪芹",
            qa("zh", "《红楼梦》的作者是谁？", RED_CHAMBER, "曹雪芹"),
        ),
        ("问题：谁？文章：曹雪芹写了红楼梦。答：曹雪芹", qa("zh", "谁？", "曹雪芹写了红楼梦。", "曹雪芹")),
        ("问：请问作者是谁？\n背景：作者是曹雪芹。", qa("zh", "请问作者是谁？", "作者是曹雪芹。")),
        ("Question：Who?\nContext：Me.\nAnswer：Me", qa("en", "Who?", "Me.", "Me")),
        (
            "Passage: Paris is in France.\nQ: Where is Paris?\nA: France",
            qa("en", "Where is Paris?", "Paris is in France.", "France"),
        ),
        ("QUESTION: Why?\ntext: Because.", qa("en", "Why?", "Because.")),
        # An empty answer is no answer: prompts for prediction end that way.
        ("Question: Why?\nContext: Because.\nAnswer:", qa("en", "Why?", "Because.")),
        # Mid-line, a capitalised marker after the end of a sentence opens a field ...
        (
            "Context: The sky. Question: why is it blue?",
            qa("en", "why is it blue?", "The sky."),
        ),
        # ... a lower-case one, or one after a word, is prose.
        (
            "Context: The sky. Here is the question: why is it blue? The Short Answer: air.\nQuestion: Why?",
            qa("en", "Why?", "The sky. Here is the question: why is it blue? The Short Answer: air."),
        ),
        # The passage before a question is its context; with a context marker it is an instruction.
        ("Hamlet is a play by Shakespeare.\nQuestion: Who wrote Hamlet?", qa("en", "Who wrote Hamlet?", "Hamlet is a play by Shakespeare.")),
        (
            "Given the passage, answer the question: Question: Who wrote it?\nContext: Ada wrote it.",
            Instruction("qa", "en", {"question": "Who wrote it?", "context": "Ada wrote it.",
                                     "instruction": "Given the passage, answer the question:"}),
        ),
        (
            "Question: What does Plan-A: mean?\nContext: C:\\Users\\plan.txt",
            qa("en", "What does Plan-A: mean?", "C:\\Users\\plan.txt"),
        ),
        ("Question: What is a\\: b?\nContext: x \\\\: y", qa("en", "What is a: b?", "x \\: y")),
        ("Question: Is Answer\\: a marker?\nContext: no", qa("en", "Is Answer: a marker?", "no")),
        # classification, each option style
        (
            "Text: I loved it.\nOptions: positive, negative\nAnswer: positive",
            cls("en", "I loved it.", POS_NEG, "positive"),
        ),
        ("Sentence: I loved it.\nChoices: positive/negative", cls("en", "I loved it.", POS_NEG)),
        ("Text: fine\nOptions: good / bad / so-so", cls("en", "fine", ["good", "bad", "so-so"])),
        ("Text: fine\nOptions: a/b, c", cls("en", "fine", ["a/b", "c"])),
        (
            "Text: fine\nOptions:\n- good\n* bad\n\n  so, so  \nAnswer: good",
            cls("en", "fine", ["good", "bad", "so, so"], "good"),
        ),
        ("Text: fine\nOptions: only one", cls("en", "fine", ["only one"])),
        ("文本：这家酒店很好。\n选项：正面，负面", cls("zh", "这家酒店很好。", ["正面", "负面"])),
        (
            "句子：这家酒店很好。\n选项：正面、负面、中性\n答案：正面",
            cls("zh", "这家酒店很好。", ["正面", "负面", "中性"], "正面"),
        ),
        (
            f"{CLASSIFY}: I loved it.\nOptions: positive, negative",
            cls("en", "I loved it.", POS_NEG, instruction=CLASSIFY),
        ),
        (
            "Decide whether the review is positive: I loved it.\nOptions: yes, no\nAnswer: yes",
            cls("en", "I loved it.", ["yes", "no"], "yes", "Decide whether the review is positive"),
        ),
        (
            "Is this review positive? Text: I loved it.\nOptions: yes, no",
            cls("en", "I loved it.", ["yes", "no"], instruction="Is this review positive?"),
        ),
        (
            "Pick the sentiment.\n\nText: I loved it.\nOptions: positive, negative",
            cls("en", "I loved it.", POS_NEG, instruction="Pick the sentiment."),
        ),
        (
            "判断下面文本的情感：这家酒店很好。\n选项：正面、负面\n答案：正面",
            cls("zh", "这家酒店很好。", ["正面", "负面"], "正面", "判断下面文本的情感"),
        ),
        (
            "请判断下面句子的情感：今天很开心。\n选项：积极、消极",
            cls("zh", "今天很开心。", ["积极", "消极"], instruction="请判断下面句子的情感"),
        ),
        # translation
        (
            "Translate English to German: Good morning.\nAnswer: Guten Morgen.",
            tr("en", "English", "German", "Good morning.", "Guten Morgen."),
        ),
        (
            "Please translate Simplified Chinese to English: 你好",
            tr("en", "Simplified Chinese", "English", "你好"),
        ),
        (
            "Translate English to German:\nText: Good morning.",
            tr("en", "English", "German", "Good morning."),
        ),
        (
            "将英语翻译成法语：Good morning.\n答案：Bonjour.",
            tr("zh", "英语", "法语", "Good morning.", "Bonjour."),
        ),
        ("请将中文翻译成英语：你好", tr("zh", "中文", "英语", "你好")),
        # generation
        (
            "Instruction: Write a haiku about rain.\nAnswer: Soft rain on the roof",
            gen("en", "Write a haiku about rain.", "Soft rain on the roof"),
        ),
        ("Prompt: Write a haiku.", gen("en", "Write a haiku.")),
        ("指令：写一首关于春天的诗\n答：春眠不觉晓", gen("zh", "写一首关于春天的诗", "春眠不觉晓")),
        (
            "Summarize the following paragraph: Cats sleep a lot.",
            gen("en", "Summarize the following paragraph: Cats sleep a lot."),
        ),
        ("写一首关于春天的诗。", gen("zh", "写一首关于春天的诗。")),
        ("Write a poem about 春天.", gen("en", "Write a poem about 春天.")),
        ("Write a poem.\nAnswer: Roses are red.", gen("en", "Write a poem.", "Roses are red.")),
        ("写一首诗。\n答案：春眠不觉晓", gen("zh", "写一首诗。", "春眠不觉晓")),
        ("Explain Plan-A: what is it?", gen("en", "Explain Plan-A: what is it?")),
    ],
)
def test_parses(text, expected):
    assert parse_instruction(text) == expected


@pytest.mark.parametrize(
    "text, offset, message",
    [
        ("", 0, "instruction text is empty"),
        (" \n\t", 0, "instruction text is empty"),
        (
            "Question: Who?\nContext: x\nQ: Why?",
            26,
            "field 'question' given twice: 'Q:' repeats 'Question:' at character 0",
        ),
        ("Text: a\nOptions: x, y\nChoices: z", 22, "field 'options' given twice"),
        ("Question: Who?", 0, "qa instruction has no context"),
        ("Options: a, b", 0, "classification instruction has no text"),
        ("Review: I loved it.\nOptions: a, b", 20, "classification instruction has no text"),
        ("Question:   \nContext: x", 0, "'Question:' has an empty value"),
        ("Text: x\nOptions:  \nAnswer: a", 8, "'Options:' has an empty value"),
        ("Text: x\nAnswer: y", 0, "markers 'Text:', 'Answer:' form no task"),
        ("Context: x", 0, "form no task"),
        (
            "Question: Who?\nOptions: a, b\nContext: x",
            15,
            "'Options:' (field 'options') does not belong in a qa instruction",
        ),
        ("Translate A to B: x\nQuestion: y", 20, "does not belong in a translation instruction"),
        ("Instruction: x\nText: y", 15, "does not belong in a generation instruction"),
        ("Question: q\nContext: c\nText: t", 23, "qa instruction has both a context and a text"),
        ("Translate A to B: x\nText: y", 20, "translation text given twice"),
        ("Translate A to B:", 0, "translation instruction has no text"),
        ("Answer: x", 0, "generation instruction has no prompt"),
        ("Question: q", 0, "qa instruction has no context: add 'Context:' (or '上下文：'), or the passage before the question"),
        ("Text: t\nOptions: a, b, a", 8, "repeat a value"),
        ("Text: t\nOptions: a,,b", 8, "include an empty option"),
        ("Classify this:\nOptions: a, b", 14, "classification instruction has an empty text"),
    ],
)
def test_errors(text, offset, message):
    with pytest.raises(InstructionError, match=re.escape(message)) as caught:
        parse_instruction(text)
    assert caught.value.offset == offset
    assert f"character {offset}" in str(caught.value)


@pytest.mark.parametrize("text, question, instruction", [
    ("Cats sleep a lot.\n\nQ: Do cats sleep?\n\nReferring to the passage above, the correct answer is",
     "Do cats sleep?", "Referring to the passage above, the correct answer is"),
    ("Answer from the passage.\nQuestion: Do cats sleep?\n\nOne word.\nContext: Cats sleep a lot.",
     "Do cats sleep?", "Answer from the passage.\nOne word."),
    # a second question after the blank line, or no blank line: the value is the question, as before
    ("Cats sleep a lot.\nQ: Do cats sleep?\n\nDo they dream?", "Do cats sleep?\n\nDo they dream?", None),
    ("Cats sleep a lot.\nQ: Do cats sleep? Answer in one word.", "Do cats sleep? Answer in one word.", None),
])
def test_a_paragraph_after_a_finished_question_is_wording(text, question, instruction):
    parsed = parse_instruction(text)
    assert (parsed.task, parsed.fields["question"], parsed.fields["context"]) == ("qa", question, "Cats sleep a lot.")
    assert parsed.fields.get("instruction") == instruction


def test_non_string_is_an_instruction_error():
    with pytest.raises(InstructionError, match="must be a string"):
        parse_instruction(None)


@pytest.mark.parametrize(
    "text, spelled",
    [
        ("问题：谁？答案：曹雪芹", ["问题：", "答案："]),  # after punctuation counts; longest wins
        ("请问：谁", []),  # after a letter it does not
        ("Plan-A: go. the question: why", []),  # lower case mid-line: prose
        ("Plan-A: go. The question: why", []),  # after a word: prose
        ("Plan-A: go. Question: why", ["Question:"]),  # capitalised after a sentence: a field
        ("x\n  question: why\r\tanswer: y", ["question:", "answer:"]),  # line starts: any case
        ("Plan A: x; Q: y", ["Q:"]),
        ("Answer : x", []),  # no space before the colon
        ("答案\\：x Answer\\: y", []),  # escaped colons end no marker
        ("Translate English to Answer: x", ["Translate English to Answer:"]),
        ("1问：x", ["问："]),
        ("ſ: Text: x", ["Text:"]),
    ],
)
def test_marker_boundaries(text, spelled):
    assert [text[m.start : m.end] for m in find_markers(text)] == spelled


def test_translation_languages_split_at_the_first_to():
    (marker,) = find_markers("Translate Old to Middle English to Modern English: x")
    assert (marker.source, marker.target) == ("Old", "Middle English to Modern English")


@pytest.mark.parametrize(
    "text, chinese",
    [
        ("这部电影很好看", True),
        ("2024年1月3日", True),  # digits are neither language: 年月日 are all its letters
        ("好！", True),  # nor is punctuation, full-width or not
        ("电影 is great", False),  # 2 Han of 9 letters
        ("电影很好看 movie", False),  # 5 of 10: not more than half
        ("电影很好看啊 movie", True),  # 6 of 11
        ("ＡＢＣ，。", False),  # full-width Latin letters are not Han
        ("𠀀𠀁x", True),  # extension B ideographs count
        ("", False),
        ("123 !?", False),
    ],
)
def test_mostly_chinese_counts_han_among_letters(text, chinese):
    assert is_mostly_chinese(text) is chinese
    assert guess_language(text) == ("zh" if chinese else "en")


def test_unescape():
    assert unescape(r"a\: b\\: c\\\: d\\\\：e \\ f C:\x") == r"a: b\: c\: d\\：e \\ f C:\x"


# A straightforward forward regex for the marker grammar: slow, but obviously what the docs say.
# The real scanner reads backwards from colons for speed; the two must agree on every text.
_LANG_LAZY = r"[^\s:：\\](?:[^\r\n:：\\]*?[^\s:：\\])??"
_LANG = r"[^\s:：\\](?:[^\r\n:：\\]*[^\s:：\\])?"


def _words(language):
    words = sorted((w for ws in MARKER_WORDS[language].values() for w in ws), key=len, reverse=True)
    return "|".join(map(re.escape, words))


_REFERENCE = re.compile(
    rf"(?<!\S)(?:(?ai:(?:please[ \t]+)?translate)[ \t]+(?P<en_src>{_LANG_LAZY})[ \t]+(?ai:to)"
    rf"[ \t]+(?P<en_tgt>{_LANG})|(?P<en>(?ai:{_words('en')})))[:：]"
    rf"|(?<![^\W\d_])(?:请?将(?P<zh_src>{_LANG_LAZY})翻译成(?P<zh_tgt>{_LANG})"
    rf"|(?P<zh>{_words('zh')}))[:：]"
)
_FIELD = {
    (word.lower(), language): field
    for language, table in MARKER_WORDS.items()
    for field, words in table.items()
    for word in words
}


# An English word marker opens a field at a line's start, or capitalised after a non-alphanumeric.
_LINE_START = re.compile(r"(?:\A|[\r\n])[ \t]*\Z")
_AFTER_CLAUSE = re.compile(r"[^\w\r\n]\s*\Z|_\s*\Z")


def _opens_field(text, start):
    before = text[:start]
    return bool(_LINE_START.search(before)) or (text[start].isupper() and bool(_AFTER_CLAUSE.search(before.rstrip(" \t"))))


def _reference_markers(text):
    found = []
    for m in _REFERENCE.finditer(text):
        if m.group("en") or m.group("zh"):
            lang = "en" if m.group("en") else "zh"
            if lang == "en" and not _opens_field(text, m.start()):
                continue
            field = _FIELD[m.group(lang).lower(), lang]
            found.append((m.start(), m.end(), field, lang, None, None))
        else:
            lang = "en" if m.group("en_src") else "zh"
            languages = m.group(f"{lang}_src"), m.group(f"{lang}_tgt")
            found.append((m.start(), m.end(), TRANSLATE, lang, *languages))
    return found


_PIECES = st.sampled_from(
    ["Answer:", "答案：", "Q:", "a:", " ", "\n", "\\", ":", "：", "问", "问题：", "请", "将", "翻译成",
     " to ", "Translate ", "please ", "English", "英语", "x", "Plan-A:", "TEXT：", "\t", "1"]
)
_TEXTS = st.lists(st.one_of(_PIECES, st.text(max_size=4)), max_size=14).map("".join)


@given(_TEXTS)
def test_scanner_agrees_with_the_reference_grammar(text):
    assert [tuple(m) for m in find_markers(text)] == _reference_markers(text)


@given(st.one_of(st.text(), _TEXTS))
def test_parser_raises_only_instruction_errors(text):
    try:
        result = parse_instruction(text)
    except InstructionError as error:
        assert error.reason
    else:
        assert isinstance(result, Instruction)
