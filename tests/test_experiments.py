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


def load_script(name: str, file: str = "run.py"):
    """``experiments/NAME/FILE`` imported as a module."""
    spec = importlib.util.spec_from_file_location(f"experiment_{name}_{Path(file).stem}", EXPERIMENTS / name / file)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


@pytest.fixture
def run_smoke(tmp_path, monkeypatch, shared_data):
    """``run_smoke(name, *flags)``: ``experiments/NAME/run.py --smoke --out DIR *flags``; DIR.

    The variables the scripts set for themselves are set here first, so they are restored after."""
    monkeypatch.setenv("INSTRUCTREC_DATA", str(shared_data))
    monkeypatch.setenv("INSTRUCTREC_MODELS", str(tmp_path / "models"))
    monkeypatch.chdir(tmp_path)

    def run(name: str, *flags: str) -> Path:
        script = load_script(name)
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


def ablation_specs() -> list[Path]:
    """The experiments that are ``instructrec ablate`` specs (a YAML with ``variants``)."""
    import yaml

    return [path for path in sorted(EXPERIMENTS.glob("*/*.yaml"))
            if isinstance(data := yaml.safe_load(path.read_text(encoding="utf-8")), dict) and "variants" in data]


def test_the_converted_experiments_are_ablation_specs():
    names = {f"{path.parent.name}/{path.name}" for path in ablation_specs()}
    assert {"distill_sst2/ablation.yaml", "distill_sst2/students_20k.yaml", "distill_sst2/default_layer_map.yaml",
            "multitask_financial/ablation.yaml"} <= names
    assert not (EXPERIMENTS / "distill_sst2" / "run.py").exists() and not (EXPERIMENTS / "multitask_financial" / "run.py").exists()


@pytest.mark.parametrize("path", ablation_specs(), ids=lambda path: f"{path.parent.name}/{path.name}")
def test_every_ablation_spec_makes_fit_commands_that_parse_with_its_overrides(path, tmp_path, monkeypatch, capsys, shared_data):
    """Each variant's first run, parsed by the same LightningCLI as ``instructrec fit`` (``--print_config``:
    nothing trained): every key exists, every value is accepted, and each override lands in the config."""
    import yaml

    from instructrec.cli import run_lightning
    from instructrec.studies.ablation import Ablation, AblationSpec

    monkeypatch.setenv("INSTRUCTREC_DATA", str(shared_data))
    monkeypatch.chdir(EXPERIMENTS.parent)
    spec = AblationSpec.read(path)
    runs = Ablation(spec, out=tmp_path).run_specs()
    assert len(runs) == len(spec.variants) * len(spec.seeds)
    for variant, seed, run in runs[: len(spec.variants)]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as stopped:
            run_lightning([*run.arguments(), "--print_config"])
        assert stopped.value.code in (0, None), (variant, capsys.readouterr().err[-2000:])
        config = yaml.safe_load(capsys.readouterr().out)
        assert config["seed_everything"] == seed
        for key, value in run.overrides.items():
            node = config
            for part in key.split("."):
                node = node[part]
            assert node == value, (variant, key)


def test_multitask_report_scores_each_system_as_the_mean_over_both_tasks_per_seed():
    report = load_script("multitask_financial", "report.py")
    row = lambda variant, seed, s_acc="", t_acc="", s_f1="", t_f1="": {  # noqa: E731
        "variant": variant, "seed": str(seed), "test/sentiment/acc": s_acc, "test/topic/acc": t_acc,
        "test/sentiment/f1": s_f1, "test/topic/f1": t_f1, "seconds": "1.0"}
    rows = [row("multi-task", 0, "0.9", "0.8", "0.7", "0.6"), row("multi-task", 1, "0.92", "0.84", "0.72", "0.64"),
            row("single: sentiment", 0, s_acc="0.9", s_f1="0.8"), row("single: topic", 0, t_acc="0.7", t_f1="0.6"),
            row("single: sentiment", 1, s_acc="0.95", s_f1="0.85")]  # seed 1 of the single-task system is incomplete
    assert report.per_system(rows).splitlines()[2:] == [
        "| multi-task (one encoder) | 86.5 ± 2.1 | 66.5 ± 2.1 | 2 |",  # per seed (90+80)/2 = 85, (92+84)/2 = 88
        "| two single-task models | 80.0 | 70.0 | 1 |",
    ]


