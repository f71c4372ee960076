"""All 20 bAbI tasks with one reader trained jointly (configs/qa/babi_joint.yaml): spans where the
story tells the answer, closed answers (yes/no, counts, lists, directions) where it cannot, and the
supporting facts as an auxiliary loss. Scores every task's 1,000 test questions and sets the error
beside the published memory networks' (memn2n_1k.csv: Sukhbaatar et al. 2015, Table 1, 1k).
Writes results.csv and results.md beside this file.

    python experiments/qa_babi_joint/run.py --max_epochs 3     # fit, predict the 20 test files, score
    python experiments/qa_babi_joint/run.py --max_epochs 1 --train_questions 8000   # a CPU budget
    python experiments/qa_babi_joint/run.py --predict_only     # predict with the best checkpoint, then score
    python experiments/qa_babi_joint/run.py --score_only       # score the predictions already written
    python experiments/qa_babi_joint/run.py --smoke            # the pipeline on the tiny backbone, in seconds

Evidence: the facts the reader's support head marks (``evidence.json``: runs of context tokens with
probability > 0.5; a fact counts as marked when they cover at least half of its characters), set
against the question's supporting facts: recall, precision, and the share of questions whose
supporting facts are all marked.

Accuracy: exact match of ``instructrec predict``'s answer (best checkpoint by validation accuracy
over the held-out 10% of every training file) with the test answer, over all 1,000 questions of a
task: a question the data module rejected (its answer neither in its 20 facts nor a closed answer)
counts as wrong. Solved: accuracy >= 95% (bAbI's threshold: error <= 5%).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

ROOT = common.ROOT
HERE = Path(__file__).resolve().parent
CONFIG = ROOT / "configs" / "qa" / "babi_joint.yaml"
PUBLISHED = HERE / "memn2n_1k.csv"
FIELDS = ["task", "task_name", "questions", "accuracy", "majority_accuracy", "error", "solved", "memn2n_pe_ls_rn_joint",
          "memn2n_pe_ls_rn", "memnn_strong",
          "evidence_recall", "evidence_precision", "evidence_all_found"]
PUBLISHED_COLUMNS = ["memn2n_pe_ls_rn_joint", "memn2n_pe_ls_rn", "memnn_strong"]
SOLVED = 95.0


def test_files(data: Path) -> list[Path]:
    """The 20 test files, in task order, as the config lists them."""
    import yaml

    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    return [data / Path(p).name for p in config["data"]["init_args"]["test"]]


def task_of(example_id: str) -> int:
    """bAbI's task number of a question id (``qa<N>_<name>_test.txt:s<story>:<line>``)."""
    return int(example_id.split("_", 1)[0].removeprefix("qa"))


def score(predictions: dict[str, str], files: list[Path], evidence: dict[str, list[dict]] | None = None) -> list[dict]:
    """Per task: every test question's gold answer against its prediction (a missing one is wrong),
    and with ``evidence`` (``evidence.json``) the marked facts against the supporting ones."""
    from instructrec.data.raw import read_babi_qa

    published = {int(row["task"]): row for row in csv.DictReader(PUBLISHED.open(encoding="utf-8"))}
    rows = []
    for path in files:
        records = read_babi_qa(path)
        task = task_of(records[0]["id"])
        right = sum(predictions.get(r["id"]) == r["answers"][0]["text"] for r in records)
        accuracy = 100.0 * right / len(records)
        majority = majority_answer(path.with_name(path.name.replace("_test", "_train")))
        constant = 100.0 * sum(r["answers"][0]["text"] == majority for r in records) / len(records)
        rows.append({"task": task, "task_name": published[task]["task_name"], "questions": len(records),
                     "accuracy": round(accuracy, 1), "majority_accuracy": round(constant, 1),
                     "error": round(100.0 - accuracy, 1), "solved": accuracy >= SOLVED,
                     **{name: published[task][name] for name in PUBLISHED_COLUMNS},
                     **(evidence_scores(records, path, evidence) if evidence is not None else {})})
    return rows


def majority_answer(train: Path) -> str:
    """The task's most frequent training answer: the baseline that answers every question with it."""
    from collections import Counter

    from instructrec.babi import read_babi

    return Counter(q.answer for story in read_babi(train) for q in story.questions).most_common(1)[0][0]


def evidence_scores(records: list[dict], path: Path, evidence: dict[str, list[dict]]) -> dict:
    """Recall and precision of the marked facts against the supporting facts the context holds, and
    the share of questions with every one of them marked (percentages, one decimal)."""
    from instructrec.babi import read_babi

    stories = read_babi(path)
    found = gold_total = marked_total = true_marked = all_found = 0
    for record in records:
        story = stories[record["story"]]
        _, starts = story.context(record["facts"])
        spans = [(e["start"], e["end"]) for e in evidence.get(record["id"], [])]
        marked = {line for line, start in starts.items() if _covered(spans, start, start + len(story.facts[line])) >= 0.5}
        gold = {line for line in record["supporting"] if line in starts}
        found += len(gold & marked)
        gold_total += len(gold)
        marked_total += len(marked)
        true_marked += len(marked & gold)
        all_found += gold <= marked
    percent = lambda a, b: round(100.0 * a / b, 1) if b else 0.0  # noqa: E731
    return {"evidence_recall": percent(found, gold_total), "evidence_precision": percent(true_marked, marked_total),
            "evidence_all_found": percent(all_found, len(records))}


