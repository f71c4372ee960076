"""The learning curve the per-variant ablation table cannot draw: Financial PhraseBank test accuracy
and macro-F1 over training sizes, alone vs beside SST-2, with the gain of the multi-task model per
size (paired by seed: both variants of one seed see the same sentences), its paired t-test, and the
goal (>= +2 points at 500 sentences). Writes ``curve.md`` and ``curve.png`` beside the results.

    python experiments/multitask_fpb_sizes/report.py runs/ablate/multitask_fpb_sizes/results.csv
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

from instructrec.studies.tables import significance  # noqa: E402

SIZES = ("250", "500", "1000", "all")
SETUPS = {"alone": "alone {size}", "beside SST-2": "beside SST-2 {size}"}
METRICS = {"accuracy": "test/sentiment/acc", "macro-F1": "test/sentiment/f1"}
GOAL_SIZE, GOAL_POINTS = "500", 2.0


def scores(rows: list[dict]) -> dict[tuple[str, str], dict[str, dict[int, float]]]:
    """``{(setup, size): {metric: {seed: value in %}}}`` of the finished runs."""
    result = {}
    for size in SIZES:
        for setup, pattern in SETUPS.items():
            mine = [row for row in rows if row["variant"] == pattern.format(size=size)]
            result[setup, size] = {name: {int(row["seed"]): 100 * float(row[column]) for row in mine if row.get(column)}
                                   for name, column in METRICS.items()}
    return result


def curve_table(rows: list[dict]) -> str:
    """Per size: each setup's mean ± std, the paired gain (beside - alone) and its p-value."""
    table = []
    by = scores(rows)
    for size in SIZES:
        alone, beside = by["alone", size], by["beside SST-2", size]
        cells = [size]
        for name in METRICS:
            shared = sorted(set(alone[name]) & set(beside[name]))
            cells += [common.mean_std(alone[name].values()) if alone[name] else "–",
                      common.mean_std(beside[name].values()) if beside[name] else "–"]
            if shared:
                gains = [beside[name][s] - alone[name][s] for s in shared]
                p, mark = significance({s: alone[name][s] for s in shared}, {s: beside[name][s] for s in shared})
                cells += [f"{common.mean_std(gains)}{mark}", f"{p:.3f}" if p is not None else "–"]
            else:
                cells += ["–", "–"]
        cells.append(len(set(alone["accuracy"]) & set(beside["accuracy"])))
        table.append(cells)
    header = ["FPB training sentences"]
    for name in METRICS:
        header += [f"alone {name} (%)", f"beside SST-2 {name} (%)", f"gain {name} (points)", f"p ({name})"]
    return common.markdown_table([*header, "paired seeds"], table)


def goal_line(rows: list[dict]) -> str:
    alone, beside = (scores(rows)[setup, GOAL_SIZE]["accuracy"] for setup in SETUPS)
    shared = sorted(set(alone) & set(beside))
    if not shared:
        return f"Goal (>= +{GOAL_POINTS:g} points at {GOAL_SIZE} sentences): no paired runs yet."
    gain = statistics.mean(beside[s] - alone[s] for s in shared)
    verdict = "met" if gain >= GOAL_POINTS else "not met"
    return (f"Goal: beside SST-2 >= +{GOAL_POINTS:g} accuracy points at {GOAL_SIZE} sentences: "
            f"{gain:+.1f} over {len(shared)} paired seeds, {verdict}.")


def plot(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = scores(rows)
    figure, axes = plt.subplots(figsize=(5.2, 3.4), dpi=110)
    for setup in SETUPS:
        points = [(i, list(by[setup, size]["accuracy"].values())) for i, size in enumerate(SIZES)
                  if by[setup, size]["accuracy"]]
        axes.errorbar([i for i, _ in points], [statistics.mean(v) for _, v in points],
                      yerr=[statistics.stdev(v) if len(v) > 1 else 0.0 for _, v in points], capsize=4, marker="o",
                      label=setup)
    axes.set_xticks(range(len(SIZES)), [s if s != "all" else "all (~1,585)" for s in SIZES])
    axes.set_xlabel("Financial PhraseBank training sentences")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title("FPB sentiment: alone vs beside 1,000 SST-2 sentences")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="results.csv of the ablation")
    parser.add_argument("--out", type=Path, default=None, help="folder for curve.md and curve.png (default: beside results.csv)")
    args = parser.parse_args(argv)
    with args.results.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    out = args.out or args.results.parent
    print(common.write_markdown(out / "curve.md", curve_table(rows), goal_line(rows),
                                "Mean ± sample std over seeds; gain = beside - alone per seed (paired), "
                                "* p < 0.05, ** p < 0.01 (paired t-test)."))
    print(f"written: {plot(rows, out / 'curve.png')}")


if __name__ == "__main__":
    main()
