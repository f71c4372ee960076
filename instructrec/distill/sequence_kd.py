"""Sequence-level knowledge distillation (Kim and Rush 2016): train a student on the teacher's own
beam-search outputs instead of the references.

:class:`SequenceKDDataModule` is an :class:`~instructrec.data.InstructionDataModule` whose training
answers are the teacher's generations. They are generated once and kept in
``<cache_dir>/teacher-sequences-<key>.jsonl``; the key hashes the teacher's bytes (a checkpoint
file or a model folder), the decoding options, the tokenizer and every training prompt, so a new
teacher, other decoding or other data generate afresh and nothing stale is ever reused. The key
also enters the encoded data's cache key. Validation and test keep the references.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict
from typing import Any

import torch

from instructrec import backbones
from instructrec.data.datamodule import InstructionDataModule
from instructrec.data.loading import Example, LoadedSplit
from instructrec.distill.teacher import source_identity
from instructrec.instructions import Instruction
from instructrec.models.generation import DecodingOptions
from instructrec.paths import resolve_path, writable_folder

log = logging.getLogger(__name__)

SEQUENCES_VERSION = 1


class SequenceKDDataModule(InstructionDataModule):
    """Training answers replaced by a teacher's generations (see the module docstring).

    Args:
        teacher: a GenerationModule checkpoint or a causal-LM backbone (None: the references, as
            the parent).
        teacher_decoding: how the teacher generates (default: beam search of 4, 64 new tokens).
        teacher_batch_size: prompts per ``generate`` call while generating.
        teacher_device: where the teacher runs while generating (default ``cuda`` when available).
        **kwargs: :class:`~instructrec.data.InstructionDataModule`'s arguments.
    """

    def __init__(
        self,
        *args: Any,
        teacher: str | None = None,
        teacher_decoding: DecodingOptions | None = None,
        teacher_batch_size: int = 16,
        teacher_device: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = teacher
        decoding = teacher_decoding or DecodingOptions(num_beams=4)
        self.teacher_decoding = decoding if isinstance(decoding, DecodingOptions) else DecodingOptions(**decoding)
        self.teacher_batch_size = teacher_batch_size
        self.teacher_device = teacher_device
        self.generated_by_teacher = 0  # teacher generations made (not read from the cache) by this module

    def _settings(self, split: str) -> dict:
        settings = super()._settings(split)
        if split == "train" and self.teacher is not None:
            settings["sequence_kd"] = self._teacher_settings()
        return settings

    def _teacher_settings(self) -> dict:
        path = resolve_path(self.teacher)
        identity = source_identity(path) if path.exists() else backbones.describe(self.teacher)
        return {"version": SEQUENCES_VERSION, "teacher": identity, "decoding": asdict(self.teacher_decoding)}

    def load_split(self, split: str) -> LoadedSplit:
        loaded = super().load_split(split)
        if split != "train" or self.teacher is None:
            return loaded
        sequences = self.teacher_sequences(loaded.examples)
        empty = 0
        examples = []
        for example in loaded.examples:
            text = sequences[example.id].strip()
            if not text:  # an empty generation is no answer: keep the reference
                empty += 1
                examples.append(example)
                continue
            fields = {**example.instruction.fields, "answer": text}
            examples.append(Example(example.id, Instruction(example.instruction.task, example.instruction.language, fields),
                                    example.source, example.record))
        if empty:
            log.warning("sequence-level KD: %d of %d teacher outputs were empty; those examples keep their references",
                        empty, len(examples))
        loaded.examples = examples
        return loaded

    def teacher_sequences(self, examples: list[Example]) -> dict[str, str]:
        """``{example id: the teacher's answer}``, from the cache file or generated into it."""
        prompts = [(e.id, e.instruction.without_answer().to_dict()) for e in examples]
        payload = {**self._teacher_settings(), "tokenizer": backbones.describe(self.tokenizer_name),
                   "max_length": self.max_length, "system_prompt": self.system_prompt, "prompts": prompts}
        key = hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:24]
        path = writable_folder(self.cache_dir, "the data cache folder") / f"teacher-sequences-{key}.jsonl"
        if path.is_file():
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
            return {row["id"]: row["answer"] for row in rows}
        sequences = self._generate([e.instruction.without_answer() for e in examples], [e.id for e in examples])
        handle, scratch = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            for example_id, text in sequences.items():
                out.write(json.dumps({"id": example_id, "answer": text}, ensure_ascii=False) + "\n")
        os.replace(scratch, path)  # atomic: a half-written file is never read
        return sequences

    @torch.no_grad()
    def _generate(self, instructions: list[Instruction], ids: list[str]) -> dict[str, str]:
        from tqdm.auto import tqdm

        from instructrec.models.generation import load_generator

        teacher = load_generator(self.teacher, self.tasks)
        device = torch.device(self.teacher_device or ("cuda" if torch.cuda.is_available() else "cpu"))
        teacher.to(device)
        examples = [Example(i, instruction, "<teacher>", n) for n, (i, instruction) in enumerate(zip(ids, instructions), 1)]
        sequences: dict[str, str] = {}
        size = self.teacher_batch_size
        for start in tqdm(range(0, len(examples), size), desc="Teacher sequences", unit="batch"):
            chunk = examples[start : start + size]
            columns, encode = self._encoder(chunk)
            features = encode(columns)
            batch = self._collate([dict(zip(features, values)) for values in zip(*features.values())])
            texts = teacher.generate(batch["prompt_ids"].to(device), batch["prompt_mask"].to(device), self.teacher_decoding)
            sequences.update(zip(batch["example_id"], texts))
        self.generated_by_teacher += len(sequences)
        return sequences
