"""``InstructionDataModule``: instruction files (or a raw data set plus a template) -> batches.

Each split is parsed into :class:`~instructrec.instructions.Instruction` objects, checked, encoded
with the backbone's fast tokenizer through ``datasets.Dataset.map(batched=True)`` and cached as
Arrow (see :mod:`instructrec.data.cache`), so a second run skips straight to loading. Lightning
owns distributed sampling; this module builds plain ``DataLoader``s, for training one that a fit
resumes mid-epoch (:mod:`instructrec.data.resumable`).
"""

from __future__ import annotations

import logging
import os
from functools import cached_property
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from instructrec import backbones
from instructrec.batch import GENERATION_TEXT_COLUMNS, IGNORE_LABEL, MODEL_COLUMNS, TEXT_COLUMNS, TOKEN_LABEL_COLUMNS
from instructrec.data import cache, encoding, generative
from instructrec.data.files import TextRecord, read_instruction_file
from instructrec.data.loading import LoadedSplit, OnError, collect, holdout_position, parsed, recheck, report, subsample
from instructrec.data.raw import reader_code
from instructrec.data.resumable import LENGTH_POOL, EpochShuffleSampler, ResumableData, ResumableLoader
from instructrec.data.sources import evidence_spans, read_records, reference_answers, templated
from instructrec.errors import MissingFileError
from instructrec.instructions import InstructionError
from instructrec.paths import resolve_path

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test", "predict")


