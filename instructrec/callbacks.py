"""Callbacks that the configs and the CLI use beside Lightning's own, and the CLI's checkpoint writer."""

from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol, get_filesystem
from lightning.pytorch.callbacks import BasePredictionWriter, Callback, ModelCheckpoint

from instructrec.errors import InputError

log = logging.getLogger(__name__)


class JsonlPredictionWriter(BasePredictionWriter):
    """Writes ``predict`` results as JSONL, one line per example with its ``id``.

    Each rank writes its own file (``predictions.rank<N>.jsonl`` when there are several), using the
    dataset indices Lightning's sampler hands out, so ids stay right under DDP. With several predict
    loaders (one per task of a ``MultiTaskDataModule``) ids come from each loader's own data.

    Args:
        output_dir: folder for the prediction files.
    """

    def __init__(self, output_dir: str = "predictions") -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self._handle = None

    def on_predict_start(self, trainer, pl_module) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        name = "predictions.jsonl" if trainer.world_size == 1 else f"predictions.rank{trainer.global_rank}.jsonl"
        self._handle = (self.output_dir / name).open("w", encoding="utf-8")

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        ids = trainer.datamodule.example_ids("predict", dataloader_idx) if trainer.datamodule else None
        for position, row in enumerate(prediction):
            index = batch_indices[position] if batch_indices is not None else None
            example_id = ids[index] if ids is not None and index is not None else None
            self._handle.write(json.dumps({"id": example_id, **row}, ensure_ascii=False) + "\n")

    def on_predict_end(self, trainer, pl_module) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class QAPredictionWriter(BasePredictionWriter):
    """Writes extractive-QA ``predict`` results in the official SQuAD formats: ``predictions.json``
    (id -> answer text), ``nbest_predictions.json`` and, for SQuAD 2.0, ``null_odds.json``.

    Why at the epoch's end: one question's windows may fall in several batches, so answers are
    decoded (by the module's ``decode``, with its tuned null threshold) once all logits are in.
    Under DDP each rank writes its share to ``rank<N>/``.

    Args:
        output_dir: folder for the prediction files.
    """

    def __init__(self, output_dir: str = "predictions") -> None:
        super().__init__(write_interval="epoch")
        self.output_dir = Path(output_dir)

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        from instructrec.qa.postprocess import write_prediction_files

        batches = predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        ids, decoded, _ = pl_module.decode(batches)
        folder = self.output_dir if trainer.world_size == 1 else self.output_dir / f"rank{trainer.global_rank}"
        written = write_prediction_files(folder, ids, decoded, version_2=pl_module.hparams.version_2)
        print(f"wrote {len(ids)} answers: {', '.join(str(p) for p in written.values())}")



class NonFiniteLossError(InputError):
    """The training loss became NaN or infinite. An input error: the cause is almost always a
    setting (learning rate, precision) or the data, not the code, so the CLI reports it in two lines."""


class NonFiniteLoss(Callback):
    """Never train on a NaN or infinite loss silently: stop the run, naming the step, the task and
    the batch's record ids, or (``action="skip"``) skip that optimizer step and log it.

    Why a callback: it sees every family's loss before ``backward`` and the gradients before the
    optimizer step, whatever the module. Under DDP the ranks agree (one rank's bad loss makes every
    rank's averaged gradients bad), so all stop or skip together. Skipping sets the gradients to
    None, which AdamW leaves alone (the learning-rate schedule still advances).

    Args:
        action: ``stop`` (default) or ``skip``.
    """

    def __init__(self, action: Literal["stop", "skip"] = "stop") -> None:
        if action not in ("stop", "skip"):
            raise InputError(f"non_finite_loss.action must be 'stop' or 'skip', got {action!r}")
        self.action = action
        self.skipped = 0
        self._batch: dict | None = None
        self._batch_idx = 0
        self._bad_loss: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch, self._batch_idx = batch, batch_idx

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        bad = not bool(torch.isfinite(loss.detach()).all())
        if trainer.world_size > 1:
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            return
        self._bad_loss = float(loss.detach().float().sum()) if loss.numel() else float("nan")
        if self.action == "stop":
            raise NonFiniteLossError(self._describe(trainer), hint=(
                "lower the learning rate, clip gradients (--trainer.gradient_clip_val 1.0), use 32-bit precision, "
                "or skip such steps with --non_finite_loss.action skip"))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self._bad_loss is None:
            return
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                parameter.grad = None
        self.skipped += 1
        log.warning("skipped the optimizer step: %s (%d skipped so far)", self._describe(trainer), self.skipped)
        self._bad_loss = None  # (with gradient accumulation, any bad micro-batch skips the step)

    def _describe(self, trainer) -> str:
        batch = self._batch if isinstance(self._batch, dict) else {}
        ids = list(batch.get("example_id") or [])
        shown = ", ".join(map(str, ids[:8])) + (f" and {len(ids) - 8} more" if len(ids) > 8 else "")
        task = batch.get("task")
        return (
            f"the training loss is {self._bad_loss} at step {trainer.global_step} (epoch {trainer.current_epoch}, "
            f"batch {self._batch_idx}{f', task {task}' if task else ''}); records: {shown or 'unknown'}"
        )


