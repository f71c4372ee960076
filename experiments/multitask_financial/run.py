"""Multi-task (financial sentiment + news topic, one MiniLM-L6 encoder) vs the two single-task
models, over seeds. Writes results.csv (one row per run and task) and results.md (mean ± std).

    python experiments/multitask_financial/run.py            # 3 seeds, ~35 min on 2 CPU cores

Runs are sequential in this one process (LightningCLI in-process, the same configs as the CLI).
See README.md beside this file for the question, setup and discussion.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
RUNS = {
    "multi-task": "configs/multitask/financial.yaml",
    "single: sentiment": "configs/multitask/financial_sentiment_single.yaml",
    "single: topic": "configs/multitask/financial_topic_single.yaml",
}
FIELDS = ["model", "seed", "task", "acc", "macro_f1", "params_total", "params_encoder", "steps", "train_seconds"]


def run_one(model: str, config: str, seed: int, args) -> list[dict]:
    from instructrec.cli import run_lightning
    from instructrec.models.evaluation import count_parameters

    out = Path(args.work_dir) / f"{model.replace(': ', '-').replace(' ', '_')}-seed{seed}"
    argv = [
        "fit", "--config", str(sized_config(config, args)),
        "--seed_everything", str(seed),
        "--data.init_args.seed", str(seed),
        "--model.init_args.backbone", args.backbone,
        "--trainer.max_epochs", str(args.epochs),
        "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(out),
        "--data.init_args.cache_dir", str(Path(args.work_dir) / "cache"),
        "--test_after_fit", "true",
    ]
    started = time.perf_counter()
    cli = run_lightning(argv)
    seconds = time.perf_counter() - started
    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith("test/")}
    rows = []
    for task in cli.model.task_names:
        rows.append(
            {
                "model": model,
                "seed": seed,
                "task": task,
                "acc": metrics[f"test/{task}/acc"],
                "macro_f1": metrics[f"test/{task}/f1"],
                "params_total": count_parameters(cli.model),
                "params_encoder": count_parameters(cli.model.encoder),
                "steps": cli.trainer.global_step,
                "train_seconds": round(seconds, 1),
            }
        )
    return rows


def sized_config(config: str, args) -> Path:
    """The shipped config with the AG News subsample sizes of this run (``--topic_sizes``)."""
    import yaml

    data = yaml.safe_load((ROOT / config).read_text(encoding="utf-8"))
    topic = data["data"]["init_args"]["sources"].get("topic")
    if topic is not None:
        topic["max_examples"] = dict(zip(("train", "val", "test"), args.topic_sizes))
    path = Path(args.work_dir) / "configs" / Path(config).name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def summarise(rows: list[dict]) -> str:
    def mean_std(values):
        values = [float(v) for v in values]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"

    lines = [
        "| model | task | accuracy (%) | macro-F1 (%) | seeds | parameters (encoders + heads) |",
        "|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["task"]), []).append(row)
    for (model, task), group in groups.items():
        params = int(group[0]["params_total"])
        lines.append(
            f"| {model} | {task} | {mean_std(r['acc'] for r in group)} | {mean_std(r['macro_f1'] for r in group)} "
            f"| {len(group)} | {params:,} |"
        )
    # Average over the two tasks, per seed, then mean ± std over seeds.
    lines += ["", "| system | mean accuracy over tasks (%) | mean macro-F1 over tasks (%) | parameters to serve both tasks |", "|---|---|---|---|"]
    seeds = sorted({int(r["seed"]) for r in rows})
    for system, models in (("multi-task (one encoder)", ["multi-task"]), ("two single-task models", ["single: sentiment", "single: topic"])):
        per_seed = {s: [r for r in rows if r["model"] in models and int(r["seed"]) == s] for s in seeds}
        complete = {s: g for s, g in per_seed.items() if len(g) == 2}
        if not complete:
            continue
        acc = [statistics.mean(float(r["acc"]) for r in g) for g in complete.values()]
        f1 = [statistics.mean(float(r["macro_f1"]) for r in g) for g in complete.values()]
        params = sum({r["model"]: int(r["params_total"]) for g in complete.values() for r in g}.values())
        lines.append(f"| {system} | {mean_std(acc)} | {mean_std(f1)} | {params:,} |")
    times = {}
    for row in rows:
        times.setdefault(row["model"], {})[row["seed"]] = float(row["train_seconds"])
    lines += ["", "Wall time per run (fit + test, s): " + ", ".join(
        f"{m}: {statistics.mean(t.values()):.0f}" for m, t in times.items())]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--backbone", default="minilm-l6")
    parser.add_argument("--topic_sizes", type=int, nargs=3, default=[3000, 500, 1000], metavar=("TRAIN", "VAL", "TEST"),
                        help="AG News examples per split (the config's sizes by default)")
    parser.add_argument("--work_dir", default=str(ROOT / "runs" / "experiment_multitask_financial"))
    parser.add_argument("--out", default=str(HERE))
    args = parser.parse_args()

    csv_path = Path(args.out) / "results.csv"
    rows: list[dict] = []
    for seed in args.seeds:
        for model, config in RUNS.items():
            rows += run_one(model, config, seed, args)
            with csv_path.open("w", newline="") as handle:  # rewritten after every run: partial results survive
                writer = csv.DictWriter(handle, FIELDS)
                writer.writeheader()
                writer.writerows(rows)
            (Path(args.out) / "results.md").write_text(summarise(rows), encoding="utf-8")
            print(f"[experiment] done: {model} seed {seed}", flush=True)


if __name__ == "__main__":
    main()
