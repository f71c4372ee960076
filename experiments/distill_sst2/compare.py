"""Does ``instructrec ablate experiments/distill_sst2/ablation.yaml`` reproduce the committed
ablation table? Per variant and metric: the committed mean ± std (``results.csv``, made by the
experiment's former script) beside the command's, and whether the command's mean lies within two of
the committed standard deviations of the committed mean (the issue's test; a variant whose seeds
all gave the same value must give it again).

    python experiments/distill_sst2/compare.py runs/ablate/distill_sst2/results.csv
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

HERE = Path(__file__).resolve().parent
# committed results.csv column -> the ablation's metric, and the scale they are shown at
METRICS = {"student_acc": ("test/sst2/acc", 100, "dev accuracy (%)"), "retention": ("test/retention", 100, "retention (%)"),
           "speedup": ("test/speedup", 1, "speed-up (x)")}


def by_variant(rows: list[dict], column: str) -> dict[str, list[float]]:
    groups: dict[str, list[float]] = {}
    for row in rows:
        groups.setdefault(row["variant"], []).append(float(row[column]))
    return groups


def agreement(committed: list[dict], reproduced: list[dict]) -> str:
    table = []
    for old_column, (new_column, scale, label) in METRICS.items():
        old, new = by_variant(committed, old_column), by_variant(reproduced, new_column)
        for variant in old:
            if variant not in new:
                continue
            mean, spread = statistics.mean(old[variant]), statistics.stdev(old[variant])
            again = statistics.mean(new[variant])
            within = abs(again - mean) <= 2 * spread + 1e-9
            table.append([variant, label, common.mean_std(old[variant], scale, 2), common.mean_std(new[variant], scale, 2),
                          f"{scale * (again - mean):+.2f}", f"{abs(again - mean) / spread:.1f}" if spread else "-",
                          "yes" if within else "**no**"])
    return common.markdown_table(["variant", "metric", "committed", "instructrec ablate", "difference",
                                  "difference / committed std", "within 2 std"], table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reproduced", type=Path, help="results.csv written by instructrec ablate")
    parser.add_argument("--committed", type=Path, default=HERE / "results.csv")
    args = parser.parse_args(argv)
    print(agreement(common.read_csv(args.committed), common.read_csv(args.reproduced)))


if __name__ == "__main__":
    main()