class ResumeCheckpoint(ModelCheckpoint):
    """``last.ckpt`` every ``every_n_train_steps`` steps, for a later ``instructrec fit ...
    --ckpt_path last`` to resume from, mid-epoch included.

    Why not a plain ``ModelCheckpoint``: without ``dirpath`` it writes into the logger's folder,
    which is new in every run (a W&B run id), so the next run would not find ``last.ckpt``; this
    one keeps it in ``<default_root_dir>/checkpoints``. A run that ends (or is stopped by
    ``max_steps``, ``max_time``) before its first save still writes ``last.ckpt`` at its end.

    Args:
        dirpath: the folder of ``last.ckpt`` (default ``<default_root_dir>/checkpoints``).
        every_n_train_steps: optimizer steps between saves.
        save_last, save_top_k: as ``ModelCheckpoint``'s; by default only ``last.ckpt`` is kept
            (the best checkpoint is the monitoring ``ModelCheckpoint``'s job).
        enable_version_counter: off: a later run overwrites ``last.ckpt`` rather than writing
            ``last-v1.ckpt`` beside it.
    """

    def __init__(self, dirpath: str | None = None, every_n_train_steps: int = 500, save_last: bool = True,
                 save_top_k: int = 0, enable_version_counter: bool = False, **kwargs) -> None:
        super().__init__(dirpath=dirpath, every_n_train_steps=every_n_train_steps, save_last=save_last,
                         save_top_k=save_top_k, enable_version_counter=enable_version_counter, **kwargs)

    def setup(self, trainer, pl_module, stage) -> None:
        self._use_run_folder(trainer)
        super().setup(trainer, pl_module, stage)

    def _find_last_checkpoints(self, trainer) -> set[str]:
        # Lightning looks for `--ckpt_path last` before any callback's setup.
        self._use_run_folder(trainer)
        return super()._find_last_checkpoints(trainer)

    def _use_run_folder(self, trainer) -> None:
        if self.dirpath is None:
            self.dirpath = os.path.join(trainer.default_root_dir, "checkpoints")
            self._fs = get_filesystem(self.dirpath)

    def on_train_end(self, trainer, pl_module) -> None:
        if not trainer.fast_dev_run:  # Lightning's would save even there, where checkpoints are off
            super().on_train_end(trainer, pl_module)


class RandomStates(Callback):
    """Keeps the global random states (torch, CUDA, numpy, Python) in every checkpoint and puts
    them back when a fit resumes, so dropout after a resume draws what an uninterrupted run drew.

    Why at ``on_train_start`` rather than when the checkpoint is read: in between, Lightning builds
    the model and the loaders and runs the sanity check, which draw from these generators; the run
    that wrote the checkpoint had done all that long before. The states are tensors and plain
    data, so the checkpoint still loads with ``weights_only=True``.
    """

    def __init__(self) -> None:
        self._to_restore: dict | None = None

    def state_dict(self) -> dict:
        _, keys, position, has_gauss, gauss = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": random.getstate(),
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self._to_restore = state_dict

    def on_train_start(self, trainer, pl_module) -> None:
        state, self._to_restore = self._to_restore, None
        if not state:
            return
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        numpy = state["numpy"]
        np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["position"],
                             numpy["has_gauss"], numpy["gauss"]))
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to ``<path>.tmp`` beside it, then renames it into place, so a run killed
    while saving never leaves a half-written ``last.ckpt``.

    Why: Lightning (2.6) writes local checkpoints through an fsspec transaction that writes into the
    system's temp folder and then moves the file; across file systems (``/tmp`` on tmpfs) that move
    is a copy into the final path, which a kill can cut short. A rename within a folder is atomic.
    """

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        if storage_options is not None or not _is_local_file_protocol(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".tmp")
        with partial.open("wb") as handle:
            torch.save(checkpoint, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)


class WandbRunId(Callback):
    """Keeps the W&B run's id in every checkpoint (``checkpoint["wandb_run_id"]``), so that
    ``fit --ckpt_path last`` continues the same W&B run (see :func:`continue_wandb_run`) instead of
    starting a new one that holds only the resumed half."""

    KEY = "wandb_run_id"

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        from lightning.pytorch.loggers import WandbLogger

        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and logger.version:
                checkpoint[self.KEY] = str(logger.version)


def continue_wandb_run(trainer, ckpt_path: str | None) -> str | None:
    """Before a resumed fit starts its W&B run: give the trainer's WandbLogger the id saved in the
    checkpoint (``last`` is the newest ``last.ckpt`` of the checkpoint callbacks, as Lightning
    picks it) and ``resume="allow"``. Returns the id, or None when there is nothing to continue."""
    from lightning.pytorch.loggers import WandbLogger

    loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
    if not ckpt_path or not loggers or loggers[0]._experiment is not None:
        return None
    if ckpt_path == "last":
        found = {path for callback in trainer.checkpoint_callbacks for path in callback._find_last_checkpoints(trainer)}
        found = [Path(path) for path in found if Path(path).is_file()]
        if not found:
            return None
        path = max(found, key=lambda p: p.stat().st_mtime)
    else:
        path = Path(ckpt_path)
        if not path.is_file():
            return None
    import torch

    run_id = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get(WandbRunId.KEY)
    if run_id:
        logger = loggers[0]
        logger._wandb_init.update(id=run_id, resume="allow")
        logger._id = run_id
    return run_id


def make_resumable(trainer):
    """What an exact resume needs from a trainer beside its data loaders: :class:`RandomStates`,
    atomic checkpoint writes (unless the config chose a ``CheckpointIO`` of its own) and the W&B run
    id in its checkpoints (:class:`WandbRunId`)."""
    if not any(isinstance(callback, RandomStates) for callback in trainer.callbacks):
        trainer.callbacks.append(RandomStates())
    if not any(isinstance(callback, WandbRunId) for callback in trainer.callbacks):
        trainer.callbacks.append(WandbRunId())
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
    return trainer
