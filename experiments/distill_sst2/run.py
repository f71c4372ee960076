"""DistilBERT's ablation on SST-2: a 3-layer student of the fine-tuned MiniLM-L6 teacher, trained
with the full loss and with one part removed at a time, over seeds. Writes results.csv (one row per
run) and results.md (mean ± std over seeds).

    python experiments/distill_sst2/run.py          # 4 variants x 3 seeds; see README.md for time
    python experiments/distill_sst2/run.py --smoke  # the same on a tiny teacher and student, in seconds

Needs the teacher checkpoint of ``configs/distill/sst2_teacher_minilm6.yaml`` (``--teacher``).
Each run is ``instructrec fit`` (LightningCLI in-process) on ``configs/distill/sst2_minilm6_to_3.yaml``
with the variant's overrides, then ``test`` on GLUE SST-2 dev, where student and teacher run on the
same batches (accuracy, latency, speed-up, retention: ``DistillationModule.test_report``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

ROOT = common.ROOT
HERE = Path(__file__).resolve().parent
CONFIG = "configs/distill/sst2_minilm6_to_3.yaml"
TEACHER_CONFIG = "configs/distill/sst2_teacher_minilm6.yaml"
# DistilBERT's full loss is soft targets + hard labels + hidden-state alignment; each variant
# removes one part, or starts the student from random weights instead of the teacher's layers.
VARIANTS = {
    "full": {"soft_weight": 0.5, "hard_weight": 0.5, "hidden_weight": 1.0},
    "no soft targets": {"soft_weight": 0.0, "hard_weight": 1.0, "hidden_weight": 1.0},
    "no hidden-state loss": {"soft_weight": 0.5, "hard_weight": 0.5, "hidden_weight": 0.0},
    "random init": {"soft_weight": 0.5, "hard_weight": 0.5, "hidden_weight": 1.0, "student_init": "random",
                    "student_num_layers": 3},
}
# Smoke mode's students: the tiny teacher has 2 layers, so one of them (or the first of tiny-bert's).
SMOKE_STUDENT = ["--model.init_args.student_layers=[0]", "--model.init_args.student_num_layers=1"]
FIELDS = ["variant", "seed", "student_acc", "teacher_acc", "retention", "speedup", "student_latency_ms",
          "teacher_latency_ms", "student_params", "teacher_params", "steps", "train_seconds"]


def run_one(variant: str, seed: int, args) -> list[dict]:
    out = Path(args.work_dir) / f"{variant.replace(' ', '_')}-seed{seed}"
    overrides = [f"--model.init_args.{key}={value}" for key, value in VARIANTS[variant].items()]
    examples = common.smoke_examples(("train", "val", "test")) if args.smoke else f"{{train: {args.train_examples}}}"
    cli, seconds = common.lightning(
        "fit", ROOT / CONFIG, out,
        *overrides,
        *(SMOKE_STUDENT if args.smoke else []),
        "--model.init_args.teacher", args.teacher,
        "--data.init_args.teacher", args.teacher,
        "--seed_everything", str(seed),
        "--trainer.max_epochs", str(args.epochs),
        "--data.init_args.max_examples", examples,
        "--test_after_fit", "true",
        *([f"--model.init_args.layer_map={args.layer_map}"] if args.layer_map else []),
        *([f"--trainer.limit_val_batches={args.limit_eval_batches}", f"--trainer.limit_test_batches={args.limit_eval_batches}"]
          if args.limit_eval_batches else []),
        cache_dir=Path(args.work_dir) / "cache", smoke=args.smoke,
    )
    report = cli.model.test_report
    return [{
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
    }]


def smoke_teacher(args) -> str:
    """Smoke mode's teacher: the teacher config fitted on the tiny backbone; its best checkpoint."""
    out = Path(args.work_dir) / "teacher"
    common.lightning("fit", common.run_config(ROOT / TEACHER_CONFIG, out), out,
                     "--data.init_args.max_examples", common.smoke_examples(("train", "val")),
                     cache_dir=Path(args.work_dir) / "cache", smoke=True)
    return str(out / "checkpoints" / "best.ckpt")


def summarise(rows: list[dict]) -> list[str]:
    """results.md: the table per variant (mean ± std over seeds), then the teacher and latency note."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["variant"], []).append(row)
    table = common.markdown_table(
        ["student (3 layers)", "dev accuracy (%)", "retention of teacher (%)", "speed-up vs teacher", "seeds",
         "train time per run (s)"],
        [[variant, common.mean_std([r["student_acc"] for r in group], 100), common.mean_std([r["retention"] for r in group], 100),
          f"{common.mean_std([r['speedup'] for r in group], digits=2)}x", len(group),
          f"{statistics.mean(float(r['train_seconds']) for r in group):.0f}"]
         for variant, group in groups.items()],
    )
    first = rows[0]
    note = (
        f"Teacher (MiniLM-L6, 6 layers): {100 * float(first['teacher_acc']):.2f}% dev accuracy, "
        f"{int(first['teacher_params']):,} parameters; student: {int(first['student_params']):,} parameters "
        f"({int(first['student_params']) / int(first['teacher_params']):.2f}x). Latency is the mean forward pass per "
        "test batch of 32 (student and teacher on the same batches, in the same run, first batch left out)."
    )
    return [table, note]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="runs/distill/sst2_teacher_minilm6/checkpoints/best.ckpt",
                        help="the teacher checkpoint (with --smoke: a tiny one trained first)")
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
    args = common.parse(parser, argv, HERE, work_dir="runs/experiments/distill_sst2")
    if args.merge:
        rows = [row for path in args.merge for row in common.read_csv(path)]
        rows.sort(key=lambda r: (list(VARIANTS).index(r["variant"]), int(r["seed"])))
        write(rows, args.out)
        return
    if args.smoke:
        args.teacher = smoke_teacher(args)
    common.over_seeds(args.seeds, args.variants, lambda variant, seed: run_one(variant, seed, args),
                      lambda rows: print(write(rows, args.out), flush=True))


def write(rows: list[dict], out: Path) -> str:
    """results.csv and results.md in ``out``; the Markdown."""
    common.write_csv(out / "results.csv", rows, FIELDS)
    return common.write_markdown(out / "results.md", *summarise(rows))


if __name__ == "__main__":
    main()