class InstructionDataModule(ResumableData, L.LightningDataModule):
    """One task's data, from instruction files or from a raw data set and a template.

    Args:
        train, val, test, predict: a path (or list of paths) per split; ``${INSTRUCTREC_DATA}`` and
            ``~`` expand. Instruction files are JSONL (one object a line, the instruction in
            ``text_field``, an optional ``id``) or text with one instruction per blank-line
            separated block. Without ``val``, ``val_fraction`` of ``train`` is held out.
        template: name of a registered template (``instructrec.instructions.templates``) that turns
            raw records into instructions; the files are then raw data read by its reader.
        template_args: keyword options for the template (e.g. languages of a parallel corpus).
        reader_args: keyword options for the raw reader (e.g. ``encoding``).
        tokenizer: backbone name whose tokenizer encodes the data (linked to the model's backbone
            by the CLI): a registered name, a local folder, or a hub id when online.
        max_length: tokens per sequence (longer inputs are truncated; QA contexts are windowed).
        doc_stride: overlap in tokens between consecutive windows of a long QA context.
        batch_size: examples per batch (per device).
        num_workers: DataLoader worker processes.
        on_error: ``raise`` stops at the first bad record (file, record number, reason);
            ``skip`` drops bad records, logs the counts and writes them to a rejects file.
        cache_dir: where encoded splits (Arrow) and rejects files are kept.
        val_fraction: share of ``train`` held out for validation when ``val`` is not given.
        seed: chooses template variants per example, and the held-out validation records.
        text_field: the JSONL key holding the instruction text.
        file_format: ``auto`` (by extension: ``.jsonl``/``.json`` -> JSONL, else blocks), ``jsonl``
            or ``blocks``.
        task_name: the task's name for the model (its head, its metrics ``val/<task_name>/...``);
            when set, every batch carries it as ``batch["task"]``. Default: the template's name,
            else the instruction task (``classification``, ``qa``).
        test_fraction: share of ``train`` held out as the test split when ``test`` is not given
            (after the ``val_fraction`` share: by the same seeded hash of the example id).
        max_examples: at most this many examples per split (e.g. ``{"train": 3000}``), chosen by a
            seeded hash of the example id (the same subset in every run), kept in file order.
        generative: encode every task as a chat prompt and its answer for a causal language model
            (:mod:`instructrec.data.generative`); default (None): when ``tokenizer`` is one.
        max_answer_length: generative only: answer tokens kept for training, the end token included.
        system_prompt: generative only: the chat template's system turn; None keeps the template's
            own default (SmolLM2's names itself), ``""`` an empty one.
        group_by_length: training batches of rows of similar token length (shuffled pools of
            ``length_pool`` batches sorted by length, the batches shuffled: the Hugging Face
            Trainer's ``group_by_length``), so that dynamic padding pads little; a pass is still a
            function of the seed and epoch (resumable). Single-process only: under DDP Lightning's
            ``DistributedSampler`` shuffles as usual.
        length_pool: group_by_length only: batches per length-sorted pool. Smaller pools mix
            lengths more (more padding, batches more like shuffled ones); 50 is the Trainer's.
        closed_answers: QA only: answers the reader chooses rather than extracts (bAbI's yes/no,
            counts, lists and directions, which no span of the context is): a list, or ``auto``
            for every answer of the training split that some example's context does not hold as a
            word. The model gets them as its task's ``answers`` (a head that picks one of them or
            "extract a span"). An example whose context holds its answer as a word is labelled
            with that span, any other with its closed answer (which it must then be). Default
            None: every answer is a span.
        supporting_facts: QA only: label each context token inside a supporting fact of its
            question (``support_labels``: 1 inside, 0 elsewhere in the context), for the reader's
            supporting-fact loss (``QAReasoningModule(support_weight=...)``). The raw records must
            give them (``evidence``: the ``babi`` template's reader does).
    """

    def __init__(
        self,
        train: str | list[str] | None = None,
        val: str | list[str] | None = None,
        test: str | list[str] | None = None,
        predict: str | list[str] | None = None,
        template: str | None = None,
        template_args: dict[str, Any] | None = None,
        reader_args: dict[str, Any] | None = None,
        tokenizer: str = "tiny-bert",
        max_length: int = 128,
        doc_stride: int = 64,
        batch_size: int = 16,
        num_workers: int = 0,
        on_error: OnError = "raise",
        cache_dir: str = ".cache/instructrec",
        val_fraction: float = 0.1,
        seed: int = 0,
        text_field: str = "text",
        file_format: str = "auto",
        task_name: str | None = None,
        test_fraction: float = 0.0,
        max_examples: dict[str, int] | None = None,
        generative: bool | None = None,
        max_answer_length: int = 64,
        system_prompt: str | None = None,
        group_by_length: bool = False,
        length_pool: int = LENGTH_POOL,
        closed_answers: list[str] | str | None = None,
        supporting_facts: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(closed_answers, str) and closed_answers != "auto":
            raise ValueError(f"closed_answers must be a list of answers or 'auto', got {closed_answers!r}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if not 0.0 <= test_fraction < 1.0 - val_fraction:
            raise ValueError(f"test_fraction must be in [0, 1 - val_fraction), got {test_fraction}")
        unknown = set(max_examples or {}) - set(SPLITS)
        if unknown:
            raise ValueError(f"max_examples keys must be splits {SPLITS}, got {sorted(unknown)}")
        self.paths = {split: as_paths(value) for split, value in zip(SPLITS, (train, val, test, predict))}
        self.template = template
        self.template_args = dict(template_args or {})
        self.reader_args = dict(reader_args or {})
        self.tokenizer_name = tokenizer
        self.max_length = max_length
        self.doc_stride = doc_stride
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.on_error = on_error
        self.cache_dir = resolve_path(cache_dir)
        self.val_fraction = val_fraction
        self.seed = seed
        self.text_field = text_field
        self.file_format = file_format
        self.task_name = task_name
        self.test_fraction = test_fraction
        self.max_examples = dict(max_examples or {})
        self.generative = generative
        self.max_answer_length = max_answer_length
        self.group_by_length = group_by_length
        if length_pool < 1:
            raise ValueError(f"length_pool must be at least 1 batch, got {length_pool}")
        self.length_pool = length_pool
        self.closed_answers = closed_answers if isinstance(closed_answers, str) or closed_answers is None else list(closed_answers)
        self.system_prompt = system_prompt
        self.supporting_facts = supporting_facts
        self.datasets: dict[str, Any] = {}
        self.meta: dict[str, dict] = {}
        self._reported: set[Path] = set()
        self._records: dict[str, list[dict]] = {}

    @classmethod
    def for_inputs(cls, tokenizer: str, task: str, label_names: list[str] | None = None, **options: Any) -> "InstructionDataModule":
        """A data module without files that encodes raw instructions of one ``task`` (and, for
        classification, label set) with :meth:`batch_from_texts`, exactly as files of them would
        be encoded: for a model served or queried outside training (``instructrec serve``)."""
        data = cls(tokenizer=tokenizer, **options)
        data.__dict__["reference"] = {"task": task, "label_names": list(label_names) if label_names else None}
        return data

    # -- what the model needs to know ---------------------------------------------------------

    @cached_property
    def tokenizer(self):
        return backbones.load_tokenizer(self.tokenizer_name)

    @cached_property
    def is_generative(self) -> bool:
        """Whether examples are encoded for a causal language model (see ``generative``)."""
        return self.generative if self.generative is not None else backbones.is_causal_lm(self.tokenizer_name)

    @cached_property
    def reference(self) -> dict:
        """The task (and for classification the label set) every split must match.

        Taken from the first usable record of the first split given: the options of one
        instruction are the label set, in their written order.
        """
        split = self._splits()[0]
        first = next(iter(self._collect(split, check=None, limit=1).examples), None)
        if first is None:
            raise InstructionError(f"the {split} split has no usable records in {self._describe(split)}")
        task = first.instruction.task
        if self.is_generative:
            if task not in generative.GENERATIVE_TASKS:  # pragma: no cover - every task generates today
                raise InstructionError(f"{task} instructions cannot be generated; first record: {first.source}, record {first.record}")
        elif task not in encoding.ENCODED_TASKS:
            raise InstructionError(
                f"{task} instructions need a generative backbone (a causal language model such as "
                f"smollm2-135m-instruct); an encoder reads {', '.join(encoding.ENCODED_TASKS)}; "
                f"first record: {first.source}, record {first.record}"
            )
        labels = list(first.instruction.fields["options"]) if task == "classification" else None
        reference = {"task": task, "label_names": labels}
        if self.closed_answers is not None:
            if task != "qa" or self.is_generative:
                raise InstructionError(f"closed_answers is for extractive QA; this data is {task} ({self._describe(split)})")
            reference["closed_answers"] = self._closed_answers()
        return reference

    def _closed_answers(self) -> list[str]:
        """``closed_answers`` as a list: as given, or (``auto``) read off the training split."""
        if isinstance(self.closed_answers, list):
            return list(self.closed_answers)
        if not self.paths["train"]:
            raise InstructionError("closed_answers: auto reads the answers off the training split; without one, list them")
        examples = [e for e in self._collect("train", check=None).examples if e.instruction.task == "qa"]
        answers = encoding.answers_outside_context(examples)
        log.info("closed answers (auto, read off %d training questions): %d: %s", len(examples), len(answers), ", ".join(answers))
        return answers

    @property
    def task(self) -> str:
        return self.reference["task"]

    @property
    def answer_classes(self) -> list[str] | None:
        """The QA closed answers (see ``closed_answers``), else None."""
        return self.reference.get("closed_answers")

    @property
    def label_names(self) -> list[str] | None:
        """The classification label set (linked into the model by the CLI), else None."""
        return self.reference["label_names"]

    @property
    def name(self) -> str:
        """The task's name: ``task_name``, else the template's name, else the instruction task."""
        return self.task_name or self.template or self.task

    @property
    def tasks(self) -> dict[str, dict]:
        """``{name: {"type": ..., "labels": [...]}}`` (labels for classification only; ``answers``
        for QA with closed answers): what a model needs to build its heads; the CLI links it into
        the model's ``tasks``. A generative
        task with a ``system_prompt`` carries it, so the checkpoint remembers the system turn it
        was trained with (``ask --generate`` and ``serve`` use it)."""
        spec = {"type": self.task}
        if self.task == "classification":
            spec["labels"] = list(self.label_names)
        if self.answer_classes is not None:
            spec["answers"] = list(self.answer_classes)
        if self.system_prompt is not None and self.is_generative:
            spec["system_prompt"] = self.system_prompt
        return {self.name: spec}

    def example_ids(self, split: str, dataloader_idx: int = 0) -> list[str]:
        """The ``example_id`` of each row of ``split`` (one data loader per split here)."""
        return list(self.datasets[split]["example_id"])

    # -- Lightning hooks ----------------------------------------------------------------------

    def prepare_data(self) -> None:
        for split in self._splits():
            self.encoded(split)

    def setup(self, stage: str | None = None) -> None:
        for split in self._splits():
            self.datasets[split], self.meta[split] = self.encoded(split)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")

    # -- loading and encoding -----------------------------------------------------------------

    def load_split(self, split: str) -> LoadedSplit:
        """Parse (or template) and check one split's records, applying ``on_error``."""
        loaded = self._collect(split, check=self._check())
        limit = self.max_examples.get(split)
        if limit is not None and len(loaded.examples) > limit:
            loaded.examples = subsample(loaded.examples, limit, self.seed)
        self._refuse_empty(split, loaded)
        return loaded

    def _refuse_empty(self, split: str, loaded: LoadedSplit) -> None:
        if not loaded.examples:
            raise InstructionError(
                f"the {split} split has no usable records ({loaded.total} read, {len(loaded.rejects)} rejected) "
                f"in {self._describe(split)}"
            )

    def encode(self, split: str) -> tuple[Any, dict, LoadedSplit]:
        """Load and encode one split, bypassing the cache: ``(dataset, meta, loaded)``."""
        loaded = self.load_split(split)
        evidence = self._evidence(split)
        if evidence is not None:  # a question whose evidence its context lacks is a bad record like any other
            recheck(loaded, lambda e: encoding.locate_evidence(evidence.get(e.id, []), e.instruction.fields["context"], e.id),
                    self.on_error)
            self._refuse_empty(split, loaded)
        dataset = self._encode_examples(loaded.examples, f"Encoding {split}", self._references(split), evidence)
        meta = {
            **self.reference,
            **({"prompts_truncated": sum(dataset["prompt_truncated"])} if self.is_generative else {}),
            "parsed": len(loaded.examples),
            "rejected": len(loaded.rejects),
            "total": loaded.total,
            "features": len(dataset),
        }
        return dataset, meta, loaded

    def batch_from_texts(self, texts: list[str]) -> dict:
        """A model batch from raw instruction texts, encoded exactly as the data files are.

        Bad input raises ``InstructionError`` naming the input's position, whatever ``on_error``.
        """
        records = [TextRecord(text, "<input>", i, f"input-{i}") for i, text in enumerate(texts, start=1)]
        examples = collect(parsed(records), check=self._check(), on_error="raise").examples
        columns, encode = self._encoder(examples)
        features = encode(columns)
        return self._collate([dict(zip(features, values)) for values in zip(*features.values())])

    def _check(self):
        if self.is_generative:
            return generative.check_generative_task(self.task)
        if self.task == "classification":
            return encoding.check_labels(self.label_names)
        return encoding.check_task(self.task, self.answer_classes)

    def _encoder(self, examples: list, references: dict[str, list[dict]] | None = None,
                 evidence: dict[str, list[dict]] | None = None):
        """The examples' columns, and the batched function that encodes them."""
        if self.is_generative:
            columns = generative.generation_columns(examples, references)
            return columns, generative.encode_generation(
                self.tokenizer, self.max_length, self.max_answer_length, self.system_prompt
            )
        if self.task == "classification":
            columns = encoding.classification_columns(examples, self.label_names)
            return columns, encoding.encode_classification(self.tokenizer, self.max_length)
        columns = encoding.qa_columns(examples, references, self.answer_classes, evidence)
        return columns, encoding.encode_qa(self.tokenizer, self.max_length, self.doc_stride)

    def _references(self, split: str) -> dict[str, list[dict]] | None:
        """All reference answers of a templated QA split's questions, with their positions (the
        instructions hold one answer, without its position)."""
        if self.task != "qa" or self.template is None:
            return None
        source = self._source(split)
        return reference_answers(self._raw_records(source))

    def _evidence(self, split: str) -> dict[str, list[dict]] | None:
        """With ``supporting_facts``: each question's supporting passages, from the raw records."""
        if not self.supporting_facts:
            return None
        if self.task != "qa" or self.template is None:
            raise InstructionError("supporting_facts labels QA contexts from raw records that give them (the babi template)")
        source = self._source(split)
        evidence = evidence_spans(self._raw_records(source))
        if not evidence:
            raise InstructionError(f"supporting_facts: the {self.template} records of {self._describe(split)} give no evidence")
        return evidence

    def _encode_examples(self, examples: list, desc: str, references: dict[str, list[dict]] | None = None,
                         evidence: dict[str, list[dict]] | None = None):
        from datasets import Dataset

        columns, encode = self._encoder(examples, references, evidence)
        raw = Dataset.from_dict(columns)
        return raw.map(encode, batched=True, remove_columns=raw.column_names, desc=desc)

    def _collect(self, split: str, check, limit: int | None = None, seed: int | None = None) -> LoadedSplit:
        """Parse (or template) a split's records; ``seed`` (default ``self.seed``) chooses the
        template's phrasings and the held-out records."""
        seed = self.seed if seed is None else seed
        source = self._source(split)
        files = self._files(source)
        if self.template is None:
            records = (
                record
                for path in files
                for record in read_instruction_file(path, format=self.file_format, text_field=self.text_field)
            )
            items = parsed(records)
        else:
            items = templated(self._raw_records(source), self.template, self.template_args, seed=seed)
        ranges = self._holdout_ranges()
        if split in ranges:
            low, high = ranges[split]
            items = (item for item in items if low <= holdout_position(item[0].id, seed) < high)
        elif split == "train" and ranges:
            items = (
                item
                for item in items
                if not any(low <= holdout_position(item[0].id, seed) < high for low, high in ranges.values())
            )
        return collect(items, check=check, on_error=self.on_error, limit=limit)

    def _raw_records(self, split: str) -> list[dict]:
        """A split's raw records, read once per data module: the label set, the instructions and
        the reference answers are all taken from them."""
        if split not in self._records:
            self._records[split] = read_records(self._files(split), self.template, self.reader_args)
        return self._records[split]

    def encoded(self, split: str) -> tuple[Any, dict]:
        """The split's encoded dataset and meta, from the cache or freshly built into it."""
        source = self._source(split)
        key = cache.cache_key(self._files(source), self._settings(split))
        folder = self.cache_dir / f"{split}-{key}"
        hit = cache.load_entry(folder)
        if hit is None:
            dataset, meta, loaded = self.encode(split)
            rejects = folder / "rejects.jsonl"
            meta["rejects_file"] = str(rejects) if loaded.rejects else None
            cache.save_entry(folder, dataset, meta, {"rejects.jsonl": loaded.write_rejects} if loaded.rejects else None)
            hit = cache.load_entry(folder)
        if folder not in self._reported:  # prepare_data and setup both ask; say it once a run
            self._reported.add(folder)
            meta = hit[1]
            report(f"{split} ({self._describe(source)})", meta["parsed"], meta["rejected"], meta.get("rejects_file"))
            if meta.get("prompts_truncated"):
                log.warning("%s: %d prompts longer than max_length=%d lost their end", split, meta["prompts_truncated"], self.max_length)
        return hit

    def _settings(self, split: str) -> dict:
        return {
            "reference": self.reference,
            "template": self.template,
            "template_args": self.template_args,
            "reader_args": self.reader_args,
            **({"reader_code": code} if (code := reader_code(self.template, self.reader_args)) else {}),
            "tokenizer": backbones.describe(self.tokenizer_name),
            "max_length": self.max_length,
            "doc_stride": self.doc_stride,
            **({"supporting_facts": True} if self.supporting_facts else {}),
            **({"generative": {"max_answer_length": self.max_answer_length, "system_prompt": self.system_prompt}}
               if self.is_generative else {}),
            "on_error": self.on_error,
            "seed": self.seed,
            "text_field": self.text_field,
            "file_format": self.file_format,
            "holdout": self.val_fraction if self._held_out("val") and split in ("train", "val") else None,
            **({"test_holdout": self._holdout_ranges()} if self._held_out("test") and split in ("train", "test") else {}),
            **({"max_examples": self.max_examples[split]} if split in self.max_examples else {}),
        }

    def _source(self, split: str) -> str:
        """The split whose files hold ``split``'s records: ``train`` for a held-out split."""
        return "train" if self._held_out(split) else split

    def _held_out(self, split: str) -> bool:
        """Whether ``split`` is carved out of ``train`` (``val``/``test`` not given, its fraction > 0)."""
        fraction = {"val": self.val_fraction, "test": self.test_fraction}.get(split, 0.0)
        return not self.paths[split] and bool(self.paths["train"]) and fraction > 0

    def _holdout_ranges(self) -> dict[str, tuple[float, float]]:
        """The held-out splits' ranges of :func:`holdout_position`: val ``[0, val_fraction)``,
        test ``[val_fraction, val_fraction + test_fraction)``; train keeps the rest."""
        ranges = {}
        if self._held_out("val"):
            ranges["val"] = (0.0, self.val_fraction)
        if self._held_out("test"):
            ranges["test"] = (self.val_fraction, self.val_fraction + self.test_fraction)
        return ranges

    def _splits(self) -> list[str]:
        splits = [split for split in SPLITS if self.paths[split] or self._held_out(split)]
        if not splits:
            raise ValueError("InstructionDataModule has no data: give at least one of train, val, test, predict")
        return splits

    def _files(self, split: str) -> list[Path]:
        files = [resolve_path(p) for p in self.paths[split]]
        for path in files:
            if not path.is_file():
                raise MissingFileError(
                    f"{split} data file {path} does not exist", hint=f"check the path in the config (`data.init_args.{split}`)"
                )
        return files

    def _describe(self, split: str) -> str:
        return ", ".join(str(p) for p in self._files(self._source(split)))

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError(f"no {split} data: set `{split}` in the data module's config")
        dataset, collate = self.loader_inputs(split)
        options = dict(
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=collate,
            persistent_workers=self.num_workers > 0,
            # its own generator (for the workers' seeds): iterating a loader leaves the global
            # random state, which dropout draws from, alone, so a resumed fit draws what it would have
            generator=torch.Generator().manual_seed(self.seed),
        )
        if not shuffle:
            return DataLoader(dataset, **options)
        # the run's seed (seed_everything's), as Lightning's DistributedSampler shuffles under DDP
        seed = int(os.environ.get("PL_GLOBAL_SEED", self.seed))
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        lengths = [len(ids) for ids in self.datasets[split]["input_ids"]] if self.group_by_length else None
        sampler = EpochShuffleSampler(dataset, seed, lengths=lengths, batch_size=self.batch_size, pool=self.length_pool)
        return ResumableLoader(dataset, sampler=sampler, position=self.train_position, epoch=epoch, **options)

    def loader_inputs(self, split: str):
        """The torch-formatted dataset a split's loader reads and its collate function: the
        model's columns, plus for QA evaluation and prediction the
        :data:`~instructrec.batch.TEXT_COLUMNS` that decode and score answers, and elsewhere the
        ``example_id``s. A subclass that feeds the model more
        columns overrides this. Generative data: see :class:`~instructrec.data.generative.CausalLMCollator`."""
        dataset = self.datasets[split]
        if self.is_generative:
            tensors = ["input_ids", "attention_mask", "labels", "prompt_length"]
            texts = list(GENERATION_TEXT_COLUMNS) if split != "train" else ["example_id"]
            collate = self._collate if split != "train" else generative.CausalLMCollator(
                self.tokenizer.pad_token_id, task=self.task_name, prompts=False
            )
            formatted = dataset.select_columns(tensors + texts).with_format("torch", columns=tensors, output_all_columns=True)
            return formatted, collate
        columns = [c for c in MODEL_COLUMNS if c in dataset.column_names]
        if split != "train" and all(c in dataset.column_names for c in TEXT_COLUMNS):
            texts = list(TEXT_COLUMNS)
        else:  # training batches name their records, so that a bad step can say which they were
            texts = [c for c in ("example_id",) if c in dataset.column_names]
        dataset = dataset.select_columns(columns + texts)
        return dataset.with_format("torch", columns=columns, output_all_columns=bool(texts)), self._collate

    @cached_property
    def _collate(self):
        if self.is_generative:
            return generative.CausalLMCollator(self.tokenizer.pad_token_id, task=self.task_name)
        return ModelBatchCollator(self.tokenizer, task=self.task_name)


class ModelBatchCollator:
    """Pads each batch to its longest sequence, keeping the columns a model reads (tensors) and any
    :data:`~instructrec.batch.TEXT_COLUMNS` the rows carry (lists, one entry per row), and
    adds the task's name as ``batch["task"]`` (a string) when given."""

    def __init__(self, tokenizer, task: str | None = None) -> None:
        from transformers import DataCollatorWithPadding

        self.pad = DataCollatorWithPadding(tokenizer)
        self.task = task

    def __call__(self, rows: list[dict]) -> dict:
        batch = dict(self.pad([{k: v for k, v in row.items() if k in MODEL_COLUMNS and k not in TOKEN_LABEL_COLUMNS}
                               for row in rows]))
        for name in TOKEN_LABEL_COLUMNS:
            if rows and name in rows[0]:
                batch[name] = pad_token_labels([row[name] for row in rows], batch["input_ids"].shape[1])
        for name in TEXT_COLUMNS:
            if rows and name in rows[0]:
                batch[name] = [row[name] for row in rows]
        if self.task is not None:
            batch["task"] = self.task
        return batch


def pad_token_labels(rows: list, width: int) -> torch.Tensor:
    """Per-token labels ``(B, width)``, each row right-padded with IGNORE_LABEL (as the inputs are)."""
    padded = torch.full((len(rows), width), IGNORE_LABEL, dtype=torch.long)
    for i, row in enumerate(rows):
        values = torch.as_tensor(row, dtype=torch.long)
        padded[i, : len(values)] = values
    return padded


def as_paths(value: str | list[str] | None) -> list[str]:
    """A split's path argument as a list (None: no files)."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)