def _covered(spans: list[tuple[int, int]], start: int, end: int) -> float:
    """The share of characters ``[start, end)`` the spans cover (they do not overlap: merged)."""
    return sum(max(0, min(end, b) - max(start, a)) for a, b in spans) / max(1, end - start)


def summary(rows: list[dict]) -> dict:
    """The table's last rows: mean error and tasks failed (error > 5%), ours and published."""
    columns = ["error", *PUBLISHED_COLUMNS]
    mean = {c: round(sum(float(r[c]) for r in rows) / len(rows), 1) for c in columns}
    failed = {c: sum(float(r[c]) > 100.0 - SOLVED for r in rows) for c in columns}
    return {"mean": mean, "failed": failed}


def markdown(rows: list[dict], budget: str) -> str:
    """The results table: our accuracy and error per task beside the published errors (test error
    rates, %), the evidence columns where the run wrote evidence, and the summary rows."""
    evidence = "evidence_recall" in rows[0]
    table = ["| task | ours: accuracy (%) | majority answer (%) | ours: error (%) | MemN2N PE LS RN joint | "
             "MemN2N PE LS RN (per task) | strongly supervised MemNN |" + (" evidence: recall / precision / all facts (%) |" if evidence else ""),
             "|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if evidence else "")]
    for r in rows:
        table.append(f"| {r['task']}: {r['task_name']} | {r['accuracy']} | {r['majority_accuracy']} | {r['error']} | {r['memn2n_pe_ls_rn_joint']} | "
                     f"{r['memn2n_pe_ls_rn']} | {r['memnn_strong']} |"
                     + (f" {r['evidence_recall']} / {r['evidence_precision']} / {r['evidence_all_found']} |" if evidence else ""))
    totals = summary(rows)
    for name, key in (("mean error (%)", "mean"), ("failed tasks (error > 5%)", "failed")):
        table.append(f"| {name} | | | {totals[key]['error']} | {totals[key]['memn2n_pe_ls_rn_joint']} | "
                     f"{totals[key]['memn2n_pe_ls_rn']} | {totals[key]['memnn_strong']} |" + (" |" if evidence else ""))
    return "\n".join(["# bAbI 1k, all 20 tasks, one jointly trained reader", "", budget, "", *table])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "babi_en_1k"), help="the bAbI 1k folder")
    parser.add_argument("--max_epochs", type=int, default=None, help="override the config's epochs (the CPU budget)")
    parser.add_argument("--train_questions", type=int, default=None,
                        help="train on this many of the 18,000 training questions (a seeded-hash subset: the CPU budget)")
    parser.add_argument("--predict_only", action="store_true", help="predict with the best checkpoint a run left, then score")
    parser.add_argument("--score_only", action="store_true", help="score the predictions a run wrote")
    args = common.parse(parser, argv, HERE, work_dir="runs/experiments/qa_babi_joint")
    files = test_files(Path(args.data))
    out = args.work_dir  # absolute (common.parse)
    smoke = [f"--data.init_args.max_examples={common.smoke_examples(['train', 'val', 'test', 'predict'])}"] if args.smoke else []
    if args.train_questions and not args.smoke:
        smoke = [f"--data.init_args.max_examples={json.dumps({'train': args.train_questions})}"]
    epochs = [f"--trainer.max_epochs={args.max_epochs}"] if args.max_epochs else []
    seconds = 0.0
    if not args.score_only:
        config = common.run_config(CONFIG, out)
        if args.predict_only:
            checkpoint = str(out / "checkpoints" / "best.ckpt")
        else:
            # predict below reads the 20,000 test questions once: no test pass after fitting
            cli, seconds = common.lightning("fit", config, out, *epochs, *smoke, "--test_after_fit=false",
                                            cache_dir=out / "cache", smoke=args.smoke)
            checkpoint = cli.trainer.checkpoint_callback.best_model_path
        predict = json.dumps([str(f) for f in files])
        common.lightning("predict", config, out, *smoke, f"--data.init_args.predict={predict}", f"--ckpt_path={checkpoint}",
                         cache_dir=out / "cache", smoke=args.smoke)
    predictions = json.loads((out / "predictions" / "predictions.json").read_text(encoding="utf-8"))
    evidence_file = out / "predictions" / "evidence.json"
    evidence = json.loads(evidence_file.read_text(encoding="utf-8")) if evidence_file.exists() else None
    rows = score(predictions, files, evidence)
    common.write_csv(args.out / "results.csv", rows, FIELDS)
    questions = f"{args.train_questions:,} of the 18,000 training questions" if args.train_questions else "all 18,000 training questions"
    budget = (f"MiniLM-L6, {questions}, {args.max_epochs or 'the config'}'s epochs, best epoch by validation accuracy; "
              f"fit {seconds / 60:.0f} min on 2 CPU cores" if seconds else "scored from the predictions a run wrote")
    text = markdown(rows, budget)
    (args.out / "results.md").write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
