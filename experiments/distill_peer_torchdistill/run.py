"""Our distillation beside torchdistill's (issue 18, item 1c): the same teacher, student, data, loss
and budget; test accuracy and training-epoch time of each, 3 seeds, interleaved in one process.

    python experiments/distill_peer_torchdistill/run.py --teacher runs/distill/sst2_teacher_minilm6/checkpoints/best.ckpt

torchdistill 1.1.5 imports torchvision, whose PyPI wheels are CUDA builds that do not load beside the
CPU torch our set-up installs; the README beside this file makes the environment both sides run in.

Each seed trains, from the same initial weights on the same batches in the same order:

* ``ours (cached)``: ``DistillationModule`` through Lightning's Trainer on ``TeacherLogitsDataModule``
  batches (the teacher's logits computed once beforehand, not timed): our default;
* ``ours (online)``: the same on plain ``InstructionDataModule`` batches, the teacher run on each;
* ``torchdistill``: torchdistill's ``DistillationBox`` (``torchdistill.yaml``, filled from the
  module's hyperparameters) driving our student and teacher modules over the same batches, its
  training loop as in its examples. 1.1.5 has no teacher-output cache, so the teacher runs online.

The student is the teacher's embeddings, layers 0, 2, 4 and head (the DistilBERT initialisation).
Accuracy: one evaluation function, the student's argmax over the test split. Epoch time: the
training epoch only (Lightning's ``Timer`` "train" stage; the loop around torchdistill's box).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402  (offline defaults, set before instructrec is imported)

import lightning as L  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from lightning.pytorch.callbacks import Timer  # noqa: E402

from instructrec.data import InstructionDataModule  # noqa: E402
from instructrec.distill import DistillationModule, TeacherLogitsDataModule  # noqa: E402
from instructrec.models import MultiTaskModule  # noqa: E402
from instructrec.models.optim import decay_groups  # noqa: E402

HERE = Path(__file__).resolve().parent
TASK = "sst2"
ENGINES = ("ours (cached)", "ours (online)", "torchdistill")
# max_weight_difference: the largest |weight difference| from the same seed's ours (online) student.
FIELDS = ["engine", "seed", "accuracy", "epoch_seconds", "steps", "max_weight_difference"]


def datamodule(args, seed: int, cached: bool) -> InstructionDataModule:
    """The SST-2 instructions both sides train on: ``--examples`` training sentences (the subset
    follows the seed), GLUE dev as the test split; with ``cached`` the batches carry teacher logits."""
    options = dict(
        train=f"{args.data}/sst2_glue/glue_train_part1.tsv", test=f"{args.data}/sst2_glue/glue_dev.tsv",
        template=TASK, task_name=TASK, tokenizer=args.backbone, max_length=64, batch_size=32,
        max_examples={"train": args.examples, "test": args.test_examples}, val_fraction=0.0, seed=seed,
        cache_dir=str(args.work_dir / "cache"),
    )
    module = TeacherLogitsDataModule(teacher=str(args.teacher), **options) if cached else InstructionDataModule(**options)
    module.prepare_data()  # encoding and teacher caching are not what is timed
    module.setup("fit")
    module.setup("test")
    return module


def distillation_module(args, data: InstructionDataModule) -> DistillationModule:
    """The teacher and a fresh student, the same weights for every engine (no random init)."""
    return DistillationModule(
        str(args.teacher), tasks=data.tasks, backbone=args.backbone, student_init="teacher_layers",
        student_layers=args.student_layers, soft_weight=0.5, hard_weight=0.5, temperature=2.0,
        learning_rate=1e-4, weight_decay=0.01, warmup_ratio=0.1,
    )


def torchdistill_config(spec: dict, module: DistillationModule, steps: int) -> dict:
    """torchdistill's ``train`` config: ``spec`` with the module's recipe for an epoch of ``steps``."""
    config = copy.deepcopy(spec["train"])
    hparams = module.hparams
    config["optimizer"]["kwargs"].update(lr=hparams.learning_rate, weight_decay=hparams.weight_decay)
    config["scheduler"]["kwargs"].update(num_warmup_steps=int(hparams.warmup_ratio * steps), num_training_steps=steps)
    kd = config["criterion"]["kwargs"]["sub_terms"]["kd"]["criterion"]["kwargs"]
    kd.update(temperature=float(hparams.temperature), alpha=float(hparams.hard_weight), beta=float(hparams.soft_weight))
    return config


def train_ours(args, seed: int, cached: bool) -> tuple[torch.nn.Module, float, int]:
    data = datamodule(args, seed, cached)
    module = distillation_module(args, data)
    timer = Timer()
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0, callbacks=[timer])
    L.seed_everything(seed, verbose=False)
    trainer.fit(module, train_dataloaders=data.train_dataloader())
    return module.student, timer.time_elapsed("train"), trainer.global_step


_registered = False


def register_with_torchdistill() -> None:
    """Our forward call and optimiser under torchdistill's registries (once per process)."""
    global _registered
    if _registered:
        return
    from torchdistill.core.interfaces.registry import register_forward_proc_func
    from torchdistill.optim.registry import register_optimizer, register_scheduler
    from transformers import get_linear_schedule_with_warmup

    def instructrec_logits(model, sample_batch, targets=None, supp_dict=None):
        return model(sample_batch, TASK).logits

    def instructrec_adamw(module, lr, weight_decay):
        return torch.optim.AdamW(decay_groups(module, weight_decay), lr=lr)

    register_forward_proc_func(instructrec_logits)
    register_optimizer(instructrec_adamw)
    register_scheduler(get_linear_schedule_with_warmup)
    _registered = True


