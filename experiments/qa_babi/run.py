"""bAbI tasks 1-3: answer accuracy of one MiniLM-L6 reader (trained on the three train files, the
story so far as each question's context) and the supporting-fact recall of multi-hop retrieval
traces over the stories' facts. Writes results.csv and results.md beside this file.

    python experiments/qa_babi/run.py                   # fit + test + traces
    python experiments/qa_babi/run.py --traces_only     # retrieval traces alone (seconds)

Accuracy: ``instructrec fit --config configs/qa/babi_multihop.yaml``, then ``test`` on each task's
test file alone (exact match of the one-word answer = accuracy). Traces: the knowledge base is the
test file's facts; for each question, retrieval may only select facts told before it; hop count =
the task's number of supporting facts; BM25 with a recency prior (later facts supersede earlier
ones), hop 1 queries with the question, later hops with the bridge words of the fact selected last
(:func:`instructrec.retrieval.multihop.bridge_query`).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import run_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CONFIG = ROOT / "configs" / "qa" / "babi_multihop.yaml"
TASKS = {  # name: (file stem, supporting facts per question = hops)
    "qa1": ("qa1_single-supporting-fact", 1),
    "qa2": ("qa2_two-supporting-facts", 2),
    "qa3": ("qa3_three-supporting-facts", 3),
}
FIELDS = ["task", "accuracy", "all_supporting_found", "supporting_fact_recall", "questions", "hops", "epochs"]


def trace_recall(data: Path, task: str) -> dict:
    """Share of questions whose supporting facts are all in the trace, and of supporting facts found."""
    from instructrec.retrieval import KnowledgeBase
    from instructrec.retrieval.knowledge_base import babi_questions
    from instructrec.retrieval.base import RecencyPrior
    from instructrec.retrieval.bm25 import BM25Retriever
    from instructrec.retrieval.multihop import MultiHopRetriever, bridge_query

    stem, hops = TASKS[task]
    path = data / "babi_en_1k" / f"{stem}_test.txt"
    kb = KnowledgeBase.from_babi(path)
    questions, allowed, gold = babi_questions(kb, path)
    retriever = MultiHopRetriever(RecencyPrior(BM25Retriever(kb), 0.05), hops=hops, select=1, reformulate=bridge_query)
    results = retriever.retrieve(questions, allowed=allowed)
    found = [g & {step.passage_id for step in r.trace} for r, g in zip(results, gold)]
    return {
        "all_supporting_found": sum(f == g for f, g in zip(found, gold)) / len(gold),
        "supporting_fact_recall": sum(len(f) for f in found) / sum(len(g) for g in gold),
        "questions": len(gold),
        "hops": hops,
    }


def accuracies(args) -> tuple[dict[str, float], int]:
    """Fit the reader on the three tasks, then test it on each task's test file alone."""
    from instructrec.cli import run_lightning

    out = Path(args.work_dir)
    config = str(run_config(CONFIG, out))
    common = ["--trainer.logger=false", "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={out}",
              f"--data.init_args.cache_dir={out / 'cache'}", f"--trainer.max_epochs={args.epochs}"]
    cli = run_lightning(["fit", "--config", config, *common, "--test_after_fit=false"])
    best = cli.trainer.checkpoint_callback.best_model_path or None
    result = {}
    for task, (stem, _) in TASKS.items():
        test_file = f"${{INSTRUCTREC_DATA}}/babi_en_1k/{stem}_test.txt"
        tested = run_lightning(["test", "--config", config, *common, f"--data.init_args.test=[{test_file}]",
                                *([f"--ckpt_path={best}"] if best else [])])
        result[task] = float(tested.trainer.callback_metrics["test/exact_match"]) / 100
    return result, cli.trainer.current_epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("INSTRUCTREC_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--traces_only", action="store_true")
    parser.add_argument("--work_dir", default="runs/experiments/qa_babi")
    parser.add_argument("--out", default=str(HERE))
    args = parser.parse_args()
    os.environ.setdefault("INSTRUCTREC_DATA", args.data)
    accuracy, epochs = ({}, 0) if args.traces_only else accuracies(args)
    rows = []
    for task in TASKS:
        row = {"task": task, "accuracy": accuracy.get(task, ""), "epochs": epochs or "", **trace_recall(Path(args.data), task)}
        rows.append(row)
        print(row, flush=True)
    with (Path(args.out) / "results.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| task | answer accuracy (%) | questions with every supporting fact in the trace (%) | supporting-fact recall (%) | hops |",
             "|---|---|---|---|---|"]
    for row in rows:
        acc = "not run" if row["accuracy"] == "" else f"{100 * row['accuracy']:.1f}"
        lines.append(f"| {row['task']} | {acc} | {100 * row['all_supporting_found']:.1f} | {100 * row['supporting_fact_recall']:.1f} | {row['hops']} |")
    (Path(args.out) / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
