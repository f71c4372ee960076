"""Every experiment script, end to end in smoke mode (``run.py --smoke``: the tiny random backbone, a
handful of examples, one short epoch): it must still run and write its results in the format of the
committed results files, one row per configuration and seed, with finite numbers.

The scripts run in this process (their ``main(argv)``), so that the heavy imports are paid once.
"""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.fixture
def run_smoke(tmp_path, monkeypatch, shared_data):
    """``run_smoke(name, *flags)``: ``experiments/NAME/run.py --smoke --out DIR *flags``; DIR.

    The variables the scripts set for themselves are set here first, so they are restored after."""
    monkeypatch.setenv("INSTRUCTREC_DATA", str(shared_data))
    monkeypatch.setenv("INSTRUCTREC_MODELS", str(tmp_path / "models"))
    monkeypatch.chdir(tmp_path)

    def run(name: str, *flags: str) -> Path:
        spec = importlib.util.spec_from_file_location(f"experiment_{name}", EXPERIMENTS / name / "run.py")
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
        out = tmp_path / "out"
        script.main(["--smoke", "--out", str(out), *flags])
        return out

    return run


def read_rows(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames), list(reader)


def assert_like_committed(name: str, out: Path) -> list[dict]:
    """The CSV has the committed results.csv's columns, and the Markdown (where the experiment
    writes one) the committed results.md's table headers; the CSV's rows."""
    columns, rows = read_rows(out / "results.csv")
    assert columns == read_rows(EXPERIMENTS / name / "results.csv")[0]
    if (EXPERIMENTS / name / "results.md").exists():
        assert table_headers(out / "results.md") == table_headers(EXPERIMENTS / name / "results.md")
    return rows


def table_headers(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line for line, rule in zip(lines, lines[1:]) if rule.startswith("|---")]


def assert_finite(rows: list[dict], columns: list[str]) -> None:
    for row in rows:
        for column in columns:
            assert math.isfinite(float(row[column])), (column, row)


@pytest.mark.slow
def test_distill_sst2(run_smoke):
    out = run_smoke("distill_sst2", "--variants", "full", "random init", "--seeds", "0", "1")
    rows = assert_like_committed("distill_sst2", out)
    assert sorted((row["variant"], row["seed"]) for row in rows) == [
        ("full", "0"), ("full", "1"), ("random init", "0"), ("random init", "1")]
    assert_finite(rows, ["student_acc", "teacher_acc", "retention", "speedup", "student_params", "teacher_params"])
    assert all(int(row["student_params"]) < int(row["teacher_params"]) for row in rows)
    table = (out / "results.md").read_text(encoding="utf-8")
    assert "| full | " in table and "| random init | " in table and " ± " in table


@pytest.mark.slow
def test_multitask_financial(run_smoke):
    out = run_smoke("multitask_financial", "--seeds", "0", "1")
    rows = assert_like_committed("multitask_financial", out)
    runs = {("multi-task", "sentiment"), ("multi-task", "topic"), ("single: sentiment", "sentiment"), ("single: topic", "topic")}
    assert sorted((row["model"], row["task"], row["seed"]) for row in rows) == sorted(
        (model, task, seed) for model, task in runs for seed in ("0", "1"))
    assert_finite(rows, ["acc", "macro_f1", "params_total", "steps"])
    assert "| two single-task models | " in (out / "results.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_qa_babi(run_smoke):
    out = run_smoke("qa_babi", "--tasks", "qa1", "qa2")
    rows = assert_like_committed("qa_babi", out)
    assert [row["task"] for row in rows] == ["qa1", "qa2"]
    assert_finite(rows, ["accuracy", "all_supporting_found", "supporting_fact_recall", "reader_all_found", "reader_recall"])
    assert [row["hops"] for row in rows] == ["1", "2"] and all(row["questions"] == "1000" for row in rows)


@pytest.mark.slow
def test_qa_squad(run_smoke):
    out = run_smoke("qa_squad", "--recipes", "run_qa", "warmup")
    rows = assert_like_committed("qa_squad", out)
    assert [row["recipe"] for row in rows] == ["run_qa", "warmup"]
    assert_finite(rows, ["steps", "exact_match", "f1", "official_exact_match", "official_f1"])
    # The official script, scoring the questions asked, agrees with what validation logged.
    assert all(row["f1"] == row["official_f1"] for row in rows)


@pytest.mark.slow
def test_retrieval_squad(run_smoke):
    out = run_smoke("retrieval_squad")
    rows = assert_like_committed("retrieval_squad", out)
    assert len(rows) == 9 and rows[-1]["method"] == "hybrid of all four, tuned on part 1"
    assert_finite(rows, ["recall@1", "recall@5", "recall@20"])
    assert all(float(row["recall@1"]) <= float(row["recall@5"]) <= float(row["recall@20"]) <= 1 for row in rows)


@pytest.mark.slow
def test_instruction_parser(run_smoke):
    out = run_smoke("instruction_parser", "--threads", "1")
    rows = assert_like_committed("instruction_parser", out)
    sets = {row["set"] for row in rows}
    assert {"held-out templates: all", "marker-free: all"} <= sets
    assert sorted((row["set"], row["method"]) for row in rows) == sorted(
        (name, method) for name in sets for method in ("rules", "learned", "auto"))
    assert_finite(rows, ["n", "task_acc", "field_em", "span_f1", "language_acc"])
    assert (out / "failures.md").read_text(encoding="utf-8").startswith("# What still fails")
