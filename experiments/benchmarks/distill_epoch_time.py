"""Epoch time of the 3-layer SST-2 student: plain fine-tuning vs distillation from cached teacher
logits vs distillation with the teacher run online, interleaved in one process. Prints seconds per
epoch and the ratios to plain fine-tuning (goal: cached <= 1.15x).

    python experiments/benchmarks/distill_epoch_time.py --teacher runs/distill/sst2_teacher_minilm6/checkpoints/best.ckpt

The three runs train the same student (teacher layers 0, 2, 4, the same initial weights) on the same
``--examples`` SST-2 training sentences (batch 32, max length 64), one epoch each, through
Lightning's Trainer:

* plain: hard labels only (``soft_weight: 0``): the teacher is never run;
* cached: soft + hard from the logits ``cache-teacher`` stored (computed once, before timing);
* online: soft + hard with the teacher run on every batch (no cache in the batches).

Rounds alternate the order of the runs; the per-round ratios are the figures least moved by other
load on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402,F401  (offline defaults, set before instructrec is imported)

import lightning as L  # noqa: E402
import torch  # noqa: E402

from instructrec.data import InstructionDataModule  # noqa: E402
from instructrec.distill import DistillationModule, TeacherLogitsDataModule  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MODES = {"plain": (0.0, 1.0), "cached": (0.5, 0.5), "online": (0.5, 0.5)}  # soft, hard weights


def data(mode: str, args) -> InstructionDataModule:
    options = dict(
        train=f"{args.data}/sst2_glue/glue_train_part1.tsv", template="sst2", task_name="sst2",
        tokenizer="minilm-l6", max_length=64, batch_size=32, max_examples={"train": args.examples},
        cache_dir=args.cache_dir, val_fraction=0.0,
    )
    if mode == "cached":
        return TeacherLogitsDataModule(teacher=args.teacher, **options)
    return InstructionDataModule(**options)


def epoch_seconds(mode: str, args) -> float:
    datamodule = data(mode, args)
    datamodule.prepare_data()  # encoding and teacher caching are not what is timed
    datamodule.setup("fit")
    soft, hard = MODES[mode]
    torch.manual_seed(0)
    model = DistillationModule(args.teacher, tasks=datamodule.tasks, backbone="minilm-l6", student_layers=[0, 2, 4],
                               soft_weight=soft, hard_weight=hard)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0)
    loader = datamodule.train_dataloader()
    started = time.perf_counter()
    trainer.fit(model, train_dataloaders=loader)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="runs/distill/sst2_teacher_minilm6/checkpoints/best.ckpt")
    parser.add_argument("--data", default=os.environ.get("INSTRUCTREC_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--examples", type=int, default=3200, help="training sentences per epoch (100 batches of 32)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cache_dir", default=".cache/instructrec")
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}; {args.examples} sentences, batch 32; teacher {args.teacher}")
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for round_ in range(args.rounds):
        order = list(MODES) if round_ % 2 == 0 else list(reversed(MODES))
        for mode in order:
            times[mode].append(epoch_seconds(mode, args))
        print(f"round {round_ + 1}: " + ", ".join(f"{m} {times[m][-1]:.1f} s" for m in MODES), flush=True)
    for mode in ("cached", "online"):
        ratios = [t / p for t, p in zip(times[mode], times["plain"])]
        print(f"{mode} / plain epoch time: {statistics.median(ratios):.3f}x (per round: {', '.join(f'{r:.3f}' for r in ratios)})")
    print("seconds per epoch (median): " + ", ".join(f"{m} {statistics.median(t):.1f}" for m, t in times.items()))


if __name__ == "__main__":
    main()
