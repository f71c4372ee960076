"""Callbacks that the configs use beside Lightning's own."""

from __future__ import annotations

import json
from pathlib import Path

from lightning.pytorch.callbacks import BasePredictionWriter


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

