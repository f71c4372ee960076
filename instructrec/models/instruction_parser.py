"""The learned instruction parser: reads instructions with or without markers.

One shared encoder with two heads: a task classifier (qa / classification / translation /
generation, over the mean of the token states) and a BIO span tagger over the fields of
:data:`~instructrec.instructions.corpus.SPAN_FIELDS`. Tagged spans become an
:class:`~instructrec.instructions.Instruction` through the same
:func:`~instructrec.instructions.corpus.instruction_from_spans` that labels the training corpus,
so a perfect tagging gives exactly the gold instruction.

Weights are not shipped: ``instructrec train-parser`` trains them reproducibly (about 16 minutes on 2 idle CPU cores)
into the model cache, ``$INSTRUCTREC_MODELS/instruction-parser`` (default
``~/.cache/instructrec/models``): the encoder and tokenizer in ``save_pretrained`` format,
``heads.safetensors`` and ``parser.json`` (labels, tasks, backbone). Loading reads safetensors
only (no pickle) and never trusts remote code. :func:`learned_parse` loads them lazily, once.

The language is that of the wording (the characters outside content fields), or of the whole
text when it has no wording; a text longer than the encoder's window (512 tokens) keeps its last
tagged field running to the end. Decoding keeps to what every gold reading of the training corpus
satisfies: field values start and end on word edges, a question ends at its question mark, a
classification has two options or more, and a generation without markers is its whole text (see
:func:`_decode`).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch
from torch import nn

from instructrec import backbones
from instructrec.batch import IGNORE_LABEL
from instructrec.data.resumable import LENGTH_POOL, group_by_length
from instructrec.errors import InputError
from instructrec.instructions.corpus import (
    CONTENT_FIELDS,
    SPAN_FIELDS,
    TRAIN_CONTEXT_CHARS,
    Example,
    build_corpus,
    instruction_from_spans,
)
from instructrec.instructions.markers import HAN_CHARACTERS, find_markers, is_mostly_chinese
from instructrec.instructions.model import TASKS, Instruction, InstructionError
from instructrec.models.heads import pool
from instructrec.models.optim import adamw_with_warmup
from instructrec.paths import models_root

FOLDER = "instruction-parser"
FORMAT = "instructrec-instruction-parser"
VERSION = 1
TAGS: tuple[str, ...] = ("O",) + tuple(f"{prefix}-{field}" for field in SPAN_FIELDS for prefix in ("B", "I"))
TRAIN_HINT = "train them once (800 steps: about 16 minutes on 2 idle CPU cores): instructrec train-parser"
DEFAULT_STEPS = 800


def parser_dir() -> Path:
    return models_root() / FOLDER


class InstructionParserModule(L.LightningModule):
    """Encoder + task classifier + BIO span tagger; trained on :func:`build_corpus` batches.

    Args:
        backbone: encoder name (see :mod:`instructrec.backbones`); ``auto``: MiniLM-L6 when
            installed, else the tiny test model.
        learning_rate, weight_decay, warmup_ratio: AdamW with linear warm-up and decay.
        dropout: before both heads.
        trainable_layers: how many of the encoder's top layers train (None: all). The lower ones
            and the embeddings stay frozen: half the cost of a step on a CPU, and the pretrained
            features the small corpus cannot improve stay as they are.
        encoder: an already built encoder (loading saved weights); else built from ``backbone``.
    """

    def __init__(
        self,
        backbone: str = "auto",
        learning_rate: float = 1e-4,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        dropout: float = 0.1,
        trainable_layers: int | None = 3,
        encoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["encoder"])
        self.hparams.backbone = backbones.canonical(backbone)
        self.encoder = encoder if encoder is not None else backbones.load_encoder(backbone)
        _freeze_below(self.encoder, trainable_layers)
        hidden = self.encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.task_head = nn.Linear(hidden, len(TASKS))
        self.tag_head = nn.Linear(hidden, len(TAGS))

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> tuple[torch.Tensor, torch.Tensor]:
        states = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        states = self.dropout(states)
        return self.task_head(pool(states, attention_mask, "mean")), self.tag_head(states)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        task_logits, tag_logits = self(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        task_loss = nn.functional.cross_entropy(task_logits, batch["task"])
        tag_loss = nn.functional.cross_entropy(
            tag_logits.flatten(0, 1), batch["tags"].flatten(), ignore_index=IGNORE_LABEL
        )
        loss = task_loss + tag_loss
        self.log_dict(
            {"train/loss": loss, "train/task_loss": task_loss, "train/tag_loss": tag_loss},
            prog_bar=True, batch_size=len(batch["task"]),
        )
        return loss

    def configure_optimizers(self):
        return adamw_with_warmup(self)

    def heads_state(self) -> dict[str, torch.Tensor]:
        return {f"{name}.{key}": value.detach().cpu().contiguous()
                for name in ("task_head", "tag_head")
                for key, value in getattr(self, name).state_dict().items()}


def _freeze_below(encoder: nn.Module, trainable_layers: int | None) -> None:
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if trainable_layers is None or layers is None or trainable_layers >= len(layers):
        return
    frozen = [encoder.embeddings, *layers[: len(layers) - trainable_layers]]
    for part in frozen:
        for parameter in part.parameters():
            parameter.requires_grad_(False)


# -- encoding -------------------------------------------------------------------------------------


def encode(tokenizer, texts: Sequence[str], max_length: int) -> Any:
    return tokenizer(
        list(texts), truncation=True, max_length=max_length, padding=True,
        return_offsets_mapping=True, return_tensors="pt",
    )


def tag_ids(example: Example, offsets: Sequence[tuple[int, int]]) -> list[int]:
    """BIO tag per token from the example's character spans; special tokens are ignored."""
    owner: dict[int, tuple[int, str]] = {}
    for number, (field, start, end) in enumerate(example.spans):
        for char in range(start, end):
            owner[char] = (number, field)
    ids, previous = [], None
    for start, end in offsets:
        if start == end:
            ids.append(IGNORE_LABEL)
            continue
        hit = owner.get(start)
        if hit is None:
            ids.append(0)
        else:
            ids.append(TAGS.index(("I-" if hit[0] == previous else "B-") + hit[1]))
        previous = None if hit is None else hit[0]
    return ids


