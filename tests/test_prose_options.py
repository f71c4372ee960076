"""Structure written in prose (instructrec.instructions.prose): options and passage questions,
read exactly, or not at all."""

import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from instructrec.instructions import Instruction, parse_instruction, read_instruction
from instructrec.instructions.parser import PROSE_NOTE
from instructrec.instructions.prose import read_prose

ISSUE_CLASSIFICATION = {
    "Is this review positive or negative? The battery died in a day.": Instruction(
        "classification", "en",
        {"instruction": "Is this review positive or negative?", "text": "The battery died in a day.",
         "options": ["positive", "negative"]},
    ),
    "Which planet is the largest? (A) Mars (B) Jupiter (C) Venus": Instruction(
        "classification", "en", {"text": "Which planet is the largest?", "options": ["Mars", "Jupiter", "Venus"]},
    ),
    "这条评论是正面还是负面？电池一天就没电了。": Instruction(
        "classification", "zh",
        {"instruction": "这条评论是正面还是负面？", "text": "电池一天就没电了。", "options": ["正面", "负面"]},
    ),
}


@pytest.mark.parametrize("text", list(ISSUE_CLASSIFICATION))
def test_the_issues_prose_options_are_read_exactly(text):
    assert read_prose(text) == ISSUE_CLASSIFICATION[text]


@pytest.mark.parametrize("text, options, rest", [
    ("Here is a news story. Oil prices rose.\nIs it about world politics, sports, business, or science and technology?",
     ["world politics", "sports", "business", "science and technology"], "Here is a news story. Oil prices rose."),
    ("Oil prices rose.\n\nWhich of these describes it best, positive, negative or neutral?",
     ["positive", "negative", "neutral"], "Oil prices rose."),
    ('Here is a review. "Great fun." Would you say it is "good" or "not good"?', ["good", "not good"],
     'Here is a review. "Great fun."'),
    ("Classify the following sentence as positive or negative. I loved it.", ["positive", "negative"], "I loved it."),
    ("Pick one.\nA. red\nB. dark green\nThe sky at noon.", ["red", "dark green"], "Pick one.\nThe sky at noon."),
    # the options as a sentence of their own, after the question
    ("What is the sentiment? Positive or negative? I loved it.", ["Positive", "negative"], "I loved it."),
    ("Oil prices rose. \n\nWhich section would it appear in? World News, Sports, Business, or Science and Technology?",
     ["World News", "Sports", "Business", "Science and Technology"], "Oil prices rose."),
])
def test_choice_sentences_and_enumerations(text, options, rest):
    read = read_prose(text)
    assert (read.task, read.fields["options"], read.fields["text"]) == ("classification", options, rest)


@pytest.mark.parametrize("text", [
    "Do you want tea or coffee?",                      # options, but nothing else to classify
    "Write a poem or a song about cats.",              # not a question or classification request
    "Who wrote Hamlet, given that Hamlet is a play by Shakespeare?",
    "Plan A) go home",                                 # one label is no list
    "Compare (B) and (C).",                            # labels that do not start at A
    "Summarize these points:\n1. Prices rose.\n2. Wages fell.",   # a numbered list is points, not choices
    "Do two things: (1) read the text (2) summarize it.",
    "Is this good or good? Fine.",                     # an option twice
    "Translate this into German: The cat sleeps on the sofa.",
    "What time is it? Now or later.",                  # a list sentence that asks nothing
    "It rained.\n\nFrom the above passage, a reasonable question with \"rain\" as the answer would be:",
    "It rained.\n\nAccording to the text, write a question about the weather.",
    "",
])
def test_texts_without_prose_options_are_left_alone(text):
    assert read_prose(text) is None


WORD = st.sampled_from(["red", "green", "blue", "sports", "world", "money", "tech", "fine", "calm", "loud"])
OPTION = st.lists(WORD, min_size=1, max_size=3, unique=True).map(" ".join)
SENTENCE = st.lists(st.sampled_from(["the", "cat", "sat", "on", "a", "mat", "today"]), min_size=1, max_size=8).map(
    lambda words: " ".join(words).capitalize() + "."
)
# Frames whose word before the first option frames the question (or the options are one word each).
FRAMES = [
    "Is it about {options}? {text}",
    "{text}\nIs the topic of this text one of {options}?",
    "Classify the following sentence as {options}. {text}",
    "{text}\n\nWhich of these describes it best, {options}?",
    "Decide whether the text is {options}.\n\n{text}",
]


