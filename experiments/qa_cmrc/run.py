"""The extractive reader on CMRC 2018 (Chinese), end to end (issue 18, item 5): trained on the
trial split (1,000 usable questions; CMRC's training split is not in ../shared/data), scored on dev
(3,219) with CMRC's official metric (``instructrec.qa.cmrc_metrics``), split by whether the gold
answer holds an ``[UNK]`` of the reader's English vocabulary (what the vocabulary costs); then
retrieve-and-read: BM25 (jieba + Han bigrams) over dev's 848 paragraphs picks the passage the
reader reads, on a sample of dev questions, beside the same reader given the gold paragraph.

    python experiments/qa_cmrc/run.py                  # fit + predict + score + retrieve-and-read
    python experiments/qa_cmrc/run.py --score_only     # score the last run's predictions again

``configs/qa/cmrc2018_zh.yaml`` (MiniLM-L6, max length 256, stride 128, batch 16, lr 1e-4 with 10%
warm-up, 2 epochs), validated once, after the last epoch. Writes ``results.csv`` and ``results.md``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

HERE = Path(__file__).resolve().parent
CONFIG = common.ROOT / "configs" / "qa" / "cmrc2018_zh.yaml"
DEV = "${INSTRUCTREC_DATA}/cmrc2018/cmrc2018_dev.json"
OVERRIDES = ["--trainer.check_val_every_n_epoch=2"]  # the 2 epochs' end only: each dev pass costs minutes
SMOKE_DATA = ["--data.init_args.doc_stride=32", f"--data.init_args.max_examples={common.smoke_examples()}"]
FIELDS = ["setting", "questions", "exact_match", "f1", "squad_exact_match", "squad_f1", "holds_answer", "prediction_characters"]


def fit_and_predict(args) -> tuple[Path, dict]:
    out = args.work_dir  # absolute (common.parse)
    config = common.run_config(CONFIG, out, timer=True)
    overrides = SMOKE_DATA if args.smoke else OVERRIDES  # smoke: one epoch, validated
    lightning = dict(cache_dir=out / "cache", smoke=args.smoke)
    cli, _ = common.lightning("fit", config, out, *overrides, **lightning)
    timer = next(c for c in cli.trainer.callbacks if type(c).__name__ == "Timer")
    best = cli.trainer.checkpoint_callback.best_model_path
    budget = {"steps": cli.trainer.global_step, "train_minutes": round((timer.time_elapsed("train") - timer.time_elapsed("validate")) / 60, 1)}
    common.lightning("predict", config, out, *overrides, f"--ckpt_path={best}", f"--data.init_args.predict={DEV}", **lightning)
    (out / "best.txt").write_text(best + "\n", encoding="utf-8")
    (out / "budget.json").write_text(json.dumps(budget) + "\n", encoding="utf-8")
    return Path(best), budget


def dev_questions(answers: dict[str, str]) -> list[dict]:
    """Dev's ``data`` list, restricted to the questions answered (smoke mode answers a handful)."""
    from instructrec.paths import resolve_path

    return subset(json.loads(resolve_path(DEV).read_text(encoding="utf-8"))["data"], set(answers))


def subset(data: list[dict], ids: set[str]) -> list[dict]:
    """A SQuAD-format ``data`` list with only the questions in ``ids``."""
    return [{**a, "paragraphs": [{**p, "qas": [q for q in p["qas"] if q["id"].strip() in ids]} for p in a["paragraphs"]]}
            for a in data]


def scores(setting: str, data: list[dict], answers: dict[str, str]) -> dict:
    from instructrec.qa import cmrc_metrics, squad_metrics

    questions = cmrc_metrics.questions_of(data)
    cmrc = cmrc_metrics.evaluate(data, answers)
    squad = squad_metrics.evaluate_v1(questions, answers)
    # Where the scores are low, whether the reader found the answer's neighbourhood: the share of
    # predictions holding a gold answer whole, and how long the predictions are.
    holds = sum(any(r.strip() and r.strip() in answers.get(q, "") for r in refs) for q, refs in questions)
    return {"setting": setting, "questions": cmrc["total"], "exact_match": round(cmrc["exact_match"], 2),
            "f1": round(cmrc["f1"], 2), "squad_exact_match": round(squad["exact_match"], 2), "squad_f1": round(squad["f1"], 2),
            "holds_answer": round(100.0 * holds / max(1, len(questions)), 1), "prediction_characters": statistics.median_high(len(answers.get(q, "")) for q, _ in questions) if questions else 0}