def train_torchdistill(args, seed: int) -> tuple[torch.nn.Module, float, int]:
    from torchdistill.core.distillation import get_distillation_box

    register_with_torchdistill()
    data = datamodule(args, seed, cached=False)
    module = distillation_module(args, data)
    loader = data.train_dataloader()
    spec = yaml.safe_load((HERE / "torchdistill.yaml").read_text(encoding="utf-8"))
    config = torchdistill_config(spec, module, len(loader))
    box = get_distillation_box(module.teacher, module.student, {}, config, torch.device("cpu"), None, False, 1, None)
    check_same_loss(box, module, next(iter(data.test_dataloader())))
    # Seeded last, as ours is just before `fit`: the shuffle order and dropout draw the same numbers.
    L.seed_everything(seed, verbose=False)
    steps = 0
    started = time.perf_counter()
    box.pre_epoch_process(epoch=0)
    for batch in loader:
        loss = box.forward_process(batch, targets=batch["labels"], supp_dict=None)
        box.post_forward_process(loss=loss)
        steps += 1
    box.post_epoch_process()
    return module.student, time.perf_counter() - started, steps


def max_weight_difference(first: torch.nn.Module, second: torch.nn.Module) -> float:
    """The largest absolute difference between two students' trained weights."""
    theirs = second.state_dict()
    return max(float((value - theirs[name]).abs().max()) for name, value in first.state_dict().items())


@torch.no_grad()
def check_same_loss(box, module: DistillationModule, batch: dict) -> None:
    """torchdistill's loss equals ours on ``batch`` (dropout off), or the comparison is void."""
    module.student.eval()
    theirs = box.forward_process(batch, targets=batch["labels"], supp_dict=None)
    weights, temperature = module.current_weights()
    parts = module.losses(batch, module.student(batch, TASK), module.teacher(batch, TASK), weights, temperature)
    ours = sum(weights[name] * value for name, value in parts.items())
    if not torch.allclose(theirs, ours, rtol=1e-5, atol=1e-6):
        raise RuntimeError(f"torchdistill's loss {float(theirs):.6f} differs from ours {float(ours):.6f} on the first batch")
    print(f"first batch, dropout off: torchdistill's loss {float(theirs):.6f}, ours {float(ours):.6f}", flush=True)


@torch.no_grad()
def accuracy(model: torch.nn.Module, data: InstructionDataModule) -> float:
    """Share of the test split whose argmax is the gold label (student or teacher)."""
    model.eval()
    right = total = 0
    for batch in data.test_dataloader():
        predicted = model(batch, TASK).logits.argmax(-1)
        right += int((predicted == batch["labels"]).sum())
        total += len(predicted)
    return right / total


def smoke_teacher(args) -> Path:
    """A tiny-bert teacher fitted for a few steps, saved as ``instructrec fit`` saves one."""
    data = datamodule(args, 0, cached=False)
    model = MultiTaskModule(data.tasks, backbone=args.backbone)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, train_dataloaders=data.train_dataloader())
    path = args.work_dir / "teacher.ckpt"
    trainer.save_checkpoint(path, weights_only=False)  # the whole training state, as `fit` saves it
    return path


