"""The Financial PhraseBank tune's two steps that are not a command (run.sh calls them):

    python experiments/tune_financial/report.py compare-spec runs/tune/fpb_median [--overlay O.yaml] > experiments/tune_financial/compare.yaml
    python experiments/tune_financial/report.py summary runs/tune/fpb_median runs/tune/fpb_none runs/ablate/tune_financial [--ballast runs/tune/fpb_median_ballast]

``compare-spec`` writes the ablation spec that scores the shipped config against the study's best
values (3 seeds each, on the test split the search never saw). ``summary`` writes ``studies.csv``
(one row per trial of both studies) and ``results.md``: each study's trials, epochs trained and wall
time, the time pruning saved, and the shipped-vs-tuned table ``instructrec ablate`` made.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
BASE = "configs/financial_phrasebank.yaml"
METRICS = ["test/financial_phrasebank/acc", "test/financial_phrasebank/f1"]


def load(study_folder: Path):
    import optuna

    name = study_folder.name
    return optuna.load_study(study_name=name, storage=f"sqlite:///{(study_folder / 'study.db').resolve()}")


def compare_spec(study_folder: Path, overlays: list[str]) -> str:
    best = load(study_folder).best_trial
    spec = {
        "name": "tune_financial",
        "base": BASE,
        "overlays": overlays,
        "seeds": [0, 1, 2],
        "metrics": METRICS,
        "scale": 100,
        "digits": 1,
        "out": "runs/ablate/tune_financial",
        "variants": {"shipped": {}, "tuned": {"overrides": dict(best.params)}},
    }
    header = (f"# Shipped vs tuned Financial PhraseBank classifier (issue 15): the tuned values are the best trial\n"
              f"# ({best.number}, val/score {best.value:.4f}) of the study in {study_folder}; written by\n"
              f"#   python experiments/tune_financial/report.py compare-spec {study_folder}"
              + "".join(f" --overlay {overlay}" for overlay in overlays) + "\n"
              "# and run by `instructrec ablate experiments/tune_financial/compare.yaml`.\n")
    return header + yaml.safe_dump(spec, sort_keys=False)


def study_rows(study_folder: Path) -> list[dict]:
    rows = []
    for trial in load(study_folder).get_trials(deepcopy=False):
        if trial.state.name not in ("COMPLETE", "PRUNED"):
            continue
        rows.append({"study": study_folder.name, "trial": trial.number, "state": trial.state.name,
                     "val_score": trial.value if trial.value is not None else max(trial.intermediate_values.values()),
                     "epochs": len(trial.intermediate_values), "seconds": trial.duration.total_seconds(),
                     "start": trial.datetime_start, "end": trial.datetime_complete, **trial.params})
    return rows


def summary(studies: list[Path], ablation: Path, ballast: Path | None = None) -> None:
    per_study = {folder.name: study_rows(folder) for folder in studies}
    fields = ["study", "trial", "state", "val_score", "epochs", "seconds"]
    with (HERE / "studies.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fields + sorted({k for rows in per_study.values() for r in rows for k in r} - set(fields) - {"start", "end"}),
                                extrasaction="ignore")
        writer.writeheader()
        for rows in per_study.values():
            writer.writerows([{**r, "seconds": round(r["seconds"], 1), "val_score": round(r["val_score"], 4)} for r in rows])
    lines = ["| study | trials (complete / pruned) | epochs trained | trial time (s, sum) | wall time (s, first start to last end) | best val/score |",
             "|---|---|---|---|---|---|"]
    walls = {}
    for name, rows in per_study.items():
        walls[name] = (max(r["end"] for r in rows) - min(r["start"] for r in rows)).total_seconds()
        lines.append(f"| {name} | {len(rows)} ({sum(r['state'] == 'COMPLETE' for r in rows)} / {sum(r['state'] == 'PRUNED' for r in rows)}) "
                     f"| {sum(r['epochs'] for r in rows)} | {sum(r['seconds'] for r in rows):.0f} | {walls[name]:.0f} "
                     f"| {max(r['val_score'] for r in rows if r['state'] == 'COMPLETE'):.4f} |")
    names = list(per_study)
    if len(names) == 2:
        pruned, full = names
        lines.append("")
        lines.append(f"Pruning saved {100 * (1 - walls[pruned] / walls[full]):.1f}% of the wall time "
                     f"({100 * (1 - sum(r['epochs'] for r in per_study[pruned]) / sum(r['epochs'] for r in per_study[full])):.1f}% "
                     "of the epochs trained).")
        # Like for like: the trials both studies ran while both were running (same machine load).
        first_end = min(max(r["end"] for r in rows) for rows in per_study.values())
        ended = {name: {r["trial"]: r["seconds"] for r in rows if r["end"] <= first_end} for name, rows in per_study.items()}
        common = sorted(set(ended[pruned]) & set(ended[full]))
        if common:
            a, b = sum(ended[pruned][n] for n in common), sum(ended[full][n] for n in common)
            lines.append(f"Over the {len(common)} trials (numbers {common[0]}-{common[-1]}) both studies finished while both "
                         f"were running, side by side under the same load: {a:.0f} s with pruning, {b:.0f} s without, "
                         f"{100 * (1 - a / b):.1f}% saved.")
        if ballast is not None and (ballast / "study.db").is_file():
            # The ballast repeats the pruned study's trials later in the run: the same work, timed
            # under the load of that later time, says how much the machine's load moved.
            repeated = {r["trial"]: r["seconds"] for r in study_rows(ballast)}
            first = {r["trial"]: r["seconds"] for r in per_study[pruned] if r["trial"] in repeated}
            if first:
                lines.append(f"Ballast: after the pruned study ended it was repeated ({ballast.name}) until the unpruned one "
                             f"ended, so that both studies ran beside a second study throughout. Its {len(first)} finished trials "
                             f"(numbers 0-{max(first)}, the same work as the study's) took {sum(repeated[n] for n in first):.0f} s "
                             f"against {sum(first.values()):.0f} s in the study: the machine's load moved that much over the run.")
    table = (ablation / "results.md").read_text(encoding="utf-8") if (ablation / "results.md").is_file() else "(ablation not run)\n"
    (HERE / "results.md").write_text("## The two studies\n\n" + "\n".join(lines) + "\n\n## Shipped vs tuned (test split, 3 seeds)\n\n"
                                     + table, encoding="utf-8")
    print((HERE / "results.md").read_text(encoding="utf-8"))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    spec = commands.add_parser("compare-spec")
    spec.add_argument("study", type=Path, help="the study's --out folder (its study.db)")
    spec.add_argument("--overlay", action="append", default=[], help="a config merged onto the base in both variants (the study's)")
    report = commands.add_parser("summary")
    report.add_argument("pruned", type=Path)
    report.add_argument("unpruned", type=Path)
    report.add_argument("ablation", type=Path)
    report.add_argument("--ballast", type=Path, default=None, help="the pruned study repeated as ballast (run.sh): its timing")
    args = parser.parse_args(argv)
    if args.command == "compare-spec":
        sys.stdout.write(compare_spec(args.study, args.overlay))
    else:
        summary([args.pruned, args.unpruned], args.ablation, args.ballast)


if __name__ == "__main__":
    main()