def unknown_answer_ids(data: list[dict], backbone: str) -> set[str]:
    """Questions whose every gold answer holds a token the reader's vocabulary reads as ``[UNK]``."""
    from instructrec import backbones
    from instructrec.qa.cmrc_metrics import questions_of

    tokenizer = backbones.load_tokenizer(backbone)
    unknown = set()
    for qid, references in questions_of(data):
        ids = tokenizer(references, add_special_tokens=False)["input_ids"]
        if all(tokenizer.unk_token_id in row for row in ids):
            unknown.add(qid)
    return unknown


def retrieve_and_read(best: Path, data: list[dict], sample: int, seed: int, smoke: bool) -> dict[str, str]:
    """BM25 over dev's paragraphs, the top passage read, for ``sample`` questions (seeded)."""
    from instructrec.paths import resolve_path
    from instructrec.qa.ask import build_pipeline
    from instructrec.qa.cmrc_metrics import questions_of

    text = {qa["id"].strip(): qa["question"] for a in data for p in a["paragraphs"] for qa in p["qas"]}
    ids = [qid for qid, _ in questions_of(data)]
    ids = sorted(random.Random(seed).sample(ids, min(sample, len(ids))))
    pipeline = build_pipeline([str(resolve_path(DEV))], str(best), hops=1, passages=1, max_length=256,
                              doc_stride=32 if smoke else 128)
    answers = {}
    for first in range(0, len(ids), 32):
        chunk = ids[first:first + 32]
        for qid, answer in zip(chunk, pipeline([text[q] for q in chunk])):
            answers[qid] = answer.text
    return answers


def main(argv: list[str] | None = None) -> None:
    from instructrec.qa.cmrc_metrics import questions_of

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--score_only", action="store_true", help="score the predictions of the last run in --work_dir")
    parser.add_argument("--sample", type=int, default=500, help="dev questions answered by retrieve-and-read")
    parser.add_argument("--seed", type=int, default=0, help="chooses the retrieve-and-read sample")
    args = common.parse(parser, argv, HERE, work_dir="runs/experiments/qa_cmrc")
    work = args.work_dir
    started = time.perf_counter()
    if args.score_only:
        best = Path((work / "best.txt").read_text(encoding="utf-8").strip())
        budget = json.loads((work / "budget.json").read_text(encoding="utf-8"))
    else:
        best, budget = fit_and_predict(args)
    answers = json.loads((work / "predictions" / "predictions.json").read_text(encoding="utf-8"))
    data = dev_questions(answers)
    unknown = unknown_answer_ids(data, common.SMOKE_BACKBONE if args.smoke else "minilm-l6")
    known = {qid for qid, _ in questions_of(data)} - unknown
    rows = [scores("gold paragraph: all dev questions", data, answers)]
    for name, ids in (("gold paragraph: answer without [UNK]", known), ("gold paragraph: answer with [UNK]", unknown)):
        if ids:
            rows.append(scores(name, subset(data, ids), answers))
    retrieved = retrieve_and_read(best, data, args.sample, args.seed, args.smoke)
    sample = subset(data, set(retrieved))
    rows.append(scores("gold paragraph: the retrieve-and-read sample", sample, answers))
    rows.append(scores("retrieve-and-read (BM25 top 1)", sample, retrieved))
    common.write_csv(args.out / "results.csv", rows, FIELDS)
    table = common.markdown_table(
        ["setting", "questions", "EM (CMRC)", "F1 (CMRC)", "EM (SQuAD)", "F1 (SQuAD)", "prediction holds a gold answer (%)",
         "prediction length (characters, median)"],
        [[r["setting"], r["questions"], f"{r['exact_match']:.2f}", f"{r['f1']:.2f}",
          f"{r['squad_exact_match']:.2f}", f"{r['squad_f1']:.2f}", f"{r['holds_answer']:.1f}", r["prediction_characters"]] for r in rows],
    )
    gold = statistics.median_high(len(refs[0]) for _, refs in questions_of(data))
    note = (f"\nGold answers: median {gold} characters (the first reference). "
            f"Reader: {budget['steps']} steps ({budget['train_minutes']} min of training); "
            f"retrieve-and-read sample: {len(retrieved)} dev questions (seed {args.seed}).")
    common.write_markdown(args.out / "results.md", table + note)
    print(table + note)
    print(f"{(time.perf_counter() - started) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