def test_fpb_sizes_report_pairs_alone_and_beside_by_seed(tmp_path):
    report = load_script("multitask_fpb_sizes", "report.py")
    row = lambda variant, seed, acc, f1: {"variant": variant, "seed": str(seed), "test/sentiment/acc": acc,  # noqa: E731
                                          "test/sentiment/f1": f1, "seconds": "1.0"}
    rows = [row("alone 500", 0, "0.80", "0.70"), row("alone 500", 1, "0.82", "0.74"),
            row("beside SST-2 500", 0, "0.83", "0.71"), row("beside SST-2 500", 1, "0.86", "0.74"),
            row("alone 250", 0, "0.60", "0.50")]  # no beside run yet: no gain
    lines = report.curve_table(rows).splitlines()
    assert lines[2] == "| 250 | 60.0 | – | – | – | 50.0 | – | – | – | 0 |"
    # gains per seed: accuracy 3 and 4 points, macro-F1 1 and 0
    assert lines[3].startswith("| 500 | 81.0 ± 1.4 | 84.5 ± 2.1 | 3.5 ± 0.7 | ")
    assert "| 72.0 ± 2.8 | 72.5 ± 2.1 | 0.5 ± 0.7 | " in lines[3] and lines[3].endswith(" | 2 |")
    assert report.goal_line(rows) == ("Goal: beside SST-2 >= +2 accuracy points at 500 sentences: +3.5 over 2 "
                                      "paired seeds, met.")
    assert report.plot(rows, tmp_path / "curve.png").stat().st_size > 1000


@pytest.mark.slow
def test_qa_babi(run_smoke):
    out = run_smoke("qa_babi", "--tasks", "qa1", "qa2")
    rows = assert_like_committed("qa_babi", out)
    assert [row["task"] for row in rows] == ["qa1", "qa2"]
    assert_finite(rows, ["accuracy", "all_supporting_found", "supporting_fact_recall", "reader_all_found", "reader_recall"])
    assert [row["hops"] for row in rows] == ["1", "2"] and all(row["questions"] == "1000" for row in rows)


@pytest.mark.slow
def test_qa_babi_joint(run_smoke):
    out = run_smoke("qa_babi_joint")
    rows = assert_like_committed("qa_babi_joint", out)
    assert [int(row["task"]) for row in rows] == list(range(1, 21)) and all(row["questions"] == "1000" for row in rows)
    assert_finite(rows, ["accuracy", "error", "memn2n_pe_ls_rn_joint", "memn2n_pe_ls_rn", "memnn_strong"])


