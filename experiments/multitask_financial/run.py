"""Multi-task (financial sentiment + news topic, one MiniLM-L6 encoder) vs the two single-task
models, over seeds. Writes results.csv (one row per run and task) and results.md (mean ± std).

    python experiments/multitask_financial/run.py            # 3 seeds, ~35 min on 2 CPU cores
    python experiments/multitask_financial/run.py --smoke    # the pipeline on the tiny backbone, in seconds

Runs are sequential in this one process (LightningCLI in-process, the same configs as the CLI).
See README.md beside this file for the question, setup and discussion.
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
RUNS = {
    "multi-task": "configs/multitask/financial.yaml",
    "single: sentiment": "configs/multitask/financial_sentiment_single.yaml",
    "single: topic": "configs/multitask/financial_topic_single.yaml",
}
FIELDS = ["model", "seed", "task", "acc", "macro_f1", "params_total", "params_encoder", "steps", "train_seconds"]


def run_one(model: str, seed: int, args) -> list[dict]:
    from instructrec.models.evaluation import count_parameters

    out = Path(args.work_dir) / f"{model.replace(': ', '-').replace(' ', '_')}-seed{seed}"
    cli, seconds = common.lightning(
        "fit", sized_config(RUNS[model], args), out,
        "--seed_everything", str(seed),
        "--data.init_args.seed", str(seed),
        "--model.init_args.backbone", args.backbone,
        "--trainer.max_epochs", str(args.epochs),
        "--test_after_fit", "true",
        cache_dir=Path(args.work_dir) / "cache", smoke=args.smoke,
    )
    metrics = common.logged(cli, "test/")
    return [
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
        for task in cli.model.task_names
    ]


def sized_config(config: str, args) -> Path:
    """The shipped config with the AG News subsample sizes of this run (``--topic_sizes``); with
    ``--smoke``, every source cut to a handful of examples."""
    import yaml

    data = yaml.safe_load((ROOT / config).read_text(encoding="utf-8"))
    sources = data["data"]["init_args"]["sources"]
    if "topic" in sources:
        sources["topic"]["max_examples"] = dict(zip(("train", "val", "test"), args.topic_sizes))
    if args.smoke:
        for source in sources.values():
            source["max_examples"] = {split: common.SMOKE_EXAMPLES[split] for split in ("train", "val", "test")}
    path = Path(args.work_dir) / "configs" / Path(config).name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def summarise(rows: list[dict]) -> list[str]:
    """results.md: per model and task, then per system (the mean over both tasks), then wall time."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["task"]), []).append(row)
    per_task = common.markdown_table(
        ["model", "task", "accuracy (%)", "macro-F1 (%)", "seeds", "parameters (encoders + heads)"],
        [[model, task, common.mean_std((r["acc"] for r in group), 100), common.mean_std((r["macro_f1"] for r in group), 100),
          len(group), f"{int(group[0]['params_total']):,}"] for (model, task), group in groups.items()],
    )
    # Average over the two tasks, per seed, then mean ± std over seeds.
    systems = []
    seeds = sorted({int(r["seed"]) for r in rows})
    for system, models in (("multi-task (one encoder)", ["multi-task"]), ("two single-task models", ["single: sentiment", "single: topic"])):
        per_seed = {s: [r for r in rows if r["model"] in models and int(r["seed"]) == s] for s in seeds}
        complete = {s: g for s, g in per_seed.items() if len(g) == 2}
        if not complete:
            continue
        acc = [statistics.mean(float(r["acc"]) for r in g) for g in complete.values()]
        f1 = [statistics.mean(float(r["macro_f1"]) for r in g) for g in complete.values()]
        params = sum({r["model"]: int(r["params_total"]) for g in complete.values() for r in g}.values())
        systems.append([system, common.mean_std(acc, 100), common.mean_std(f1, 100), f"{params:,}"])
    per_system = common.markdown_table(
        ["system", "mean accuracy over tasks (%)", "mean macro-F1 over tasks (%)", "parameters to serve both tasks"], systems
    )
    times: dict[str, dict] = {}
    for row in rows:
        times.setdefault(row["model"], {})[row["seed"]] = float(row["train_seconds"])
    wall = "Wall time per run (fit + test, s): " + ", ".join(f"{m}: {statistics.mean(t.values()):.0f}" for m, t in times.items())
    return [per_task, per_system, wall]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--backbone", default="minilm-l6")
    parser.add_argument("--topic_sizes", type=int, nargs=3, default=[3000, 500, 1000], metavar=("TRAIN", "VAL", "TEST"),
                        help="AG News examples per split (the config's sizes by default)")
    args = common.parse(parser, argv, HERE, work_dir=str(ROOT / "runs" / "experiment_multitask_financial"))
    common.over_seeds(args.seeds, RUNS, lambda model, seed: run_one(model, seed, args), lambda rows: write(rows, args.out))


def write(rows: list[dict], out: Path) -> None:
    """results.csv and results.md in ``out`` (rewritten after every run: partial results survive)."""
    common.write_csv(out / "results.csv", rows, FIELDS)
    common.write_markdown(out / "results.md", *summarise(rows))


if __name__ == "__main__":
    main()
