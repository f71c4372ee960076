"""Training throughput near the machine: model-FLOPs utilisation (MFU) and padding, with and without
length-grouped batches (``InstructionDataModule(group_by_length=True)``).

    python experiments/benchmarks/training_throughput.py                       # MiniLM-L6, SST-2
    python experiments/benchmarks/training_throughput.py --backbone tiny-bert --steps 10 --rows 512

Data: ``--rows`` SST-2 training sentences (GLUE, ``$INSTRUCTREC_DATA/sst2_glue``) through the
``sst2`` template, max length 64, batch 32, as ``configs/distill/sst2_teacher_minilm6.yaml`` trains.

1. Padding: the share of padding tokens over one whole training pass, each way.
2. Training: ``MultiTaskModule`` under Lightning's Trainer on the first ``--steps`` batches of a
   pass (the first ``--warmup`` untimed), the same initial weights each way; rounds alternate which
   runs first, and the per-round ratio grouped / shuffled is the figure least moved by other load.
3. MFU: the model's training FLOPs per second over the fp32 matmul peak measured with torch in the
   same process (best of ``--rounds`` 2048 x 2048 products). Training FLOPs per token are
   ``6 N + 12 L d s`` (N non-embedding parameters, L layers, width d, s the sequence length; the
   second term is attention's scores and mixing, as in PaLM's appendix B): "model" counts the real
   tokens at their own lengths, "hardware" the padded batch the machine computes.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402,F401  (offline defaults, set before instructrec is imported)

import lightning as L  # noqa: E402
import torch  # noqa: E402

from multitask_throughput import run_trainer  # noqa: E402  (the Trainer over fixed batches, timed)

from instructrec.backbones import default_backbone  # noqa: E402
from instructrec.data import InstructionDataModule  # noqa: E402
from instructrec.models import MultiTaskModule  # noqa: E402
from instructrec.paths import data_root  # noqa: E402

WAYS = {"shuffled": False, "grouped by length": True}


def matmul_peak(rounds: int, n: int = 2048) -> float:
    """fp32 FLOP/s of the best of ``rounds`` ``n x n`` matrix products on this process's threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def training_flops(model: MultiTaskModule, batches: list[dict]) -> tuple[float, float]:
    """(model FLOPs: real tokens at their lengths, hardware FLOPs: the padded batches) of a training
    step over ``batches``, forward and backward: ``6 N + 12 L d s`` per token."""
    config = model.encoder.config
    layers, width = config.num_hidden_layers, config.hidden_size
    embeddings = sum(p.numel() for name, p in model.named_parameters() if "embeddings" in name)
    n = sum(p.numel() for p in model.parameters()) - embeddings
    real = padded = 0.0
    for batch in batches:
        lengths = batch["attention_mask"].sum(dim=1).tolist()
        rows, width_s = batch["attention_mask"].shape
        real += sum(s * (6 * n + 12 * layers * width * s) for s in lengths)
        padded += rows * width_s * (6 * n + 12 * layers * width * width_s)
    return real, padded


def padding_share(batches: list[dict]) -> float:
    masks = [batch["attention_mask"] for batch in batches]
    return 1 - sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=default_backbone())
    parser.add_argument("--rows", type=int, default=4000, help="SST-2 training sentences (a seeded subset)")
    parser.add_argument("--steps", type=int, default=40, help="training steps per run")
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    sst2 = data_root() / "sst2_glue" / "glue_train_part1.tsv"
    passes, firsts = {}, {}
    with tempfile.TemporaryDirectory() as cache:
        for way, grouped in WAYS.items():
            dm = InstructionDataModule(str(sst2), template="sst2", task_name="sst2", tokenizer=args.backbone,
                                       max_length=64, batch_size=32, val_fraction=0.0, cache_dir=cache,
                                       max_examples={"train": args.rows}, group_by_length=grouped)
            dm.setup("fit")
            passes[way] = list(dm.train_dataloader())
            firsts[way] = passes[way][: args.steps]
    torch.manual_seed(0)
    initial = MultiTaskModule(dm.tasks, backbone=args.backbone)
    peak = matmul_peak(args.rounds * 3)

    rates: dict[str, list[float]] = {way: [] for way in WAYS}
    for round_ in range(args.rounds):
        for way in WAYS if round_ % 2 == 0 else list(WAYS)[::-1]:
            L.seed_everything(round_, verbose=False)
            steps_per_second = run_trainer(copy.deepcopy(initial), firsts[way], args.warmup, None)
            rates[way].append(steps_per_second)
            print(f"round {round_}: {way:18s} {32 * steps_per_second:.1f} samples/s", flush=True)

    print(f"\nbackbone {args.backbone}; {args.rows} SST-2 sentences, batch 32, max length 64; {args.steps} steps per run "
          f"({args.warmup} untimed), {args.rounds} rounds, {torch.get_num_threads()} threads; "
          f"fp32 matmul peak {peak / 1e9:.1f} GFLOP/s\n")
    print("| batches | padding (whole pass) | padding (timed steps) | samples/s (median) | model MFU | hardware FLOPs / peak |")
    print("|---|---:|---:|---:|---:|---:|")
    for way in WAYS:
        seconds_per_step = 1 / statistics.median(rates[way])
        timed = firsts[way][args.warmup:]
        real, padded = training_flops(initial, timed)
        seconds = seconds_per_step * len(timed)
        print(f"| {way} | {padding_share(passes[way]):.1%} | {padding_share(timed):.1%} | "
              f"{32 / seconds_per_step:.1f} | {real / seconds / peak:.1%} | {padded / seconds / peak:.1%} |")
    paired = [g / s for g, s in zip(rates["grouped by length"], rates["shuffled"])]
    shuffled_padding = padding_share(passes["shuffled"])
    cut = f"{1 - padding_share(passes['grouped by length']) / shuffled_padding:.0%}" if shuffled_padding else "n/a (no padding)"
    print(f"\npadding cut by grouping: {cut} (goal >= 50%); samples/s grouped / shuffled per round: "
          f"{', '.join(f'{r:.2f}' for r in paired)} (median {statistics.median(paired):.2f}x)")


if __name__ == "__main__":
    main()