def report(rows: list[dict], teacher_accuracy: float, args) -> str:
    lines = [
        "| engine | test accuracy (%) | per seed | training epoch (s, mean) | vs torchdistill's epoch time |",
        "|---|---:|---|---:|---:|",
    ]
    theirs = {int(r["seed"]): float(r["epoch_seconds"]) for r in rows if r["engine"] == "torchdistill"}
    for engine in ENGINES:
        mine = [r for r in rows if r["engine"] == engine]
        if not mine:
            continue
        accuracies = [float(r["accuracy"]) for r in mine]
        seconds = [float(r["epoch_seconds"]) for r in mine]
        ratios = [float(r["epoch_seconds"]) / theirs[int(r["seed"])] for r in mine if int(r["seed"]) in theirs]
        ratio = f"{statistics.median(ratios):.2f}x" if ratios else ""
        lines.append(f"| {engine} | {common.mean_std(accuracies, scale=100, digits=1)} | "
                     f"{', '.join(f'{100 * a:.1f}' for a in accuracies)} | {statistics.mean(seconds):.1f} | {ratio} |")
    steps = rows[0]["steps"] if rows else "?"
    lines.append(f"\nTeacher: {100 * teacher_accuracy:.1f}% on the same test split. {args.examples} training "
                 f"sentences, {steps} steps of 32, seeds {', '.join(map(str, args.seeds))}; ratio: median over seeds "
                 "of the per-seed epoch-time ratio (the runs of a seed are adjacent).")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="runs/distill/sst2_teacher_minilm6/checkpoints/best.ckpt",
                        help="an `instructrec fit` checkpoint of the SST-2 teacher")
    parser.add_argument("--data", default=None, help="the shared data folder (default: $INSTRUCTREC_DATA or ../shared/data)")
    parser.add_argument("--backbone", default="minilm-l6", help="the teacher's backbone (its tokenizer)")
    parser.add_argument("--student_layers", type=int, nargs="+", default=[0, 2, 4])
    parser.add_argument("--examples", type=int, default=4000, help="training sentences (one epoch)")
    parser.add_argument("--test_examples", type=int, default=None, help="test sentences (default: all 872)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    args = common.parse(parser, argv, HERE, work_dir="runs/distill_peer_torchdistill")
    args.data = args.data or os.environ.get("INSTRUCTREC_DATA") or str(common.ROOT.parent / "shared" / "data")
    if args.smoke:
        args.backbone, args.student_layers, args.seeds = common.SMOKE_BACKBONE, [0], [0]
        args.examples, args.test_examples = common.SMOKE_EXAMPLES["train"], common.SMOKE_EXAMPLES["test"]
        args.teacher = smoke_teacher(args)
    path = args.out / "results.csv"
    rows = [r for r in (common.read_csv(path) if path.exists() else []) if r["engine"] not in args.engines]
    for index, seed in enumerate(args.seeds):
        order = args.engines if index % 2 == 0 else list(reversed(args.engines))
        students = {}
        for engine in order:
            if engine == "torchdistill":
                student, seconds, steps = train_torchdistill(args, seed)
            else:
                student, seconds, steps = train_ours(args, seed, cached=engine == "ours (cached)")
            students[engine] = student
            score = accuracy(student, datamodule(args, seed, cached=False))
            rows.append({"engine": engine, "seed": seed, "accuracy": f"{score:.6f}", "epoch_seconds": f"{seconds:.2f}", "steps": steps})
            print(f"seed {seed} {engine}: accuracy {100 * score:.2f}%, training epoch {seconds:.1f} s ({steps} steps)", flush=True)
        reference = students.get("ours (online)", students[order[0]])
        for row in rows[-len(order):]:
            row["max_weight_difference"] = f"{max_weight_difference(students[row['engine']], reference):.3g}"
        common.write_csv(path, rows, FIELDS)
    rows.sort(key=lambda r: (ENGINES.index(r["engine"]), int(r["seed"])))
    common.write_csv(path, rows, FIELDS)
    data = datamodule(args, args.seeds[0], cached=False)
    teacher_accuracy = accuracy(distillation_module(args, data).teacher, data)
    table = report(rows, teacher_accuracy, args)
    print(table)
    common.write_markdown(args.out / "results.md", table)


if __name__ == "__main__":
    main()