def _joined(options, style):
    if style == "quoted":
        return ", ".join(f'"{o}"' for o in options[:-1]) + f' or "{options[-1]}"'
    if style == "oxford" and len(options) > 2:
        return ", ".join(options[:-1]) + ", or " + options[-1]
    return ", ".join(options[:-1]) + " or " + options[-1]


@given(
    options=st.lists(OPTION, min_size=2, max_size=5, unique=True),
    text=SENTENCE,
    frame=st.sampled_from(FRAMES),
    style=st.sampled_from(["plain", "oxford", "quoted"]),
)
def test_choice_sentences_round_trip(options, text, frame, style):
    # The first option is as long as the longest other one at most (the rule's reach without quotes).
    if style != "quoted" and len(options[0].split()) > max(len(o.split()) for o in options[1:]):
        options = options[1:] + options[:1]
        if len(options[0].split()) > max(len(o.split()) for o in options[1:]):
            return
    read = read_prose(frame.format(options=_joined(options, style), text=text))
    assert read is not None and read.fields["options"] == options and read.fields["text"] == text


@given(
    options=st.lists(OPTION, min_size=2, max_size=6, unique=True),
    question=SENTENCE,
    form=st.sampled_from(["paren", "paren-lower", "lines", "lines-dot", "lines-lower"]),
)
def test_enumerations_round_trip(options, question, form):
    labels = "abcdef" if form.endswith("lower") else "ABCDEF"
    if form.startswith("paren"):
        text = question + " " + " ".join(f"({label}) {option}" for label, option in zip(labels, options))
    else:
        end = "." if form == "lines-dot" else ")"
        text = question + "\n" + "\n".join(f"{label}{end} {option}" for label, option in zip(labels, options))
    read = read_prose(text)
    assert read is not None and read.fields["options"] == options and read.fields["text"] == question


class NoLearnedParser:
    def learned_parse(self, texts):
        raise AssertionError("the learned parser was asked")


def test_auto_reads_prose_options_before_the_learned_parser_and_rules_mode_is_unchanged(monkeypatch):
    monkeypatch.setitem(sys.modules, "instructrec.models.instruction_parser", NoLearnedParser())
    for text, expected in ISSUE_CLASSIFICATION.items():
        reading = read_instruction(text, mode="auto")
        assert (reading.instruction, reading.method, reading.note) == (expected, "rules", PROSE_NOTE)
        # `rules` mode keeps reading a marker-free text as a generation prompt, as before.
        assert parse_instruction(text).task == "generation"
    # Markers decide before prose: this is a marked classification, read by the marker rules.
    marked = "Is this review positive or negative?\nText: Fine.\nOptions: positive, negative"
    assert read_instruction(marked, mode="auto").instruction == parse_instruction(marked)


def test_a_passage_then_a_question_that_refers_back_to_it_is_qa():
    text = "The Yassa was created by Genghis Khan.\n\nWith reference to the above context, Who created the Yassa?"
    assert read_prose(text) == Instruction("qa", "en", {
        "context": "The Yassa was created by Genghis Khan.", "question": "Who created the Yassa?",
        "instruction": "With reference to the above context,"})


REFERENCES = ["With reference to the above context,", "Referring to the passage above,", "According to the text,",
              "Based on the paragraph above:", "Given the information,"]


@given(
    context=st.lists(SENTENCE, min_size=1, max_size=4).map(" ".join),
    reference=st.sampled_from(REFERENCES),
    question=st.lists(WORD, min_size=1, max_size=6).map(lambda words: "Why " + " ".join(words) + "?"),
)
def test_passage_questions_round_trip(context, reference, question):
    read = read_prose(f"{context}\n\n{reference} {question}")
    assert read is not None and (read.task, read.fields["context"], read.fields["question"]) == ("qa", context, question)


@given(
    options=st.lists(OPTION, min_size=2, max_size=5, unique=True),
    text=SENTENCE,
    question=st.sampled_from(["What is the topic?", "Which label fits it best?", "How would you describe it?"]),
    style=st.sampled_from(["plain", "oxford", "quoted"]),
)
def test_lists_after_a_question_round_trip(options, text, question, style):
    read = read_prose(f"{text}\n{question} {_joined(options, style)}?")
    assert read is not None and read.fields["options"] == options and read.fields["text"] == text
