"""SQuAD v1.1 reader: MiniLM-L6 trained on dev part 1, scored on part 2 (EM/F1 with every reference
answer, as evaluate-v1.1.py scores them). Writes results.csv beside this file (a row per recipe).

    python experiments/qa_squad/run.py --recipes run_qa           # the Hugging Face run_qa budget
    python experiments/qa_squad/run.py --recipes warmup           # a better recipe at that budget
    python experiments/qa_squad/run.py --recipes longer           # ... and a second epoch
    python experiments/qa_squad/run.py --smoke                    # the pipeline on the tiny backbone, in seconds

Each recipe is ``instructrec fit --config configs/qa/squad_minilm.yaml`` plus its overrides
(LightningCLI in-process), with Lightning's ``Timer`` callback so training and validation time are
reported apart. After fit, ``instructrec predict`` writes predictions.json and the official metric
code scores it against the part-2 file: the same numbers validation logged (checked here).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

ROOT = common.ROOT
HERE = Path(__file__).resolve().parent
CONFIG = ROOT / "configs" / "qa" / "squad_minilm.yaml"
PART2 = "${INSTRUCTREC_DATA}/squad_v1.1_dev/dev-v1.1.part2.json"
RECIPES = {
    # Hugging Face run_qa: max length 256, stride 128, batch 16, lr 5e-5, 1 epoch, no warm-up (the config).
    "run_qa": [],
    # Smaller models like a larger learning rate with warm-up: the same one epoch (run_qa's budget).
    "warmup": ["--model.init_args.learning_rate=1e-4", "--model.init_args.warmup_ratio=0.1",
               "--model.init_args.weight_decay=0.01"],
    # The same, and a second epoch over the 5.4k questions.
    "longer": ["--model.init_args.learning_rate=1e-4", "--model.init_args.warmup_ratio=0.1",
               "--model.init_args.weight_decay=0.01", "--trainer.max_epochs=2"],
}
# Smoke mode: a handful of questions, in windows that the tiny backbone's character-level tokens fill.
SMOKE_DATA = ["--data.init_args.doc_stride=32", f"--data.init_args.max_examples={common.smoke_examples()}"]
FIELDS = ["recipe", "epochs", "steps", "exact_match", "f1", "official_exact_match", "official_f1",
          "train_minutes", "validate_minutes", "threads"]


def run(recipe: str, args) -> dict:
    import torch

    from instructrec.paths import resolve_path
    from instructrec.qa.squad_metrics import evaluate

    out = Path(args.work_dir) / recipe
    config = common.run_config(CONFIG, out, timer=True)
    overrides = [*RECIPES[recipe], *(SMOKE_DATA if args.smoke else [])]
    lightning = dict(cache_dir=Path(args.work_dir) / "cache", smoke=args.smoke)
    cli, _ = common.lightning("fit", config, out, *overrides, **lightning)
    timer = next(c for c in cli.trainer.callbacks if type(c).__name__ == "Timer")
    metrics = common.logged(cli)
    best = cli.trainer.checkpoint_callback.best_model_path
    common.lightning("predict", config, out, *overrides, f"--ckpt_path={best}", f"--data.init_args.predict={PART2}", **lightning)
    answers = json.loads((out / "predictions" / "predictions.json").read_text(encoding="utf-8"))
    reference = json.loads(resolve_path(PART2).read_text(encoding="utf-8"))["data"]
    if args.smoke:  # score the questions asked (the official script counts the others as wrong)
        reference = [{**article, "paragraphs": [{**p, "qas": [q for q in p["qas"] if q["id"] in answers]} for p in article["paragraphs"]]}
                     for article in reference]
    official = evaluate(reference, answers)
    return {
        "recipe": recipe,
        "epochs": cli.trainer.current_epoch,
        "steps": cli.trainer.global_step,
        "exact_match": round(metrics["val/exact_match"], 2),
        "f1": round(metrics["val/f1"], 2),
        "official_exact_match": round(official["exact_match"], 2),
        "official_f1": round(official["f1"], 2),
        # Timer's "train" spans the whole fit loop, the validation inside it included.
        "train_minutes": round((timer.time_elapsed("train") - timer.time_elapsed("validate")) / 60, 1),
        "validate_minutes": round(timer.time_elapsed("validate") / 60, 1),
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    args = common.parse(parser, argv, HERE, work_dir="runs/experiments/qa_squad")
    path = args.out / "results.csv"
    rows = common.read_csv(path)
    for recipe in args.recipes:
        started = time.perf_counter()
        row = run(recipe, args)
        print(json.dumps({**row, "wall_minutes": round((time.perf_counter() - started) / 60, 1)}), flush=True)
        rows = [r for r in rows if r["recipe"] != recipe] + [row]
        common.write_csv(path, rows, FIELDS)


if __name__ == "__main__":
    main()
