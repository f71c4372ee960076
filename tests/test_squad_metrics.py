"""Our SQuAD scoring against the official evaluation scripts, on real data.

The official scripts are run from the shared data folder (never copied into the package) with
``runpy``, exactly as ``python evaluate-v*.py DATA PRED`` runs them, and their printed JSON must
equal what ``instructrec evaluate-squad`` prints: same keys, same floats.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import runpy
import sys

import pytest

from instructrec.commands.evaluate_squad import main as evaluate_squad_main
from instructrec.qa.squad_metrics import evaluate, evaluate_v1, evaluate_v2, f1_v1, f1_v2, normalize_answer


def run_official(script, argv: list[str]) -> dict:
    out, saved = io.StringIO(), sys.argv
    sys.argv = [str(script), *map(str, argv)]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = saved
    return json.loads(out.getvalue())


def run_ours(argv: list[str]) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert evaluate_squad_main([str(a) for a in argv]) == 0
    return json.loads(out.getvalue())


def perturb(answer: str, context: str, rng: random.Random) -> str:
    """A prediction near or far from a reference, covering what normalisation has to handle."""
    words = answer.split()
    kind = rng.randrange(9)
    if kind == 0:
        return "The " + answer.upper() + "."
    if kind == 1:
        return " ".join(words[:-1]) if len(words) > 1 else answer + " extra"
    if kind == 2:
        return answer + " " + " ".join(context.split()[:3])
    if kind == 3:
        return ""
    if kind == 4:
        start = rng.randrange(len(context))
        return context[start : start + rng.randrange(1, 40)]
    if kind == 5:
        return "  ".join(words) + " ,;!"
    if kind == 6:
        return "a an the"
    if kind == 7:
        return answer.replace(" ", "\u00a0") + " café"
    return answer


def synthetic_predictions(data: list, seed: int, *, drop: float = 0.0) -> dict[str, str]:
    rng = random.Random(seed)
    predictions = {}
    for article in data:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                if rng.random() < drop:
                    continue
                answers = [a["text"] for a in qa["answers"]]
                if not answers:
                    predictions[qa["id"]] = "" if rng.random() < 0.5 else perturb("", paragraph["context"], rng)
                elif rng.random() < 0.4:
                    predictions[qa["id"]] = rng.choice(answers)
                else:
                    predictions[qa["id"]] = perturb(rng.choice(answers), paragraph["context"], rng)
    predictions["not-a-question-id"] = "ignored"
    return predictions


def write(path, obj):
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture(scope="module")
def official(shared_data):
    folder = shared_data / "squad_eval"
    if not (folder / "evaluate-v1.1.py").is_file():
        pytest.skip("official SQuAD scripts not in shared data")
    return folder


def test_v1_equals_official_on_real_data(shared_data, official, tmp_path):
    data_file = shared_data / "squad_v1.1_dev" / "dev-v1.1.part1.json"
    data = json.loads(data_file.read_text())["data"]
    for seed, drop in ((0, 0.0), (1, 0.05)):
        pred_file = write(tmp_path / f"pred{seed}.json", synthetic_predictions(data, seed, drop=drop))
        expected = run_official(official / "evaluate-v1.1.py", [data_file, pred_file])
        assert run_ours([data_file, pred_file]) == expected
        assert 0 < expected["exact_match"] < 100


def test_v1_perfect_predictions_score_100(shared_data):
    data = json.loads((shared_data / "squad_v1.1_dev" / "dev-v1.1.part1.json").read_text())["data"]
    golds = {qa["id"]: qa["answers"][0]["text"] for a in data for p in a["paragraphs"] for qa in p["qas"]}
    assert evaluate(data, golds) == {"exact_match": 100.0, "f1": 100.0}


def test_v2_equals_official_on_real_data(shared_data, official, tmp_path):
    data_file = shared_data / "squad_v2.0_dev" / "dev-v2.0.json"
    data = json.loads(data_file.read_text())["data"]
    predictions = synthetic_predictions(data, seed=2)
    pred_file = write(tmp_path / "pred.json", predictions)
    rng = random.Random(3)
    # Rounded probabilities make ties, whose order the threshold search must also follow.
    na_probs = {qid: round(rng.random(), 1) for qid in predictions}
    na_file = write(tmp_path / "na.json", na_probs)
    script = official / "evaluate-v2.0.py"
    for extra in ([], ["--na-prob-file", na_file], ["--na-prob-file", na_file, "--na-prob-thresh", "0.5"]):
        expected = run_official(script, [data_file, pred_file, *extra])
        ours = run_ours([data_file, pred_file, "--version", "2.0", *extra])
        assert ours == expected
        assert list(ours) == list(expected)  # same keys in the same order
    assert "best_f1_thresh" in expected and expected["NoAns_total"] == 5945


def test_version_follows_the_data_file(shared_data, tmp_path):
    data_file = shared_data / "squad_v2.0_dev" / "dev-v2.0.json"
    data = json.loads(data_file.read_text())["data"]
    pred_file = write(tmp_path / "pred.json", synthetic_predictions(data, seed=4))
    assert "HasAns_exact" in run_ours([data_file, pred_file])


def test_v1_and_v2_differ_where_the_official_scripts_do():
    assert f1_v1("", "") == 0 and f1_v2("", "") == 1
    assert f1_v1("the", "a") == 0 and f1_v2("the", "a") == 1
    # v2.0 drops references that normalise to nothing; v1.1 keeps them.
    assert evaluate_v1([("q", ["the"])], {"q": ""}) == {"exact_match": 100.0, "f1": 0.0}
    assert evaluate_v2([("q", ["the"])], {"q": ""})["f1"] == 100.0


def test_normalisation_and_partial_f1():
    assert normalize_answer("  The  Eiffel-Tower, in Paris!") == "eiffeltower in paris"
    assert f1_v1("Eiffel Tower", "the Eiffel Tower in Paris") == pytest.approx(2 * 1.0 * 0.5 / 1.5)


def test_v2_needs_every_prediction_and_no_answer_score():
    with pytest.raises(ValueError, match="no prediction"):
        evaluate_v2([("a", ["x"]), ("b", [])], {"a": "x"})
    with pytest.raises(ValueError, match="no-answer probability"):
        evaluate_v2([("a", ["x"])], {"a": "x"}, na_probs={})


def test_command_reports_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert evaluate_squad_main([str(bad), str(bad)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    data = write(tmp_path / "data.json", {"version": "1.1", "data": []})
    preds = write(tmp_path / "p.json", {})
    assert evaluate_squad_main([str(data), str(preds)]) == 2  # nothing to score
