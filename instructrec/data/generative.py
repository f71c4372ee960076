"""Examples -> causal language model features: every task as a chat prompt and its answer.

The prompt is the rendered instruction without its answer, as the user's turn of the backbone's
chat template (with ``system_prompt`` as the system turn when given; None keeps the template's
default); the answer follows as the assistant's turn, ended by the tokenizer's end-of-sequence
token, which is what stops generation. The loss reads the answer tokens only: ``labels`` are
:data:`~instructrec.batch.IGNORE_LABEL` over the prompt.

Generative QA differs from extractive QA in one check: the answer need not occur in the context.
"""

from __future__ import annotations

from typing import Callable

import torch

from instructrec.batch import GENERATION_TEXT_COLUMNS, IGNORE_LABEL, PROMPT_INPUTS
from instructrec.data.loading import Example
from instructrec.instructions import Instruction, InstructionError, render

GENERATIVE_TASKS = ("qa", "translation", "generation", "classification")
# Columns of an encoded row besides the text columns: the model's tensors and the prompt's length.
FEATURE_COLUMNS = ("input_ids", "attention_mask", "labels", "prompt_length", "prompt_truncated")


def check_generative_task(task: str) -> Callable[[Instruction], None]:
    """Rejects instructions of another task (one data module, one task)."""

    def check(instruction: Instruction) -> None:
        if instruction.task != task:
            raise InstructionError(f"expected a {task} instruction, got {instruction.task}")

    return check


def generation_columns(examples: list[Example], references: dict[str, list[dict]] | None = None) -> dict[str, list]:
    """The prompt and answer texts, and the references a generated answer is scored against:
    those of ``references`` (every annotator's answer of a SQuAD question) where it has the
    example's id, else the instruction's answer (none for prediction input)."""
    references = references or {}
    return {
        "example_id": [e.id for e in examples],
        "prompt": [render(e.instruction.without_answer()) for e in examples],
        "answer": [e.instruction.answer for e in examples],
        "references": [
            [a["text"] for a in references[e.id]] if e.id in references
            else [e.instruction.answer] if e.instruction.answer is not None else []
            for e in examples
        ],
    }


def chat_text(tokenizer, prompt: str, system_prompt: str | None = None) -> str:
    """``prompt`` as the user's turn of the tokenizer's chat template, ready for the answer."""
    if not getattr(tokenizer, "chat_template", None):
        raise InstructionError("the backbone's tokenizer has no chat template; generation needs one")
    messages = ([{"role": "system", "content": system_prompt}] if system_prompt is not None else []) + [
        {"role": "user", "content": prompt}
    ]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def prompt_ids(tokenizer, prompt: str, max_length: int, system_prompt: str | None = None) -> tuple[list[int], bool]:
    """The chat-formatted prompt's token ids, at most ``max_length``, and whether it was cut: a long
    prompt loses the end of its user text, never the template's tokens around it."""
    ids = _ids(tokenizer, chat_text(tokenizer, prompt, system_prompt))
    if len(ids) <= max_length:
        return ids, False
    words = _ids(tokenizer, prompt)
    overhead = len(ids) - len(words)
    for slack in (0, 2, 8, 32):  # decoding a cut and re-encoding it may merge tokens differently
        keep = max_length - overhead - slack
        if keep <= 0:
            break
        cut = tokenizer.decode(words[:keep]).strip()
        ids = _ids(tokenizer, chat_text(tokenizer, cut, system_prompt))
        if len(ids) <= max_length:
            return ids, True
    raise InstructionError(f"max_length {max_length} leaves no room for the prompt after the chat template ({overhead} tokens)")


def prompt_batch(tokenizer, prompts: list[str], max_length: int, system_prompt: str | None = None) -> dict:
    """Rendered instructions as one left-padded ``prompt_ids``/``prompt_mask`` batch for
    ``generate``, encoded as the data module encodes prediction input (outside a data module:
    ``ask --generate``, ``serve``)."""
    rows = []
    for prompt in prompts:
        ids, _ = prompt_ids(tokenizer, prompt, max_length, system_prompt)
        rows.append({"input_ids": ids, "labels": ids, "prompt_length": len(ids)})
    return CausalLMCollator(tokenizer.pad_token_id)(rows)


def encode_generation(
    tokenizer, max_length: int, max_answer_length: int, system_prompt: str | None = None
) -> Callable[[dict], dict]:
    """The batched encoder ``datasets.Dataset.map`` runs: prompt + answer + end-of-sequence, the
    prompt at most ``max_length`` tokens, the answer at most ``max_answer_length`` (the end token
    included)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise InstructionError("the backbone's tokenizer has no end-of-sequence token; generation needs one")

    def encode(batch: dict) -> dict:
        rows = {name: [] for name in FEATURE_COLUMNS}
        for prompt, answer in zip(batch["prompt"], batch["answer"]):
            prompt_part, truncated = prompt_ids(tokenizer, prompt, max_length, system_prompt)
            answer_part = [] if answer is None else _ids(tokenizer, answer)[: max_answer_length - 1] + [eos]
            rows["input_ids"].append(prompt_part + answer_part)
            rows["attention_mask"].append([1] * (len(prompt_part) + len(answer_part)))
            rows["labels"].append([IGNORE_LABEL] * len(prompt_part) + answer_part)
            rows["prompt_length"].append(len(prompt_part))
            rows["prompt_truncated"].append(truncated)
        return {**rows, **{name: batch[name] for name in GENERATION_TEXT_COLUMNS}}

    return encode


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


class CausalLMCollator:
    """Rows -> a generation batch (see :mod:`instructrec.batch`): prompt + answer right-padded for
    the loss, and, with ``prompts``, the prompts alone left-padded for ``generate`` (new tokens then
    follow every row's prompt directly) and the rows' text columns as lists."""

    def __init__(self, pad_token_id: int, task: str | None = None, prompts: bool = True) -> None:
        self.pad_token_id = pad_token_id
        self.task = task
        self.prompts = prompts

    def __call__(self, rows: list[dict]) -> dict:
        sequences = [_as_list(row["input_ids"]) for row in rows]
        labels = [_as_list(row["labels"]) for row in rows]
        batch = {
            "input_ids": _pad(sequences, self.pad_token_id, left=False),
            "attention_mask": _pad([[1] * len(s) for s in sequences], 0, left=False),
            "labels": _pad(labels, IGNORE_LABEL, left=False),
        }
        if self.prompts:
            prompts = [s[: int(row["prompt_length"])] for s, row in zip(sequences, rows)]
            batch[PROMPT_INPUTS[0]] = _pad(prompts, self.pad_token_id, left=True)
            batch[PROMPT_INPUTS[1]] = _pad([[1] * len(p) for p in prompts], 0, left=True)
            for name in GENERATION_TEXT_COLUMNS:
                if rows and name in rows[0]:
                    batch[name] = [row[name] for row in rows]
        elif rows and "example_id" in rows[0]:
            batch["example_id"] = [row["example_id"] for row in rows]
        if self.task is not None:
            batch["task"] = self.task
        return batch


def _as_list(value) -> list[int]:
    return value.tolist() if isinstance(value, torch.Tensor) else list(value)


def _pad(rows: list[list[int]], value: int, *, left: bool) -> torch.Tensor:
    width = max((len(r) for r in rows), default=0)
    padded = [([value] * (width - len(r)) + r) if left else (r + [value] * (width - len(r))) for r in rows]
    return torch.tensor(padded, dtype=torch.long)
