"""CMRC 2018 scoring: the official script's steps, checked by hand on cases where they matter."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from instructrec.qa import cmrc_metrics as cmrc


def test_han_characters_and_punctuation_are_segments_and_other_runs_words():
    assert cmrc.mixed_segmentation(" NBA全明星赛，2019年 all-star game ") == [
        "nba", "全", "明", "星", "赛", "，", "2019", "年", "all", "-", "star", "game"]  # "-" is CMRC punctuation
    assert cmrc.mixed_segmentation("《红楼梦》", remove_punctuation=True) == ["红", "楼", "梦"]


def test_f1_counts_the_longest_contiguous_run_not_a_subsequence():
    # 甲丙乙丁 shares the subsequence 甲乙丁 (3) with 甲乙丙丁 but no run longer than one character.
    assert cmrc.longest_common_run(list("甲乙丙丁"), list("甲丙乙丁")) == 1
    assert cmrc.f1_score(["甲乙丙丁"], "甲丙乙丁") == pytest.approx(0.25)
    # NBA全明星赛 (5 segments) against 全明星赛 (4): precision 1, recall 0.8.
    assert cmrc.f1_score(["NBA全明星赛"], "全明星赛") == pytest.approx(2 * 0.8 / 1.8)
    assert cmrc.f1_score(["北京", "NBA全明星赛"], "全明星赛") == pytest.approx(2 * 0.8 / 1.8)  # the best reference
    assert cmrc.f1_score(["北京"], "上海") == 0.0


def test_exact_match_ignores_cmrc_punctuation_and_case_only():
    assert cmrc.exact_match(["《红楼梦》"], "红楼梦") == 1
    assert cmrc.exact_match(["NBA"], "nba") == 1
    assert cmrc.exact_match(["红楼梦"], "红楼梦。") == 1
    assert cmrc.exact_match(["红楼梦"], "红楼梦 ") == 1  # stripped
    assert cmrc.exact_match(["红楼 梦"], "红楼梦") == 0  # an inner space is kept
    assert cmrc.exact_match(["红楼梦"], "红楼") == 0


def test_evaluate_scores_unanswered_questions_zero_and_counts_them(capsys):
    data = [{"paragraphs": [{"qas": [
        {"id": "q1 ", "answers": [{"text": "红楼梦"}]},
        {"id": "q2", "answers": [{"text": "甲乙丙丁"}]},
        {"id": "q3", "answers": [{"text": "北京"}]},
    ]}]}]
    result = cmrc.evaluate(data, {"q1": "《红楼梦》", "q2": "甲丙乙丁"})
    assert result["total"] == 3 and result["skipped"] == 1
    assert result["exact_match"] == pytest.approx(100 / 3)
    assert result["f1"] == pytest.approx(100 * (1 + 0.25) / 3)
    assert result["average"] == pytest.approx((result["f1"] + result["exact_match"]) / 2)
    assert "Unanswered question: q3" in capsys.readouterr().err


answers = st.text(alphabet=st.sampled_from(list("红楼梦北京甲乙abc 12《》，。-")), min_size=1, max_size=12)


@given(answers, answers)
def test_properties(reference, prediction):
    assert cmrc.exact_match([reference], reference) == 1
    score = cmrc.f1_score([reference], prediction)
    assert 0.0 <= score <= 1.0
    segments = cmrc.mixed_segmentation(reference, remove_punctuation=True)
    if segments:
        assert cmrc.f1_score([reference], reference) == pytest.approx(1.0)
    assert cmrc.longest_common_run(list(reference), list(prediction)) == cmrc.longest_common_run(list(prediction), list(reference))
