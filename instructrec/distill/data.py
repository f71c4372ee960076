"""``TeacherLogitsDataModule``: an :class:`InstructionDataModule` whose batches carry the teacher's
cached logits, so training never runs the teacher.

Why a subclass: parsing, encoding and the Arrow data cache are the parent's; this adds one step
(:func:`~instructrec.distill.teacher_cache.cache_teacher_outputs` per split in ``teacher_splits``,
in ``prepare_data`` and ``setup``) and loaders that keep the teacher columns (the parent's keep only
the model's inputs and labels). QA batches also carry ``context_mask`` ``(B, S)``: true at context
tokens and at CLS (the no-answer position), the positions a span may take, which the soft-target
loss compares.

A *transfer set* (Hinton et al. 2015) widens what the student learns from: unlabelled text that
the teacher labels. ``transfer_set`` names files of the training data's kind whose answers are
dropped; its examples join the training split with no gold label (the hard loss ignores them,
:class:`~instructrec.distill.losses.HardLabelCrossEntropyLoss`), so only the teacher's cached
logits teach from them.

``instructrec cache-teacher --config RUN.yaml`` runs the same caching ahead of training
(:mod:`.commands`). :class:`MultiTaskTeacherLogitsDataModule` does the same for every source of a
multi-task run.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch

from instructrec.batch import MODEL_COLUMNS
from instructrec.data.datamodule import InstructionDataModule, as_paths
from instructrec.data.loading import LoadedSplit, subsample
from instructrec.data.multitask import MultiTaskDataModule
from instructrec.distill import teacher_cache
from instructrec.distill.teacher import DTYPES, load_teacher
from instructrec.errors import InputError
from instructrec.hashing import file_digest

log = logging.getLogger(__name__)

CONTEXT_MASK = "context_mask"
TRANSFER_PREFIX = "transfer:"  # the example id of a transfer-set example: transfer:<its id>


@dataclass
class TeacherCacheOptions:
    """How the teacher's logits are cached: the ``teacher*`` arguments of both data modules here
    and the options of ``instructrec cache-teacher``, documented and checked in this one place.

    The fields keep the flat names the configs use (``data.init_args.teacher_top_k``), so a YAML
    file, a Python call and this class say the same; :meth:`of` refuses a misspelt one by name
    before any data is read or any teacher loaded. (The data modules still list the fields, in
    this order, in their signatures: LightningCLI reads a config's keys from there, and a nested
    group would change every config.)
    """

    teacher: str | None = None
    """The teacher: a transformers folder or a ``.ckpt`` of ours (see
    :mod:`instructrec.distill.teacher`); None: no teacher columns, the data module behaves exactly
    like its parent."""
    teacher_top_k: int | None = None
    """Cache only the ``K`` largest logits per row, with their indices (None: all); float16."""
    teacher_dtype: str | None = None
    """The teacher's weights while caching: ``float32`` (None), ``bfloat16`` or ``float16``."""
    teacher_splits: list[str] | None = None
    """Which splits carry teacher logits (None: ``train``; training reads them, evaluation runs
    the teacher anyway to time it)."""
    teacher_batch_size: int = 64
    """Rows per teacher forward pass while caching."""
    teacher_device: str | None = None
    """Where the teacher runs while caching (None: ``cuda`` when available, else ``cpu``)."""

    def __post_init__(self) -> None:
        self.teacher_splits = list(self.teacher_splits if self.teacher_splits is not None else ["train"])
        if self.teacher_top_k is not None and self.teacher_top_k <= 0:
            raise InputError(f"teacher_top_k must be positive, got {self.teacher_top_k}")
        if self.teacher_dtype is not None and self.teacher_dtype not in DTYPES:
            raise InputError(f"teacher_dtype must be one of {sorted(DTYPES)}, got {self.teacher_dtype!r}")
        if self.teacher_batch_size <= 0:
            raise InputError(f"teacher_batch_size must be positive, got {self.teacher_batch_size}")

    @classmethod
    def of(cls, options: dict[str, Any]) -> "TeacherCacheOptions":
        """``options`` (from a config's data section or the command line) as ``TeacherCacheOptions``;
        a key that is not a field is refused with its name and the fields' names."""
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise InputError(f"unknown teacher option(s) {unknown}; the teacher cache takes {names}")
        return cls(**options)

    def device(self) -> str:
        return self.teacher_device or ("cuda" if torch.cuda.is_available() else "cpu")


