"""Vectorised QA post-processing: identical to the reference loop, robust on awkward inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qa_reference import reference_postprocess

from instructrec import backbones
from instructrec.batch import NO_OFFSET
from instructrec.data.qa_features import prepare_qa_features
from instructrec.qa.postprocess import postprocess_qa_predictions, write_prediction_files
from instructrec.qa.squad_metrics import evaluate

# -- identical to the reference ----------------------------------------------------------------------

LOGITS = st.one_of(
    st.integers(-3, 3).map(float),  # many ties
    st.floats(-1e6, 1e6, allow_nan=False, width=32),
    st.sampled_from([math.nan, -math.inf, math.inf, 1e30, -1e-30]),
)


@st.composite
def qa_inputs(draw):
    contexts = draw(st.lists(st.text(alphabet="ab 北京大学。", min_size=0, max_size=12), min_size=1, max_size=3))
    n_features = draw(st.integers(0, 5))
    example_index = [draw(st.integers(0, len(contexts) - 1)) for _ in range(n_features)]
    width = draw(st.integers(1, 12))
    start, end, offsets = [], [], []
    for e in example_index:
        n = len(contexts[e])
        length = draw(st.integers(0, width))  # ragged: logits shorter than others
        start.append(draw(st.lists(LOGITS, min_size=length, max_size=length)))
        end.append(draw(st.lists(LOGITS, min_size=length, max_size=length)))
        pair = st.tuples(st.integers(0, n), st.integers(0, n)).map(sorted).map(tuple)
        token = st.one_of(st.just(NO_OFFSET), st.none(), pair)
        offsets.append(draw(st.lists(token, min_size=0, max_size=width)))  # offsets may run short too
    return start, end, offsets, example_index, contexts


def assert_same(ours, reference):
    assert len(ours) == len(reference)
    for a, b in zip(ours, reference):
        assert a.text == b.text
        assert a.best == b.best
        assert a.null_score == b.null_score
        assert [(c.text, c.start_logit, c.end_logit, c.start_char, c.end_char, c.feature) for c in a.nbest] == [
            (c.text, c.start_logit, c.end_logit, c.start_char, c.end_char, c.feature) for c in b.nbest
        ]
        assert [c.probability for c in a.nbest] == pytest.approx([c.probability for c in b.nbest])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    inputs=qa_inputs(),
    n_best=st.integers(1, 4),
    max_answer_length=st.integers(1, 5),
    version_2=st.booleans(),
    null_threshold=st.sampled_from([0.0, 1.5, -2.0]),
    chunk_size=st.integers(1, 4),
)
def test_vectorised_equals_reference_loop(inputs, n_best, max_answer_length, version_2, null_threshold, chunk_size):
    start, end, offsets, example_index, contexts = inputs
    options = dict(n_best=n_best, max_answer_length=max_answer_length, version_2=version_2, null_threshold=null_threshold)
    ours = postprocess_qa_predictions(start, end, offsets, example_index, contexts, chunk_size=chunk_size, **options)
    assert_same(ours, reference_postprocess(start, end, offsets, example_index, contexts, **options))


def test_equal_on_padded_tensors_with_many_features():
    rng = np.random.default_rng(0)
    contexts = ["word " * 40, "另一个没有空格的中文上下文" * 3]
    n_features, length = 9, 48
    offsets = []
    for f in range(n_features):
        context = contexts[f % 2]
        positions = sorted(rng.integers(0, len(context), size=(length, 2)).tolist())
        offsets.append([NO_OFFSET if i < 6 else tuple(sorted(p)) for i, p in enumerate(positions)])
    start, end = torch.randn(n_features, length), torch.randn(n_features, length)
    index = [f % 2 for f in range(n_features)]
    for version_2 in (False, True):
        ours = postprocess_qa_predictions(start, end, offsets, index, contexts, version_2=version_2, chunk_size=4)
        assert_same(ours, reference_postprocess(start, end, offsets, index, contexts, version_2=version_2))


# -- awkward inputs on real tokenisation -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    return backbones.load_tokenizer("tiny-bert")


def peaked_logits(features, targets: dict[int, tuple[int, int]], noise: float = 0.0, seed: int = 0):
    """Logits with a clear maximum at ``targets[feature] = (start, end)`` and high scores on every
    non-context token, which post-processing must never pick."""
    rng = np.random.default_rng(seed)
    length = max(len(ids) for ids in features["input_ids"])
    start = rng.normal(0, noise, (len(features["input_ids"]), length)) if noise else np.zeros((len(features["input_ids"]), length))
    end = start.copy()
    for f, offsets in enumerate(features["offset_mapping"]):
        for i, pair in enumerate(offsets):
            if tuple(pair) == NO_OFFSET:
                start[f, i] = end[f, i] = 50.0  # question, special tokens: tempting but invalid
        if f in targets:
            s, e = targets[f]
            start[f, s] += 10.0
            end[f, e] += 10.0
    return start, end


def features_for(tokenizer, questions, contexts, answers, **kwargs):
    starts = [c.find(a) if a else None for c, a in zip(contexts, answers)]
    return prepare_qa_features(tokenizer, questions, contexts, starts, answers, **kwargs)


def test_chinese_answer_without_spaces_keeps_every_character(tokenizer):
    context = "北京大学创建于1898年，初名京师大学堂，是中国第一所国立综合性大学。"
    answer = "京师大学堂"
    features = features_for(tokenizer, ["北京大学初名什么？"], [context], [answer])
    targets = {0: (features["start_positions"][0], features["end_positions"][0])}
    start, end = peaked_logits(features, targets)
    (prediction,) = postprocess_qa_predictions(start, end, features["offset_mapping"], features["example_index"], [context])
    assert prediction.text == answer


def test_answer_in_a_later_window_of_a_long_context(tokenizer):
    context = " ".join(f"filler{i}" for i in range(60)) + " The treasure is buried under the old oak tree."
    answer = "under the old oak tree"
    features = features_for(tokenizer, ["Where is the treasure?"], [context], [answer], max_length=96, doc_stride=32)
    assert len(features["input_ids"]) > 2
    targets = {f: (s, e) for f, (s, e) in enumerate(zip(features["start_positions"], features["end_positions"])) if s}
    assert targets, "some window holds the answer"
    start, end = peaked_logits(features, targets, noise=1.0)
    for max_length in (30, 5):  # 5 tokens are too few for the answer: a shorter span, never a crash
        (prediction,) = postprocess_qa_predictions(
            start, end, features["offset_mapping"], features["example_index"], [context], max_answer_length=max_length
        )
        assert prediction.best.text == context[prediction.best.start_char : prediction.best.end_char]
    (prediction,) = postprocess_qa_predictions(start, end, features["offset_mapping"], features["example_index"], [context])
    assert prediction.text == answer
    assert len(prediction.nbest) == 20 and len({c.text for c in prediction.nbest}) == 20
    assert sum(c.probability for c in prediction.nbest) == pytest.approx(1.0)


def test_only_question_and_special_tokens_give_an_empty_answer():
    offsets = [[NO_OFFSET] * 5, [NO_OFFSET, None, (-1, -1)]]
    start = [[9.0] * 5, [1.0, 2.0, 3.0]]
    predictions = postprocess_qa_predictions(start, start, offsets, [0, 1], ["abc", "xyz", "no features"])
    assert [p.text for p in predictions] == ["", "", ""]
    assert all(p.best is None and p.nbest == [] for p in predictions)


def test_null_answer_and_threshold():
    context = "Paris is the capital."
    offsets = [[NO_OFFSET, (0, 5), (6, 8), (9, 12), (13, 20)]]
    start = np.array([[3.0, 2.0, 0.0, 0.0, 0.0]])
    end = np.array([[3.0, 0.0, 2.0, 0.0, 0.0]])  # best span "Paris is" scores 4, null scores 6
    (p,) = postprocess_qa_predictions(start, end, offsets, [0], [context], version_2=True)
    assert (p.text, p.best.text, p.null_score, p.null_odds) == ("", "Paris is", 6.0, 2.0)
    assert p.nbest[0].text == "" and p.nbest[1].text == "Paris is"
    (p,) = postprocess_qa_predictions(start, end, offsets, [0], [context], version_2=True, null_threshold=2.5)
    assert p.text == "Paris is"


def test_min_null_score_over_windows_and_official_files(tmp_path):
    contexts = ["alpha beta", "gamma"]
    offsets = [[NO_OFFSET, (0, 5), (6, 10)], [NO_OFFSET, (6, 10), NO_OFFSET], [NO_OFFSET, (0, 5), NO_OFFSET]]
    start = np.array([[5.0, 1.0, 0.0], [-1.0, 0.5, 0.0], [0.0, 4.0, 0.0]])
    end = np.array([[5.0, 1.0, 0.0], [-1.0, 0.5, 0.0], [0.0, 4.0, 0.0]])
    predictions = postprocess_qa_predictions(start, end, offsets, [0, 0, 1], contexts, version_2=True)
    assert predictions[0].null_score == -2.0 and predictions[0].text == "alpha"
    assert predictions[1].text == "gamma"
    paths = write_prediction_files(tmp_path, ["q0", "q1"], predictions, version_2=True)
    assert json.loads(paths["predictions"].read_text()) == {"q0": "alpha", "q1": "gamma"}
    nbest = json.loads(paths["nbest_predictions"].read_text())
    assert set(nbest["q0"][0]) == {"text", "probability", "start_logit", "end_logit", "offsets"}
    assert [contexts[1][slice(*c["offsets"])] for c in nbest["q1"] if c["text"]] == [c["text"] for c in nbest["q1"] if c["text"]]
    odds = json.loads(paths["null_odds"].read_text())
    assert odds == {"q0": -2.0 - 2.0, "q1": 0.0 - 8.0}
    data = [{"paragraphs": [{"context": "", "qas": [{"id": "q0", "answers": []}, {"id": "q1", "answers": [{"text": "gamma"}]}]}]}]
    scores = evaluate(data, json.loads(paths["predictions"].read_text()), version="2.0", na_probs=odds)
    assert scores["best_exact"] == 100.0 and scores["exact"] == 50.0