class _Collate:
    """Examples -> a tokenized batch with task and tag labels (tokenized per batch: no cache)."""

    def __init__(self, tokenizer, max_length: int) -> None:
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, examples: list[Example]) -> dict:
        batch = encode(self.tokenizer, [e.text for e in examples], self.max_length)
        offsets = batch.pop("offset_mapping").tolist()
        tags = [tag_ids(e, o) for e, o in zip(examples, offsets)]
        batch = dict(batch)
        batch["tags"] = torch.tensor(tags)
        batch["task"] = torch.tensor([TASKS.index(e.task) for e in examples])
        return batch


# -- training -------------------------------------------------------------------------------------


def length_batches(lengths: Sequence[int], batch_size: int, seed: int, pool: int = LENGTH_POOL) -> list[list[int]]:
    """Shuffled batches of similar lengths (little padding: the CPU budget), a function of ``seed``."""
    import random

    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    return group_by_length(order, lengths, batch_size, rng.shuffle, pool)


def train_parser(
    output_dir: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    max_steps: int = DEFAULT_STEPS,
    backbone: str = "auto",
    batch_size: int = 12,
    max_length: int = 256,
    learning_rate: float = 1.5e-4,
    data_root: str | os.PathLike | None = None,
    corpus: Sequence[Example] | None = None,
    progress: bool = True,
    init_from: str | os.PathLike | None = None,
    max_context_chars: int | None = TRAIN_CONTEXT_CHARS,
) -> Path:
    """Train the parser on the ``train`` corpus and write it to ``output_dir`` (default: the model
    cache's ``instruction-parser``). Same seed, same weights (on the same machine and versions).

    Without the shared data (``$INSTRUCTREC_DATA``) the corpus is the built-in paraphrases only.
    ``init_from``: a parser folder to continue training (its encoder, tokenizer and heads).
    ``max_context_chars``: training passages cut to the sentences around their answer (None: whole
    passages, which the held-out sets have; longer windows cost CPU time).
    """
    from instructrec.paths import data_root as default_data_root

    output = Path(output_dir) if output_dir is not None else parser_dir()
    if corpus is None:
        root = Path(data_root) if data_root is not None else default_data_root()
        corpus = build_corpus("train", seed=seed, data_root=root if root.is_dir() else None, max_context_chars=max_context_chars)
    if not corpus:
        raise InputError("the training corpus is empty")
    L.seed_everything(seed, workers=True)
    if init_from is not None:
        start = LoadedParser(Path(init_from))
        tokenizer, module = start.tokenizer, start.module
        module.hparams.learning_rate = learning_rate
        module.hparams.backbone = start.meta["backbone"]
        module.train()
    else:
        tokenizer = backbones.load_tokenizer(backbone)
        module = InstructionParserModule(backbone=backbone, learning_rate=learning_rate)
    loader = torch.utils.data.DataLoader(
        list(corpus), batch_sampler=length_batches([len(e.text) for e in corpus], batch_size, seed),
        collate_fn=_Collate(tokenizer, max_length),
    )
    trainer = L.Trainer(
        max_steps=max_steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=progress, enable_model_summary=False, deterministic=True,
        num_sanity_val_steps=0, limit_val_batches=0,
    )
    started = time.perf_counter()
    trainer.fit(module, loader)
    info = {
        "train_seconds": round(time.perf_counter() - started, 1), "steps": trainer.global_step, "seed": seed,
        "batch_size": batch_size, "max_length": max_length, "learning_rate": learning_rate,
        "examples": len(corpus), "max_context_chars": max_context_chars,
    }
    if init_from is not None:
        before = json.loads((Path(init_from) / "parser.json").read_text(encoding="utf-8")).get("training", {})
        info["continued_from"] = before
    save_parser(module, tokenizer, output, info)
    return output