def test_qa_babi_joint_scores_every_question_of_a_task(shared_data):
    script = load_script("qa_babi_joint")
    from instructrec.data.raw import read_babi_qa

    files = script.test_files(shared_data / "babi_en_1k")
    assert [f.name.split("_")[0] for f in files] == [f"qa{n}" for n in range(1, 21)]
    gold = {r["id"]: r["answers"][0]["text"] for r in read_babi_qa(files[5])}  # qa6, yes/no
    ids = sorted(gold)
    # 950 right, 40 wrong, 10 never predicted (rejected): 95.0%, solved; task 1 not predicted at all.
    predictions = {qid: gold[qid] for qid in ids[:950]}
    predictions.update({qid: "maybe" for qid in ids[950:990]})
    rows = script.score(predictions, files)
    by_task = {row["task"]: row for row in rows}
    assert (by_task[6]["accuracy"], by_task[6]["error"], by_task[6]["solved"]) == (95.0, 5.0, True)
    # the majority baseline: qa6's most frequent training answer ("yes") is right for 497 of its test questions
    assert by_task[6]["majority_accuracy"] == 49.7 and by_task[1]["majority_accuracy"] == 18.7
    assert (by_task[1]["accuracy"], by_task[1]["solved"]) == (0.0, False)
    assert by_task[3]["memn2n_pe_ls_rn_joint"] == "21.9" and by_task[19]["memnn_strong"] == "64.0"
    totals = script.summary(rows)
    assert totals["mean"]["error"] == round((19 * 100.0 + 5.0) / 20, 1) and totals["failed"]["error"] == 19
    assert totals["mean"]["memn2n_pe_ls_rn_joint"] == 12.4 and totals["failed"]["memn2n_pe_ls_rn_joint"] == 11
    # Evidence: the gold supporting facts marked exactly (qa2: two per question), or one extra fact each.
    records = read_babi_qa(files[1])
    marked = {r["id"]: [{"start": e["start"], "end": e["start"] + len(e["text"]), "text": e["text"]} for e in r["evidence"]]
              for r in records}
    assert script.evidence_scores(records, files[1], marked) == {
        "evidence_recall": 100.0, "evidence_precision": 100.0, "evidence_all_found": 100.0}
    first_fact = {r["id"]: [{"start": 0, "end": r["context"].index(".") + 1}] for r in records}
    half = script.evidence_scores(records, files[1], {i: marked[i][:1] + first_fact[i] for i in marked})
    assert half["evidence_all_found"] < 100.0 and 50.0 <= half["evidence_recall"] < 100.0
    assert script.evidence_scores(records, files[1], {}) == {"evidence_recall": 0.0, "evidence_precision": 0.0,
                                                             "evidence_all_found": 0.0}


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
def test_retrieval_cmrc(run_smoke):
    out = run_smoke("retrieval_cmrc")
    rows = assert_like_committed("retrieval_cmrc", out)
    assert len(rows) == 7 and rows[0]["method"].startswith("BM25, bm25s's tokenisation")
    assert all(float(row["recall@1"]) <= float(row["recall@5"]) <= float(row["recall@20"]) <= 1 for row in rows)
    assert table_headers(out / "tokenizer.md") == table_headers(EXPERIMENTS / "retrieval_cmrc" / "tokenizer.md")


@pytest.mark.slow
def test_qa_cmrc(run_smoke):
    out = run_smoke("qa_cmrc", "--sample", "8")
    rows = assert_like_committed("qa_cmrc", out)
    assert [row["setting"] for row in rows][-2:] == ["gold paragraph: the retrieve-and-read sample", "retrieve-and-read (BM25 top 1)"]
    assert rows[0]["questions"] == "16" and rows[-1]["questions"] == "8"
    split = {row["setting"]: int(row["questions"]) for row in rows[1:3]}
    assert sum(split.values()) == 16  # every question in one of the [UNK] groups
    assert_finite(rows, ["exact_match", "f1", "squad_exact_match", "squad_f1", "holds_answer", "prediction_characters"])


@pytest.mark.slow
def test_instruction_parser(run_smoke):
    out = run_smoke("instruction_parser", "--threads", "1")
    rows = assert_like_committed("instruction_parser", out)
    sets = {row["set"] for row in rows}
    assert {"held-out templates: all", "marker-free: all"} <= sets
    assert sorted((row["set"], row["method"]) for row in rows) == sorted(
        (name, method) for name in sets for method in ("rules", "learned", "auto", "markers then learned"))
    assert_finite(rows, ["n", "task_acc", "field_em", "span_f1", "language_acc"])
    assert (out / "failures.md").read_text(encoding="utf-8").startswith("# What still fails")
    report = (out / "results.md").read_text(encoding="utf-8")
    assert "| QA texts of the set | method | n | question exact | context exact |" in report
    assert "| unseen templates: all | learned |" in report


@pytest.mark.slow
def test_instruction_parser_without_learned_weights(run_smoke):
    out = run_smoke("instruction_parser", "--without-learned")
    columns, rows = read_rows(out / "results_without_learned.csv")
    assert columns == read_rows(EXPERIMENTS / "instruction_parser" / "results_without_learned.csv")[0]
    assert {row["method"] for row in rows} == {"rules", "auto"}
    issue = {row["method"]: float(row["task_acc"]) for row in rows if row["set"] == "marker-free: the issue's examples"}
    assert issue == {"rules": 0.2, "auto": 0.6}  # the two prose-option examples join the bare prompt
    assert not (out / "results.csv").exists()  # the learned run's files are left alone


