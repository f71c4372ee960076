"""DistilBERT's ablation on SST-2: a 3-layer student of the fine-tuned MiniLM-L6 teacher, trained
with the full loss and with one part removed at a time, over seeds. Writes results.csv (one row per
run) and results.md (mean ± std over seeds).

    python experiments/distill_sst2/run.py          # 4 variants x 3 seeds; see README.md for time

Needs the teacher checkpoint of ``configs/distill/sst2_teacher_minilm6.yaml`` (``--teacher``).
Each run is ``instructrec fit`` (LightningCLI in-process) on ``configs/distill/sst2_minilm6_to_3.yaml``
with the variant's overrides, then ``test`` on GLUE SST-2 dev, where student and teacher run on the
same batches (accuracy, latency, speed-up, retention: ``DistillationModule.test_report``).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402,F401  (offline defaults)

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CONFIG = "configs/distill/sst2_minilm6_to_3.yaml"
# DistilBERT's full loss is soft targets + hard labels + hidden-state alignment; each variant
# removes one part, or starts the student from random weights instead of the teacher's layers.
VARIANTS = {
    "full": {"soft_weight": 0.5, "hard_weight": 0.5, "hidden_weight": 1.0},
    "no soft targets": {"soft_weight": 0.0, "hard_weight": 1.0, "hidden_weight": 1.0},
    "no hidden-state loss": {"soft_weight": 0.5, "hard_weight": 0.5, "hidden_weight": 0.0},
    "random init": {"soft_weight": 0.5, "hard_weight": 0.5, "hidden_weight": 1.0, "student_init": "random",
                    "student_num_layers": 3},
}
FIELDS = ["variant", "seed", "student_acc", "teacher_acc", "retention", "speedup", "student_latency_ms",
          "teacher_latency_ms", "student_params", "teacher_params", "steps", "train_seconds"]


def run_one(variant: str, seed: int, args) -> dict:
    from instructrec.cli import run_lightning

    out = Path(args.work_dir) / f"{variant.replace(' ', '_')}-seed{seed}"
    overrides = [f"--model.init_args.{key}={value}" for key, value in VARIANTS[variant].items()]
    argv = [
        "fit", "--config", str(ROOT / CONFIG),
        *overrides,
        "--model.init_args.teacher", args.teacher,
        "--data.init_args.teacher", args.teacher,
        "--seed_everything", str(seed),
        "--trainer.max_epochs", str(args.epochs),
        "--data.init_args.max_examples", f"{{train: {args.train_examples}}}",
        "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(out),
        "--data.init_args.cache_dir", str(Path(args.work_dir) / "cache"),
        "--test_after_fit", "true",
        *([f"--model.init_args.layer_map={args.layer_map}"] if args.layer_map else []),
        *([f"--trainer.limit_val_batches={args.limit_eval_batches}", f"--trainer.limit_test_batches={args.limit_eval_batches}"]
          if args.limit_eval_batches else []),
    ]
    started = time.perf_counter()
    cli = run_lightning(argv)
    seconds = time.perf_counter() - started
    report = cli.model.test_report
    return {
        "variant": variant,
        "seed": seed,
        "student_acc": report["sst2/acc"],
        "teacher_acc": report["teacher/sst2/acc"],
        "retention": report["retention"],
        "speedup": report["speedup"],
        "student_latency_ms": report["student_latency_ms"],
        "teacher_latency_ms": report["teacher_latency_ms"],
        "student_params": report["student_params"],
        "teacher_params": report["teacher_params"],
        "steps": cli.trainer.global_step,
        "train_seconds": round(seconds, 1),
    }


def mean_std(values, scale: float = 1.0, digits: int = 1) -> str:
    """``mean ± std`` over seeds; the mean alone for one seed (no spread to show)."""
    values = [scale * float(v) for v in values]
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def summarise(rows: list[dict]) -> str:
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["variant"], []).append(row)
    lines = [
        "| student (3 layers) | dev accuracy (%) | retention of teacher (%) | speed-up vs teacher | seeds | train time per run (s) |",
        "|---|---|---|---|---|---|",
    ]
    for variant, group in groups.items():
        lines.append(
            f"| {variant} | {mean_std([r['student_acc'] for r in group], 100)} "
            f"| {mean_std([r['retention'] for r in group], 100)} | {mean_std([r['speedup'] for r in group], digits=2)}x "
            f"| {len(group)} | {statistics.mean(float(r['train_seconds']) for r in group):.0f} |"
        )
    first = rows[0]
    lines += [
        "",
        f"Teacher (MiniLM-L6, 6 layers): {100 * float(first['teacher_acc']):.2f}% dev accuracy, "
        f"{int(first['teacher_params']):,} parameters; student: {int(first['student_params']):,} parameters "
        f"({int(first['student_params']) / int(first['teacher_params']):.2f}x). Latency is the mean forward pass per "
        "test batch of 32 (student and teacher on the same batches, in the same run, first batch left out).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="runs/distill/sst2_teacher_minilm6/checkpoints/best.ckpt")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train_examples", type=int, default=20000,
                        help="training sentences (a seeded subset; the teacher's 20,000 contain the smaller ones)")
    parser.add_argument("--layer_map", default=None,
                        help="hidden-state pairs [[student, teacher], ...]; default: the module's")
    parser.add_argument("--limit_eval_batches", type=int, default=None, help="for a quick check of the pipeline")
    parser.add_argument("--merge", nargs="+", default=None, metavar="CSV",
                        help="only combine the results.csv of runs made in parallel into --out")
    parser.add_argument("--work_dir", default="runs/experiments/distill_sst2")
    parser.add_argument("--out", default=str(HERE), help="folder for results.csv and results.md")
    args = parser.parse_args()
    csv_path, md_path = Path(args.out) / "results.csv", Path(args.out) / "results.md"
    if args.merge:
        rows = [row for path in args.merge for row in csv.DictReader(open(path, encoding="utf-8"))]
        rows.sort(key=lambda r: (list(VARIANTS).index(r["variant"]), int(r["seed"])))
        write(rows, csv_path, md_path)
        return
    rows: list[dict] = []
    for seed in args.seeds:  # seed-major: a stopped run still has every variant's first seeds
        for variant in args.variants:
            rows.append(run_one(variant, seed, args))
            write(rows, csv_path, md_path)
            print(summarise(rows), flush=True)


def write(rows: list[dict], csv_path: Path, md_path: Path) -> None:
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    md_path.write_text(summarise(rows), encoding="utf-8")


if __name__ == "__main__":
    main()