def save_parser(module: InstructionParserModule, tokenizer, output: Path, info: dict | None = None) -> None:
    """Write the parser folder atomically: a half-written folder is never loaded."""
    from safetensors.torch import save_file

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    scratch = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    module.encoder.save_pretrained(scratch, safe_serialization=True)
    tokenizer.save_pretrained(scratch)
    save_file(module.heads_state(), str(scratch / "heads.safetensors"))
    meta = {
        "format": FORMAT, "version": VERSION, "backbone": module.hparams.backbone,
        "tasks": list(TASKS), "tags": list(TAGS), "max_length": 512, "training": info or {},
    }
    (scratch / "parser.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    if output.exists():
        shutil.rmtree(output)
    os.replace(scratch, output)


# -- loading and parsing --------------------------------------------------------------------------


class LoadedParser:
    """A trained parser in eval mode, with its tokenizer and settings."""

    def __init__(self, folder: Path) -> None:
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        meta_file = folder / "parser.json"
        if not meta_file.is_file() or not (folder / "heads.safetensors").is_file():
            raise InputError(
                f"no trained instruction parser in {folder}", hint=f"{TRAIN_HINT} (or set INSTRUCTREC_MODELS)"
            )
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT or meta.get("tags") != list(TAGS) or meta.get("tasks") != list(TASKS):
            raise InputError(
                f"{folder} holds an instruction parser of another format or label set",
                hint=f"train it again: instructrec train-parser --output {folder}",
            )
        try:  # BERT-like encoders: no pooler (the heads read token states)
            encoder = AutoModel.from_pretrained(folder, trust_remote_code=False, use_safetensors=True, add_pooling_layer=False)
        except TypeError:
            encoder = AutoModel.from_pretrained(folder, trust_remote_code=False, use_safetensors=True)
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # the heads read token states
        self.tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        self.module = InstructionParserModule(backbone=str(folder), encoder=encoder)
        heads = load_file(str(folder / "heads.safetensors"))
        for name in ("task_head", "tag_head"):
            getattr(self.module, name).load_state_dict(
                {key.split(".", 1)[1]: value for key, value in heads.items() if key.startswith(name + ".")}
            )
        self.module.eval()
        self.max_length = int(meta.get("max_length", 512))
        self.meta = meta

    @torch.no_grad()
    def parse(self, texts: Sequence[str], batch_size: int = 32) -> list[tuple[Instruction | None, float]]:
        results: list[tuple[Instruction | None, float]] = [(None, 0.0)] * len(texts)
        todo = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip()]
        todo.sort(key=lambda i: len(texts[i]))  # similar lengths together: little padding
        for first in range(0, len(todo), batch_size):
            chunk = todo[first : first + batch_size]
            batch = encode(self.tokenizer, [texts[i] for i in chunk], self.max_length)
            offsets = batch.pop("offset_mapping").tolist()
            task_logits, tag_logits = self.module(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
            task_probs, tag_probs = task_logits.softmax(-1), tag_logits.softmax(-1)
            for row, index in enumerate(chunk):
                results[index] = _decode(texts[index], offsets[row], task_probs[row], tag_probs[row])
        return results


def _decode(text: str, offsets: list, task_probs: torch.Tensor, tag_probs: torch.Tensor) -> tuple[Instruction | None, float]:
    """One text's heads -> (Instruction or None, confidence = task prob x mean tag prob).

    Tags are read among those of the predicted task's fields: one joint reading, not two that
    disagree. Spans are widened to whole words (:func:`_whole_words`) and a question ends at its
    mark (:func:`_questions_to_their_mark`). The corpus's labelling rules hold for the reading: a
    classification with one option is no choice ("Did the reviewer enjoy the movie?" tagged with
    the option "enjoy"), so it is read as a generation; a generation without markers is its
    whole text (its prompt), as every such gold reading is. None where the tags miss a required
    field (``auto`` then asks the rules)."""
    real = [(i, s, e) for i, (s, e) in enumerate(offsets) if e > s]
    if not real:
        return None, 0.0
    task = TASKS[int(task_probs.argmax())]
    instruction, confidence = _read_as(text, real, task, task_probs, tag_probs)
    if instruction is not None and task == "classification" and len(instruction.fields["options"]) < 2:
        instruction, confidence = _read_as(text, real, "generation", task_probs, tag_probs)
    if instruction is not None and instruction.task == "generation" and not find_markers(text):
        instruction = Instruction("generation", instruction.language, {"prompt": text.strip()})
    return instruction, confidence


def _read_as(text: str, real: list[tuple[int, int, int]], task: str, task_probs: torch.Tensor,
             tag_probs: torch.Tensor) -> tuple[Instruction | None, float]:
    """The instruction of ``task`` that the tags of its fields describe, and its confidence."""
    tag_prob, tags = (tag_probs * _ALLOWED_TAGS[task]).max(-1)
    confidence = float(task_probs[TASKS.index(task)]) * float(tag_prob[[i for i, _, _ in real]].mean())
    spans = _questions_to_their_mark(text, _whole_words(text, _tagged_spans(text, real, tags)))
    try:
        return instruction_from_spans(text, task, _language(text, spans), spans), confidence
    except InstructionError:
        return None, confidence


def _tagged_spans(text: str, real: list[tuple[int, int, int]], tags: torch.Tensor) -> list[tuple[str, int, int]]:
    """BIO tags over the tokens with characters -> (field, start, end) character spans; an I after
    another field (or after O) opens a span. A text cut at the window keeps its last tagged field
    running to its end."""
    spans: list[list] = []
    previous = "O"
    for i, start, end in real:
        tag = TAGS[int(tags[i])]
        if tag == "O":
            previous = tag
            continue
        prefix, field = tag.split("-", 1)
        if prefix == "I" and previous != "O" and previous.split("-", 1)[1] == field:
            spans[-1][2] = end
        else:
            spans.append([field, start, end])
        previous = tag
    if spans and TAGS[int(tags[real[-1][0]])] != "O" and real[-1][2] < len(text.rstrip()):
        spans[-1][2] = len(text.rstrip())  # truncated: the last field runs to the end
    return [tuple(s) for s in spans]


def _word_character(c: str) -> bool:
    """A letter or digit of a script that spaces its words (a Han character is a word of its own)."""
    return c.isalnum() and not HAN_CHARACTERS.match(c)


def _whole_words(text: str, spans: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Each span widened to the words it cuts: a field value never starts or ends inside a word,
    but a sub-word tagger can stop there ("... similar to mit" of "mitochondria?")."""
    widened = []
    for field, start, end in spans:
        if end <= start:  # the tagger's spans have characters; nothing to widen
            widened.append((field, start, end))
            continue
        while start > 0 and _word_character(text[start - 1]) and _word_character(text[start]):
            start -= 1
        while end < len(text) and _word_character(text[end - 1]) and _word_character(text[end]):
            end += 1
        widened.append((field, start, end))
    return widened


QUESTION_MARKS = "?？"
# What may close a question after its mark, and what opens it: 'Who recorded "Walking in Fresno?"'.
OPENERS = {'"': '"', "”": "“", "」": "「", "』": "『", ")": "(", "）": "（", "]": "["}


def _questions_to_their_mark(text: str, spans: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """A question ends at its first question mark (and the quotes or brackets after it that close
    what it opened). A tagged question that runs past its mark is cut there ("...of 1879? , can
    you please find it?"); one that stops short of a mark later on its line, with no other field
    starting in between, runs on to it ("What Senate committee did" | " Singer speak to ...?").
    Of the 531 questions of the training corpus, 511 end at their first mark and none of the
    others is changed by either rule, nor any gold span of the held-out sets; of the parser
    experiment's unseen templates 3 of 1,760 gold spans are (a question with a stray closing quote;
    "Name one of the causes. from the following article ?" runs on to that mark)."""
    starts = [start for _, start, _ in spans]
    snapped = []
    for field, start, end in spans:
        if field == "question":
            mark = next((i for i in range(start, end) if text[i] in QUESTION_MARKS), None)
            if mark is not None:
                end = _closed(text, start, mark + 1)
            else:
                line_end = text.find("\n", end)
                line_end = len(text) if line_end < 0 else line_end
                following = next((i for i in range(end, line_end) if text[i] in QUESTION_MARKS), None)
                if following is not None and not any(end <= other <= following for other in starts):
                    end = _closed(text, start, following + 1)
        snapped.append((field, start, end))
    return snapped


def _closed(text: str, start: int, end: int) -> int:
    """``end`` moved past the closing quotes and brackets whose opener ``text[start:end]`` left open."""
    while end < len(text) and text[end] in OPENERS:
        closer, opener = text[end], OPENERS[text[end]]
        inside = text[start:end]
        still_open = inside.count(opener) % 2 == 1 if opener == closer else inside.count(opener) > inside.count(closer)
        if not still_open:
            break
        end += 1
    return end


def _allowed_tags() -> dict[str, torch.Tensor]:
    """Per task, 1 for O and the tags of the fields it has (``options`` -> ``option``), else 0."""
    from instructrec.instructions.model import OPTIONAL_FIELDS, REQUIRED_FIELDS

    masks = {}
    for task in TASKS:
        fields = {"option" if f == "options" else f for f in REQUIRED_FIELDS[task] + OPTIONAL_FIELDS[task]}
        masks[task] = torch.tensor([tag == "O" or tag.split("-", 1)[1] in fields for tag in TAGS], dtype=torch.float)
    return masks


_ALLOWED_TAGS = _allowed_tags()


def _language(text: str, spans: list[tuple]) -> str:
    """``zh`` when CJK characters dominate the wording (or, with no wording, the whole text)."""
    content = set()
    for field, start, end in spans:
        if field in CONTENT_FIELDS:
            content.update(range(start, end))
    wording = "".join(c for i, c in enumerate(text) if i not in content and c.isalpha())
    sample = wording if len(wording) >= 2 else "".join(c for c in text if c.isalpha())
    return "zh" if is_mostly_chinese(sample) else "en"


_LOADED: dict[str, tuple[float, LoadedParser]] = {}
_LOCK = threading.Lock()


def load_parser(folder: str | os.PathLike | None = None) -> LoadedParser:
    """The parser in ``folder`` (default: the model cache), loaded once per folder and version."""
    folder = Path(folder) if folder is not None else parser_dir()
    meta = folder / "parser.json"
    if not meta.is_file():
        raise InputError(
            f"the learned instruction parser has no weights in {folder}",
            hint=f"{TRAIN_HINT} (or set INSTRUCTREC_MODELS to the folder that holds {FOLDER}/)",
        )
    stamp = meta.stat().st_mtime
    with _LOCK:
        cached = _LOADED.get(str(folder))
        if cached is None or cached[0] != stamp:
            cached = (stamp, LoadedParser(folder))
            _LOADED[str(folder)] = cached
    return cached[1]


def learned_parse(texts: list[str]) -> list[tuple[Instruction | None, float]]:
    """Parse ``texts`` in batches: per text, its Instruction (None where the tags form none) and a
    confidence in [0, 1]. Never raises for a text; missing weights raise :class:`InputError`
    naming ``instructrec train-parser``."""
    return load_parser().parse(list(texts))


# -- the command ----------------------------------------------------------------------------------