def test_distill_compare_checks_each_reproduced_mean_against_two_committed_stds():
    compare = load_script("distill_sst2", "compare.py")
    committed = [{"variant": "full", "student_acc": a, "retention": "0.9", "speedup": "2.0"} for a in ("0.80", "0.82", "0.84")]
    committed += [{"variant": "random", "student_acc": "0.5", "retention": "0.5", "speedup": s} for s in ("1.9", "2.0", "2.1")]
    reproduced = [{"variant": "full", "test/sst2/acc": a, "test/retention": "0.9", "test/speedup": "2.0"} for a in ("0.86", "0.87")]
    reproduced += [{"variant": "random", "test/sst2/acc": "0.5", "test/retention": "0.51", "test/speedup": "2.4"}]
    lines = compare.agreement(committed, reproduced).splitlines()[2:]
    assert lines == [
        "| full | dev accuracy (%) | 82.00 ± 2.00 | 86.50 ± 0.71 | +4.50 | 2.3 | **no** |",  # 4.5 / 2.0 in floats: 2.2500000000000004
        "| random | dev accuracy (%) | 50.00 ± 0.00 | 50.00 | +0.00 | - | yes |",
        "| full | retention (%) | 90.00 ± 0.00 | 90.00 ± 0.00 | +0.00 | - | yes |",
        "| random | retention (%) | 50.00 ± 0.00 | 51.00 | +1.00 | - | **no** |",
        "| full | speed-up (x) | 2.00 ± 0.00 | 2.00 ± 0.00 | +0.00 | - | yes |",
        "| random | speed-up (x) | 2.00 ± 0.10 | 2.40 | +0.40 | 4.0 | **no** |",
    ]


def test_distill_peer_torchdistill_config_carries_our_recipe():
    """torchdistill's KDLoss is alpha * CE + beta * T^2 * KL: alpha must be our hard weight."""
    import yaml
    from types import SimpleNamespace

    script = load_script("distill_peer_torchdistill")
    spec = yaml.safe_load((EXPERIMENTS / "distill_peer_torchdistill" / "torchdistill.yaml").read_text(encoding="utf-8"))
    hparams = SimpleNamespace(learning_rate=3e-4, weight_decay=0.02, warmup_ratio=0.1, temperature=4.0, hard_weight=0.25, soft_weight=0.75)
    config = script.torchdistill_config(spec, SimpleNamespace(hparams=hparams), steps=125)
    assert config["optimizer"]["kwargs"] == {"lr": 3e-4, "weight_decay": 0.02}
    assert config["scheduler"]["kwargs"] == {"num_warmup_steps": 12, "num_training_steps": 125}
    assert config["scheduler"]["scheduling_step"] == 1  # stepped every batch, as Lightning steps ours
    kd = config["criterion"]["kwargs"]["sub_terms"]["kd"]["criterion"]["kwargs"]
    assert (kd["temperature"], kd["alpha"], kd["beta"]) == (4.0, 0.25, 0.75)
    assert spec["train"]["optimizer"]["kwargs"] == {"lr": None, "weight_decay": None}  # the spec itself is left alone


def test_distill_peer_torchdistill_ours(run_smoke):
    """Our two engines (torchdistill's needs the environment its README makes)."""
    out = run_smoke("distill_peer_torchdistill", "--engines", "ours (cached)", "ours (online)")
    _, rows = read_rows(out / "results.csv")
    assert [(r["engine"], r["seed"]) for r in rows] == [("ours (cached)", "0"), ("ours (online)", "0")]
    assert_finite(rows, ["accuracy", "epoch_seconds"])
    assert all(r["steps"] == "1" for r in rows)  # 32 sentences, one batch
    assert "| ours (cached) |" in (out / "results.md").read_text(encoding="utf-8")
