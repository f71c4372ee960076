"""What the per-variant ablation table cannot say: each *system* (the multi-task model, or the two
single-task models together) scored as the mean over both tasks per seed, then mean ± std over
seeds, from the ``results.csv`` of ``instructrec ablate experiments/multitask_financial/ablation.yaml``.

    python experiments/multitask_financial/report.py runs/ablate/multitask_financial/results.csv
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

TASKS = ("sentiment", "topic")
# Which variant answers each task, per system.
SYSTEMS = {
    "multi-task (one encoder)": {"sentiment": "multi-task", "topic": "multi-task"},
    "two single-task models": {"sentiment": "single: sentiment", "topic": "single: topic"},
}


def per_system(rows: list[dict]) -> str:
    """The Markdown table: per system, the mean over tasks of accuracy and macro-F1 (%), over the
    seeds every variant it needs has finished."""
    score = {(row["variant"], int(row["seed"]), name): float(row[name]) for row in rows
             for name in row if name.startswith("test/") and row[name] != ""}
    table = []
    for system, variants in SYSTEMS.items():
        seeds = sorted({int(r["seed"]) for r in rows})
        complete = [s for s in seeds if all((variants[t], s, f"test/{t}/acc") in score for t in TASKS)]
        if not complete:
            continue
        acc = [statistics.mean(score[(variants[t], s, f"test/{t}/acc")] for t in TASKS) for s in complete]
        f1 = [statistics.mean(score[(variants[t], s, f"test/{t}/f1")] for t in TASKS) for s in complete]
        table.append([system, common.mean_std(acc, 100), common.mean_std(f1, 100), len(complete)])
    return common.markdown_table(["system", "mean accuracy over tasks (%)", "mean macro-F1 over tasks (%)", "seeds"], table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="results.csv of the ablation")
    args = parser.parse_args(argv)
    with args.results.open(newline="", encoding="utf-8") as handle:
        print(per_system(list(csv.DictReader(handle))))


if __name__ == "__main__":
    main()
