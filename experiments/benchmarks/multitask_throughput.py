"""Training throughput of ``MultiTaskModule`` under Lightning's Trainer vs a hand-written PyTorch
loop: the same model (same initial weights), the same precomputed two-task batches, the same
optimiser and schedule, interleaved rounds in one process. Prints steps/s and the ratio
Trainer / hand loop (goal: >= 0.95).

    python experiments/benchmarks/multitask_throughput.py                  # MiniLM-L6 when installed
    python experiments/benchmarks/multitask_throughput.py --backbone tiny-bert --steps 40

Data: the quickstart's packaged reviews, as two sources (two heads), proportional sampling,
batch 16, max_length 64. The first ``--warmup`` steps of every run are not timed. Rounds alternate which runs first;
the per-round (paired) ratio is the figure least moved by other load on the machine.
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
from torch.optim import AdamW  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from transformers import get_linear_schedule_with_warmup  # noqa: E402

from instructrec.backbones import default_backbone  # noqa: E402
from instructrec.data.multitask import MultiTaskDataModule  # noqa: E402
from instructrec.models import MultiTaskModule  # noqa: E402
from instructrec.models.optim import NO_DECAY  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "instructrec" / "resources" / "quickstart" / "train.jsonl"


class Timer(L.Callback):
    """Wall time from the start of step ``warmup`` to the end of the last step."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.end = time.perf_counter()


def run_trainer(model, batches, warmup, config) -> float:
    timer = Timer(warmup)
    trainer = L.Trainer(
        max_steps=len(batches), accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
        callbacks=[timer], default_root_dir=tempfile.mkdtemp(),
    )
    loader = DataLoader(batches, batch_size=None, shuffle=False)
    trainer.fit(model, train_dataloaders=loader)
    return (len(batches) - warmup) / (timer.end - timer.start)


def run_hand_loop(model, batches, warmup, config) -> float:
    """The same update as the Trainer's: head loss, loss weighting, AdamW with warm-up, set_to_none."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if not n.endswith(NO_DECAY)], "weight_decay": config["weight_decay"]},
        {"params": [p for n, p in named if n.endswith(NO_DECAY)], "weight_decay": 0.0},
    ]
    optimizer = AdamW(groups, lr=config["learning_rate"])
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config["warmup_ratio"] * len(batches)), len(batches))
    model.train()
    for step, batch in enumerate(batches):
        if step == warmup:
            start = time.perf_counter()
        name = model.task_of(batch)
        loss = model.heads[name].loss(model._outputs(batch, name), batch)
        loss = model.loss_weighting(loss, model.task_names.index(name))
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return (len(batches) - warmup) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=default_backbone())
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as cache:
        sources = {name: {"train": str(QUICKSTART), "val_fraction": 0.0} for name in ("sentiment_a", "sentiment_b")}
        dm = MultiTaskDataModule(sources, tokenizer=args.backbone, epoch_length=args.steps, max_length=64,
                                 batch_size=16, cache_dir=cache)
        dm.setup("fit")
        batches = list(dm.train_batches())
    initial = MultiTaskModule(dm.tasks, backbone=args.backbone)
    config = dict(initial.hparams)
    print(f"backbone {args.backbone}, {len(batches)} steps/run ({args.warmup} untimed), "
          f"tasks {[b['task'] for b in batches[:8]]}..., threads {torch.get_num_threads()}")

    rates = {"trainer": [], "hand": []}
    for round_ in range(args.rounds):
        order = (("trainer", run_trainer), ("hand", run_hand_loop))
        for name, run in order if round_ % 2 == 0 else order[::-1]:
            model = copy.deepcopy(initial)
            L.seed_everything(round_, verbose=False)
            rates[name].append(run(model, batches, args.warmup, config))
            print(f"round {round_}: {name:7s} {rates[name][-1]:.3f} steps/s", flush=True)
    trainer, hand = statistics.median(rates["trainer"]), statistics.median(rates["hand"])
    # Each round runs the two back to back, so its ratio is the one least disturbed by load drift.
    paired = [t / h for t, h in zip(rates["trainer"], rates["hand"])]
    print(f"median steps/s: Trainer {trainer:.3f}, hand loop {hand:.3f}; ratio of medians = {trainer / hand:.3f}")
    print(f"per-round ratios Trainer/hand: {', '.join(f'{r:.3f}' for r in paired)}; median {statistics.median(paired):.3f}")


if __name__ == "__main__":
    main()
