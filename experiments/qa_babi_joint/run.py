"""All 20 bAbI tasks with one reader trained jointly (configs/qa/babi_joint.yaml): spans where the
story tells the answer, closed answers (yes/no, counts, lists, directions) where it cannot, and the
supporting facts as an auxiliary loss. Scores every task's 1,000 test questions and sets the error
beside the published memory networks' (memn2n_1k.csv: Sukhbaatar et al. 2015, Table 1, 1k).
Writes results.csv and results.md beside this file.

    python experiments/qa_babi_joint/run.py --max_epochs 3     # fit, predict the 20 test files, score
    python experiments/qa_babi_joint/run.py --score_only       # score the predictions already written
    python experiments/qa_babi_joint/run.py --smoke            # the pipeline on the tiny backbone, in seconds

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
FIELDS = ["task", "task_name", "questions", "accuracy", "error", "solved", "memn2n_pe_ls_rn_joint", "memn2n_pe_ls_rn", "memnn_strong"]
SOLVED = 95.0


def test_files(data: Path) -> list[Path]:
    """The 20 test files, in task order, as the config lists them."""
    import yaml

    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    return [data / Path(p).name for p in config["data"]["init_args"]["test"]]


def task_of(example_id: str) -> int:
    """bAbI's task number of a question id (``qa<N>_<name>_test.txt:s<story>:<line>``)."""
    return int(example_id.split("_", 1)[0].removeprefix("qa"))


def score(predictions: dict[str, str], files: list[Path]) -> list[dict]:
    """Per task: every test question's gold answer against its prediction (a missing one is wrong)."""
    from instructrec.data.raw import read_babi_qa

    published = {int(row["task"]): row for row in csv.DictReader(PUBLISHED.open(encoding="utf-8"))}
    rows = []
    for path in files:
        records = read_babi_qa(path)
        task = task_of(records[0]["id"])
        right = sum(predictions.get(r["id"]) == r["answers"][0]["text"] for r in records)
        accuracy = 100.0 * right / len(records)
        rows.append({"task": task, "task_name": published[task]["task_name"], "questions": len(records),
                     "accuracy": round(accuracy, 1), "error": round(100.0 - accuracy, 1), "solved": accuracy >= SOLVED,
                     **{name: published[task][name] for name in FIELDS[6:]}})
    return rows


def summary(rows: list[dict]) -> dict:
    """The table's last rows: mean error and tasks failed (error > 5%), ours and published."""
    columns = ["error", *FIELDS[6:]]
    mean = {c: round(sum(float(r[c]) for r in rows) / len(rows), 1) for c in columns}
    failed = {c: sum(float(r[c]) > 100.0 - SOLVED for r in rows) for c in columns}
    return {"mean": mean, "failed": failed}


def markdown(rows: list[dict], budget: str) -> str:
    table = ["| task | ours: accuracy (%) | ours: error (%) | MemN2N PE LS RN joint | MemN2N PE LS RN (per task) | strongly supervised MemNN |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        table.append(f"| {r['task']}: {r['task_name']} | {r['accuracy']} | {r['error']} | {r['memn2n_pe_ls_rn_joint']} | "
                     f"{r['memn2n_pe_ls_rn']} | {r['memnn_strong']} |")
    totals = summary(rows)
    table.append(f"| mean error (%) | | {totals['mean']['error']} | {totals['mean']['memn2n_pe_ls_rn_joint']} | "
                 f"{totals['mean']['memn2n_pe_ls_rn']} | {totals['mean']['memnn_strong']} |")
    table.append(f"| failed tasks (error > 5%) | | {totals['failed']['error']} | {totals['failed']['memn2n_pe_ls_rn_joint']} | "
                 f"{totals['failed']['memn2n_pe_ls_rn']} | {totals['failed']['memnn_strong']} |")
    return "\n".join(["# bAbI 1k, all 20 tasks, one jointly trained reader", "", budget, "", *table])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "babi_en_1k"), help="the bAbI 1k folder")
    parser.add_argument("--max_epochs", type=int, default=None, help="override the config's epochs (the CPU budget)")
    parser.add_argument("--score_only", action="store_true", help="score the predictions a run wrote")
    args = common.parse(parser, argv, HERE, work_dir="runs/experiments/qa_babi_joint")
    files = test_files(Path(args.data))
    out = args.work_dir
    smoke = [f"--data.init_args.max_examples={common.smoke_examples(['train', 'val', 'test', 'predict'])}"] if args.smoke else []
    epochs = [f"--trainer.max_epochs={args.max_epochs}"] if args.max_epochs else []
    seconds = 0.0
    if not args.score_only:
        config = common.run_config(CONFIG, out)
        cli, seconds = common.lightning("fit", config, out, *epochs, *smoke, cache_dir=out / "cache", smoke=args.smoke)
        checkpoint = cli.trainer.checkpoint_callback.best_model_path
        predict = json.dumps([str(f) for f in files])
        common.lightning("predict", config, out, *smoke, f"--data.init_args.predict={predict}", f"--ckpt_path={checkpoint}",
                         cache_dir=out / "cache", smoke=args.smoke)
    predictions = json.loads((out / "predictions" / "predictions.json").read_text(encoding="utf-8"))
    rows = score(predictions, files)
    common.write_csv(args.out / "results.csv", rows, FIELDS)
    budget = (f"MiniLM-L6, {args.max_epochs or 'the config'}'s epochs, best epoch by validation accuracy; "
              f"fit {seconds / 60:.0f} min on 2 CPU cores" if seconds else "scored from the predictions a run wrote")
    text = markdown(rows, budget)
    (args.out / "results.md").write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
