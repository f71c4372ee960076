"""bAbI tasks 1-3: answer accuracy of a MiniLM-L6 reader per task (trained on the task's train
file, tested on its test file) and the supporting-fact recall of multi-hop retrieval traces over
the stories' facts. Writes results.csv and results.md beside this file.

    python experiments/qa_babi/run.py                   # fit + test per task, then traces
    python experiments/qa_babi/run.py --tasks qa1 qa2   # some tasks (results of the others kept)
    python experiments/qa_babi/run.py --traces_only     # traces (+ reader traces from the checkpoints)
    python experiments/qa_babi/run.py --smoke           # the pipeline on the tiny backbone, in seconds

Reader: ``instructrec fit --config configs/qa/babi_multihop.yaml`` with the task's files, window and
context (``TASKS``: qa1 reads the story so far, qa2 and qa3 the facts multi-hop retrieval selects,
in story order), early stopping on the held-out 10% of train. Accuracy: ``instructrec predict``
with the best checkpoint on the test file, exact match of the one-word answer over every test
question. Traces: the knowledge base is the test file's facts; for each question, retrieval may
only select facts told before it (:mod:`instructrec.retrieval.stories`: BM25 where the latest
matching fact wins, later hops follow the names found). Retrieval alone: one fact per hop, hops =
the task's number of supporting facts. Retrieval + reader: one retrieval hop fewer, and the fact
that holds the reader's answer span (n-best offsets) is the last.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

ROOT = common.ROOT
HERE = Path(__file__).resolve().parent
CONFIG = ROOT / "configs" / "qa" / "babi_multihop.yaml"
# name: (file stem, supporting facts per question = hops, reader window in tokens, what the reader
# reads: `read_babi_qa` options; none = the whole story so far)
TASKS = {
    "qa1": ("qa1_single-supporting-fact", 1, 128, {}),  # every story fits (longest: 76 tokens)
    # The facts multi-hop retrieval selects (instructrec.retrieval.stories): the latest fact naming
    # the object, then up to 10 about its holder (qa2: 5.5 facts on average, both supporting facts
    # for every train and test question) or, for qa3, the latest 4 object facts and 20 about their
    # holders (19 facts; all three supporting facts for 99.7% of train and 99.6% of test questions).
    "qa2": ("qa2_two-supporting-facts", 2, 128, {"retrieve": [1, 10]}),
    "qa3": ("qa3_three-supporting-facts", 3, 256, {"retrieve": [4, 20]}),
}
FIELDS = ["task", "start", "accuracy", "all_supporting_found", "supporting_fact_recall", "reader_all_found", "reader_recall",
          "questions", "hops", "epochs", "max_length", "train_seconds"]


def trace_recall(data: Path, task: str, answer_facts: dict[str, str] | None = None) -> dict:
    """Share of questions whose supporting facts are all in the trace, and of supporting facts found.

    Retrieval alone: as many hops as the task has supporting facts. With ``answer_facts`` (question
    id -> the fact the reader's answer span lies in), one hop fewer, and the answer's fact ends the
    trace: the reader, which has read the story (or the facts retrieval selected), is the last hop's selector.
    """
    from instructrec.retrieval.stories import story_chains

    stem, hops, _, _ = TASKS[task]
    path = data / "babi_en_1k" / f"{stem}_test.txt"
    retrieval_hops = hops - 1 if answer_facts is not None else hops
    results, gold = story_chains(path, [1] * max(retrieval_hops, 1))
    traces = [{step.passage_id for step in r.trace} if retrieval_hops else set() for r in results]
    if answer_facts is not None:
        ids = [qid for qid, _, _ in questions_of(path)]
        traces = [trace | {answer_facts[i]} if answer_facts.get(i) else trace for trace, i in zip(traces, ids)]
    found = [g & t for t, g in zip(traces, gold)]
    return {
        "all_supporting_found": sum(f == g for f, g in zip(found, gold)) / len(gold),
        "supporting_fact_recall": sum(len(f) for f in found) / sum(len(g) for g in gold),
        "questions": len(gold),
        "hops": hops,
    }


def questions_of(path: Path) -> list[tuple[str, object, int]]:
    """``(question id, story, question line)`` per question in file order (that of
    ``babi_questions``); the id is the one ``read_babi_qa`` gives its record."""
    from instructrec.babi import read_babi

    return [(f"{path.name}:s{story.index}:{q.line}", story, q.line) for story in read_babi(path) for q in story.questions]


def reader_predictions(data: Path, task: str, args) -> tuple[float, dict[str, str | None]] | None:
    """Answer accuracy over *every* question of the test file (a question whose context lost its
    answer is rejected by the data module and counts as wrong here), and question id -> passage id of
    the fact holding the reader's best span, from ``instructrec predict`` with the task's best
    checkpoint (None when there is none)."""
    from instructrec.data.raw import read_babi_qa
    from instructrec.qa.squad_metrics import exact_match

    stem, _, _, reader_args = TASKS[task]
    out = Path(args.work_dir) / task
    checkpoint = out / "checkpoints" / "best.ckpt"
    if not checkpoint.exists():
        return None
    test = data / "babi_en_1k" / f"{stem}_test.txt"
    common.lightning(
        "predict", out / "config.yaml", out, *task_overrides(task, args), "--data.init_args.train=null",
        "--data.init_args.test=null", f"--data.init_args.predict={test}", f"--ckpt_path={checkpoint}",
        cache_dir=Path(args.work_dir) / "cache", smoke=args.smoke,
    )
    predictions = json.loads((out / "predictions" / "predictions.json").read_text(encoding="utf-8"))
    nbest = json.loads((out / "predictions" / "nbest_predictions.json").read_text(encoding="utf-8"))
    records = {record["id"]: record for record in read_babi_qa(test, **reader_args)}
    facts = {}
    for qid, story, _ in questions_of(test):
        best = nbest.get(qid, [{}])[0]
        fact = story.fact_at(records[qid]["facts"], best["offsets"][0]) if best.get("text") else None
        facts[qid] = None if fact is None else f"s{story.index}:{fact}"
    correct = [exact_match(predictions.get(qid, ""), record["answers"][0]["text"]) for qid, record in records.items()]
    return sum(correct) / len(correct), facts


def exported(task: str, args) -> Path:
    """The encoder (and tokenizer) of ``task``'s best reader as a transformers folder, for another
    task's reader to start from (any backbone name may be such a folder)."""
    from instructrec.export import save_encoder
    from instructrec.models.checkpoints import load_module

    folder = Path(args.work_dir) / task / "encoder"
    if not (folder / "config.json").exists():
        save_encoder(load_module(Path(args.work_dir) / task / "checkpoints" / "best.ckpt"), folder)
    return folder.resolve()


def task_overrides(task: str, args) -> list[str]:
    """What fit and predict of ``task``'s reader share: its window and the facts it reads (with
    ``--smoke``, a handful of questions per split)."""
    _, _, max_length, reader_args = TASKS[task]
    return [
        f"--data.init_args.max_length={max_length}", f"--data.init_args.doc_stride={max_length // 2}",
        *([f"--data.init_args.reader_args={json.dumps(reader_args)}"] if reader_args else []),
        # A question whose retrieved facts lost its answer cannot be labelled: skipped (into the
        # cache's rejects file) rather than stopping the run; the accuracy still counts it, as wrong.
        *(["--data.init_args.on_error=skip"] if "retrieve" in reader_args else []),
        *([f"--data.init_args.max_examples={common.smoke_examples()}"] if args.smoke else []),
    ]


def accuracy(task: str, args) -> dict:
    """Fit a reader on the task's train file, then test its best checkpoint on the task's test file
    (logged only: the Trainer's test skips questions whose context lost the answer, so the accuracy
    reported is :func:`reader_predictions`', over every question)."""
    stem, _, max_length, _ = TASKS[task]
    out = Path(args.work_dir) / task
    files = "${INSTRUCTREC_DATA}/babi_en_1k/" + stem
    start = [f"--model.init_args.backbone={exported(args.init_from, args)}"] if args.init_from and args.init_from != task else []
    cli, seconds = common.lightning(
        "fit", common.run_config(CONFIG, out), out, *start, *task_overrides(task, args),
        f"--trainer.max_epochs={args.max_epochs}", f"--data.init_args.train={files}_train.txt",
        f"--data.init_args.test={files}_test.txt", "--test_after_fit=true",
        cache_dir=Path(args.work_dir) / "cache", smoke=args.smoke,
    )
    return {
        "start": args.init_from if start else cli.model.hparams["backbone"],
        "epochs": cli.trainer.current_epoch,
        "max_length": max_length,
        "train_seconds": round(seconds),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("INSTRUCTREC_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--max_epochs", type=int, default=20, help="upper bound; early stopping usually ends first")
    parser.add_argument("--init_from", choices=list(TASKS), default=None,
                        help="start the readers from this task's trained reader instead of MiniLM-L6 (a curriculum)")
    parser.add_argument("--traces_only", action="store_true")
    args = common.parse(parser, argv, HERE, work_dir="runs/experiments/qa_babi")
    os.environ.setdefault("INSTRUCTREC_DATA", args.data)
    csv_path = args.out / "results.csv"
    for task in args.tasks:
        row = {**{name: "" for name in FIELDS}, **read(csv_path).get(task, {}), "task": task}
        if not args.traces_only:
            row.update(accuracy(task, args))
        row.update(trace_recall(Path(args.data), task))
        predicted = reader_predictions(Path(args.data), task, args)
        if predicted is not None:
            accuracy_all, facts = predicted
            reader = trace_recall(Path(args.data), task, facts)
            row.update(accuracy=accuracy_all, reader_all_found=reader["all_supporting_found"],
                       reader_recall=reader["supporting_fact_recall"])
        print(row, flush=True)
        write({**read(csv_path), task: row}, args.out)


def read(csv_path: Path) -> dict[str, dict]:
    """The results written so far, by task: tasks not run this time keep theirs (read again before
    each write, so runs of different tasks side by side do not overwrite each other)."""
    return {row["task"]: row for row in common.read_csv(csv_path)}


def write(rows: dict[str, dict], out: Path) -> None:
    """results.csv and results.md in ``out``, the tasks in ``TASKS`` order."""
    ordered = [rows[task] for task in TASKS if task in rows]
    common.write_csv(out / "results.csv", ordered, FIELDS)

    def percent(value) -> str:
        return "-" if value in ("", None) else f"{100 * float(value):.1f}"

    common.write_markdown(out / "results.md", common.markdown_table(
        ["task", "answer accuracy (%)", "reader window (tokens)", "epochs",
         "every supporting fact in the trace (%): retrieval / retrieval + reader",
         "supporting-fact recall (%): retrieval / retrieval + reader", "hops"],
        [[row["task"], "not run" if row["accuracy"] == "" else percent(row["accuracy"]), row["max_length"], row["epochs"],
          f"{percent(row['all_supporting_found'])} / {percent(row.get('reader_all_found'))}",
          f"{percent(row['supporting_fact_recall'])} / {percent(row.get('reader_recall'))}", row["hops"]]
         for row in ordered],
    ))


if __name__ == "__main__":
    main()