class TeacherLogitsDataModule(InstructionDataModule):
    """:class:`InstructionDataModule` plus cached teacher logits.

    Args:
        teacher, teacher_top_k, teacher_dtype, teacher_splits, teacher_batch_size, teacher_device:
            :class:`TeacherCacheOptions` (flat, as configs give them); kept as ``teacher_options``.
        transfer_set: a path (or list of paths) of unlabelled training text for the teacher to
            label, read like ``train`` (same template and format); its answers, if any, are
            dropped. Its examples are added to the training split with the id
            ``transfer:<id>``; a record that is also a training example (the same file given to
            both) stays a gold example only. Needs ``teacher``.
        transfer_set_size: at most this many transfer examples, chosen by a seeded hash of the
            example id as ``max_examples`` chooses (None: all).
        transfer_set_seed: the seed of that choice and of the template's phrasings of the transfer
            examples, apart from ``seed``: runs whose gold subset follows their seed share one
            transfer set, word for word, and so one cache of its teacher logits (the teacher labels
            the transfer rows apart from the gold rows, once for all such runs).
        **kwargs: :class:`InstructionDataModule`'s arguments.
    """

    def __init__(
        self,
        *args: Any,
        teacher: str | None = None,
        teacher_top_k: int | None = None,
        teacher_dtype: str | None = None,
        teacher_splits: list[str] | None = None,
        teacher_batch_size: int = TeacherCacheOptions.teacher_batch_size,
        teacher_device: str | None = None,
        transfer_set: str | list[str] | None = None,
        transfer_set_size: int | None = None,
        transfer_set_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.teacher_options = TeacherCacheOptions(
            teacher, teacher_top_k, teacher_dtype, teacher_splits, teacher_batch_size, teacher_device
        )
        self.teacher_folders: dict[str, Any] = {}
        self._teacher_outputs: dict | None = None
        self.paths["transfer"] = as_paths(transfer_set)
        if self.paths["transfer"] and teacher is None:
            raise InputError("transfer_set needs a teacher: its examples have no labels but the teacher's")
        if self.paths["transfer"] and "train" not in self.teacher_options.teacher_splits:
            raise InputError("transfer_set needs the teacher's logits on the train split: add 'train' to teacher_splits")
        if transfer_set_size is not None and transfer_set_size <= 0:
            raise InputError(f"transfer_set_size must be positive, got {transfer_set_size}")
        self.transfer_set_size = transfer_set_size
        self.transfer_set_seed = transfer_set_seed

    def load_split(self, split: str) -> LoadedSplit:
        """The parent's split; for ``train`` with a transfer set, its examples follow the gold
        ones, without their answers."""
        loaded = super().load_split(split)
        if split != "train" or not self.paths["transfer"]:
            return loaded
        gold = {(example.source, example.record) for example in loaded.examples}
        transfer = self._collect("transfer", check=self._check(), seed=self.transfer_set_seed)
        examples = [example for example in transfer.examples if (example.source, example.record) not in gold]
        if self.transfer_set_size is not None and len(examples) > self.transfer_set_size:
            examples = subsample(examples, self.transfer_set_size, self.transfer_set_seed)
        if not examples:
            raise InputError(f"the transfer set has no examples besides the training ones in {self._describe('transfer')}")
        log.info("train: %d gold examples + %d transfer-set examples (labelled by the teacher)", len(loaded.examples), len(examples))
        loaded.examples += [
            replace(example, id=f"{TRANSFER_PREFIX}{example.id}", instruction=example.instruction.without_answer())
            for example in examples
        ]
        loaded.rejects += transfer.rejects
        return loaded

    def _settings(self, split: str) -> dict:
        settings = super()._settings(split)
        if split == "train" and self.paths["transfer"]:
            settings["transfer_set"] = {
                "files": [file_digest(path) for path in self._files("transfer")],
                "size": self.transfer_set_size,
                "seed": self.transfer_set_seed,
            }
        return settings

    def prepare_data(self) -> None:
        super().prepare_data()
        self.cache_teacher()

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        for split, cached in self.cache_teacher().items():
            self.datasets[split] = teacher_cache.attach(self.datasets[split], cached)

    def cache_teacher(self) -> dict:
        """``{split: teacher dataset}`` for the teacher splits present (computed once, then read),
        kept by this data module: ``prepare_data`` and ``setup`` in one process load the teacher
        once (another process, e.g. a DDP rank's ``setup``, reads the cache with its own teacher)."""
        if self._teacher_outputs is None:
            self._teacher_outputs = self._teacher_outputs_from_cache()
        return self._teacher_outputs

    def _teacher_outputs_from_cache(self) -> dict:
        options = self.teacher_options
        splits = [s for s in options.teacher_splits if s in self._splits()]
        if options.teacher is None or not splits:
            return {}
        teacher = load_teacher(options.teacher, tasks=self.tasks, dtype=options.teacher_dtype, tokenizer=self.tokenizer_name)
        cached = {}
        for split in splits:
            dataset, _ = self.encoded(split)
            parts = []
            for part, rows in self._teacher_parts(split, dataset):
                outputs, self.teacher_folders[part] = teacher_cache.cache_teacher_outputs(
                    teacher, rows, self.name, self.cache_dir, split=part,
                    top_k=options.teacher_top_k, batch_size=options.teacher_batch_size, device=options.device(),
                )
                parts.append(outputs)
            cached[split] = parts[0] if len(parts) == 1 else _concatenated(parts)
        del teacher
        return cached

    def _teacher_parts(self, split: str, dataset) -> list[tuple[str, Any]]:
        """The rows the teacher labels as one cache entry each: the split, or for ``train`` with a
        transfer set its gold rows and its transfer rows (which follow them), so that runs sharing
        a transfer set share its logits."""
        if split != "train" or not self.paths["transfer"]:
            return [(split, dataset)]
        gold = sum(not example_id.startswith(TRANSFER_PREFIX) for example_id in dataset["example_id"])
        return [("train", dataset.select(range(gold))), ("transfer", dataset.select(range(gold, len(dataset))))]

    def loader_inputs(self, split: str):
        """The parent's model columns plus the cached teacher outputs (and, for QA, the context
        mask the span losses need)."""
        dataset = self.datasets[split]
        if "offset_mapping" in dataset.column_names and CONTEXT_MASK not in dataset.column_names:
            dataset = dataset.map(_context_mask, desc=f"context mask ({split})")
        extra = [c for c in dataset.column_names if c.startswith("teacher_") or c == CONTEXT_MASK]
        columns = [c for c in MODEL_COLUMNS if c in dataset.column_names] + extra
        return dataset.with_format("torch", columns=columns), TeacherBatchCollator(self._collate, extra)


class MultiTaskTeacherLogitsDataModule(MultiTaskDataModule):
    """:class:`MultiTaskDataModule` whose every source is a :class:`TeacherLogitsDataModule` of one
    multi-task teacher: each task's batches carry that task's cached logits, so a multi-task
    student is distilled task by task without running the teacher.

    Args:
        sources, **kwargs: :class:`MultiTaskDataModule`'s arguments.
        teacher, teacher_top_k, teacher_dtype, teacher_splits, teacher_batch_size, teacher_device:
            :class:`TeacherCacheOptions` (flat, as configs give them), the same for every source.
    """

    def __init__(
        self,
        sources: dict[str, dict[str, Any]],
        teacher: str | None = None,
        teacher_top_k: int | None = None,
        teacher_dtype: str | None = None,
        teacher_splits: list[str] | None = None,
        teacher_batch_size: int = TeacherCacheOptions.teacher_batch_size,
        teacher_device: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.teacher_options = TeacherCacheOptions(
            teacher, teacher_top_k, teacher_dtype, teacher_splits, teacher_batch_size, teacher_device
        )
        super().__init__(sources, **kwargs)

    def build_source(self, **options: Any) -> TeacherLogitsDataModule:
        return TeacherLogitsDataModule(**options, **asdict(self.teacher_options))


def _concatenated(datasets: list):
    from datasets import concatenate_datasets

    return concatenate_datasets(datasets)


def _context_mask(row: dict) -> dict:
    mask = [int(offset is not None and offset[0] >= 0) for offset in row["offset_mapping"]]
    mask[0] = 1  # CLS: the no-answer position
    return {CONTEXT_MASK: mask}


class TeacherBatchCollator:
    """The model batch (``base``) plus the teacher columns: fixed-size rows are stacked, per-token
    rows (QA logits, ``context_mask``) right-padded to the batch's sequence length (logits with
    ``-inf``, masks with 0)."""

    def __init__(self, base, columns: list[str]) -> None:
        self.base = base
        self.columns = list(columns)

    def __call__(self, rows: list[dict]) -> dict:
        batch = self.base(rows)
        length = batch["input_ids"].shape[1]
        for name in self.columns:
            values = [torch.as_tensor(row[name]) for row in rows]
            if _per_token(name):
                fill = 0 if name == CONTEXT_MASK else float("-inf")
                padded = values[0].new_full((len(values), length), fill)
                for i, value in enumerate(values):
                    padded[i, : len(value)] = value
                batch[name] = padded.bool() if name == CONTEXT_MASK else padded
            else:
                batch[name] = torch.stack(values)
        return batch


def _per_token(name: str) -> bool:
    return name == CONTEXT_MASK or (name.startswith("teacher_") and "topk" not in name and name != "teacher_logits")
