"""Caching a teacher's logits: the rows read in length order (what ``run_teacher`` does) vs in file
order (what it did before), interleaved in one process. Prints seconds, the padding share and the
speed-up, and checks that both give the same logits.

    python experiments/benchmarks/teacher_cache.py --teacher runs/distill/sst2_teacher_minilm6/checkpoints/best.ckpt

The rows are ``--examples`` SST-2 training sentences rendered by the ``sst2`` template and encoded
for MiniLM-L6 (max length 64), as the distillation configs read them; batches of 64, the
default ``teacher_batch_size``. Rounds alternate the order of the two passes.
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

import torch  # noqa: E402

from instructrec.data import InstructionDataModule  # noqa: E402
from instructrec.distill import teacher_cache  # noqa: E402
from instructrec.distill.teacher import load_teacher  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BATCH = 64


@torch.no_grad()
def file_order_logits(teacher, dataset, task: str) -> list:
    """The former pass: batches of consecutive rows, each padded to its longest row."""
    source = dataset.with_format(None, columns=[c for c in teacher_cache.INPUT_COLUMNS if c in dataset.column_names])
    out = []
    for start in range(0, len(source), BATCH):
        batch = teacher_cache.pad_inputs(source[start : start + BATCH])
        out.extend(teacher(batch, task).logits.float().half().numpy())
    return out


def padding_share(lengths: list[int], batches: list[list[int]]) -> float:
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1 - sum(lengths) / padded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="runs/distill/sst2_teacher_minilm6/checkpoints/best.ckpt")
    parser.add_argument("--data", default=os.environ.get("INSTRUCTREC_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cache_dir", default=".cache/instructrec")
    args = parser.parse_args()
    data = InstructionDataModule(
        train=f"{args.data}/sst2_glue/glue_train_part1.tsv", template="sst2", task_name="sst2", tokenizer="minilm-l6",
        max_length=64, max_examples={"train": args.examples}, cache_dir=args.cache_dir, val_fraction=0.0,
    )
    dataset, _ = data.encoded("train")
    teacher = load_teacher(args.teacher, tasks=data.tasks)
    lengths = [len(ids) for ids in dataset["input_ids"]]
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    shares = {
        "file order": padding_share(lengths, [list(range(s, min(s + BATCH, len(lengths)))) for s in range(0, len(lengths), BATCH)]),
        "length order": padding_share(lengths, [order[s : s + BATCH] for s in range(0, len(order), BATCH)]),
    }
    print(f"torch threads: {torch.get_num_threads()}; {len(lengths)} rows, batch {BATCH}, teacher {args.teacher}")
    passes = {
        "file order": lambda: file_order_logits(teacher, dataset, data.name),
        "length order": lambda: teacher_cache.run_teacher(teacher, dataset, data.name, batch_size=BATCH)["teacher_logits"],
    }
    times: dict[str, list[float]] = {name: [] for name in passes}
    results = {}
    for round_ in range(args.rounds):
        for name in (list(passes) if round_ % 2 == 0 else list(reversed(passes))):
            started = time.perf_counter()
            results[name] = passes[name]()
            times[name].append(time.perf_counter() - started)
        print(f"round {round_ + 1}: " + ", ".join(f"{n} {times[n][-1]:.1f} s" for n in passes), flush=True)
    largest = max(float(abs(torch.as_tensor(a).float() - torch.as_tensor(b).float()).max())
                  for a, b in zip(results["file order"], results["length order"]))
    same_label = sum(int(torch.as_tensor(a).argmax()) == int(torch.as_tensor(b).argmax())
                     for a, b in zip(results["file order"], results["length order"]))
    for name in passes:
        print(f"{name}: {statistics.median(times[name]):.1f} s (median), padding {shares[name]:.1%} of the tokens read")
    speedups = [f / s for f, s in zip(times["file order"], times["length order"])]
    print(f"length order speed-up: {statistics.median(speedups):.2f}x (per round: {', '.join(f'{x:.2f}' for x in speedups)})")
    print(f"same logits: largest difference {largest:.2e} (float16), same argmax on {same_label}/{len(lengths)} rows")


if __name__ == "__main__":
    main()
