"""Examples -> model features, per task: the checks that make an example usable, and the batched
tokenisation that ``datasets.Dataset.map`` runs.

Classification: the model reads the rendered instruction without its answer; the label is the
answer's index in the label set (the options every example shares). Extractive QA: question and
context are encoded as a pair in doc-stride windows (:mod:`instructrec.data.qa_features`); with
closed answers (yes/no, counts, lists: answers a span of the context cannot be), an example whose
answer is one of them is labelled with its class and "no span" (CLS) in every window.
"""

from __future__ import annotations

from typing import Callable

from instructrec.batch import IGNORE_LABEL, SPAN_CLASS
from instructrec.data.loading import Example
from instructrec.data.qa_features import answer_char_span, prepare_qa_features
from instructrec.instructions import Instruction, InstructionError, render

ENCODED_TASKS = ("classification", "qa")


def check_task(task: str, closed_answers: list[str] | None = None) -> Callable[[Instruction], None]:
    """A check that rejects instructions of another task (one data module, one task), and QA
    answers that are neither in their context nor one of the ``closed_answers``."""
    closed = set(closed_answers or ())

    def check(instruction: Instruction) -> None:
        if instruction.task != task:
            raise InstructionError(f"expected a {task} instruction, got {instruction.task}")
        if task == "qa" and instruction.answer is not None and instruction.answer not in closed:
            if answer_char_span(instruction.fields["context"], instruction.answer) is None:
                hint = "" if closed_answers is None else f" nor one of the closed answers {sorted(closed)}"
                raise InstructionError(f"answer {instruction.answer!r} does not occur in the context{hint}")

    return check


def answers_outside_context(examples: list[Example]) -> list[str]:
    """The QA answers that do not occur in their own context, sorted: what a reader must choose
    rather than extract (``closed_answers="auto"``)."""
    outside = {
        e.instruction.answer
        for e in examples
        if e.instruction.answer is not None and answer_char_span(e.instruction.fields["context"], e.instruction.answer) is None
    }
    return sorted(outside)


def check_labels(label_names: list[str]) -> Callable[[Instruction], None]:
    """A check that the options are the label set and the answer is one of them."""
    labels = set(label_names)
    base = check_task("classification")

    def check(instruction: Instruction) -> None:
        base(instruction)
        options = instruction.fields["options"]
        if set(options) != labels:
            raise InstructionError(f"options {options} differ from the label set {label_names}")
        if instruction.answer is not None and instruction.answer not in labels:
            raise InstructionError(f"answer {instruction.answer!r} is not one of the options {options}")

    return check


def classification_columns(examples: list[Example], label_names: list[str]) -> dict[str, list]:
    index = {name: i for i, name in enumerate(label_names)}
    return {
        "example_id": [e.id for e in examples],
        "input_text": [render(e.instruction.without_answer()) for e in examples],
        "labels": [index[e.instruction.answer] if e.instruction.answer is not None else IGNORE_LABEL for e in examples],
    }


def encode_classification(tokenizer, max_length: int) -> Callable[[dict], dict]:
    def encode(batch: dict) -> dict:
        features = tokenizer(batch["input_text"], truncation=True, max_length=max_length)
        features["labels"] = batch["labels"]
        features["example_id"] = batch["example_id"]
        return dict(features)

    return encode


def qa_columns(
    examples: list[Example], references: dict[str, list[dict]] | None = None, closed_answers: list[str] | None = None
) -> dict[str, list]:
    """The QA columns; ``answers`` are the reference answers' texts that score a prediction: those
    of ``references`` (``{"text", "answer_start"}`` per answer of a raw record, e.g. every
    annotator's answer of a SQuAD question) where it has the example's id, else the instruction's
    own answer (none for an unanswerable question). ``answer_start`` is where the first reference
    with the instruction's answer text starts, when known: labels then point at that occurrence,
    not at the text's first one. With ``closed_answers`` (None: no such column), ``answer_class``
    is 1 + the answer's index among them, :data:`~instructrec.batch.SPAN_CLASS` for an answer to
    extract, or IGNORE_LABEL for none; a closed answer is then no span to extract (``answer`` None),
    even where its text happens to occur in the context ("no" in "no longer")."""
    fields = [e.instruction.fields for e in examples]
    references = references or {}
    closed = {} if closed_answers is None else {answer: 1 + i for i, answer in enumerate(closed_answers)}
    extra = {}
    if closed_answers is not None:
        extra["answer_class"] = [
            IGNORE_LABEL if f.get("answer") is None else closed.get(f["answer"], SPAN_CLASS) for f in fields
        ]
    return {
        "example_id": [e.id for e in examples],
        "question": [f["question"] for f in fields],
        "context": [f["context"] for f in fields],
        "answer": [None if f.get("answer") in closed else f.get("answer") for f in fields],
        "answer_start": [_answer_start(references.get(e.id, []), f.get("answer")) for e, f in zip(examples, fields)],
        "answers": [
            [a["text"] for a in references[e.id]] if e.id in references else [f["answer"]] if "answer" in f else []
            for e, f in zip(examples, fields)
        ],
        **extra,
    }


def _answer_start(references: list[dict], answer: str | None) -> int | None:
    return next((a.get("answer_start") for a in references if answer is not None and a["text"] == answer), None)


def encode_qa(tokenizer, max_length: int, doc_stride: int) -> Callable[[dict], dict]:
    def encode(batch: dict) -> dict:
        # The reference's start when the instruction's context has the answer there (it does, unless
        # a template rewrote the context), else the answer's first occurrence.
        starts = [
            None if answer is None else answer_char_span(context, answer, hint)[0]
            for context, answer, hint in zip(batch["context"], batch["answer"], batch["answer_start"])
        ]
        features = prepare_qa_features(
            tokenizer,
            batch["question"],
            batch["context"],
            starts,
            batch["answer"],
            max_length=max_length,
            doc_stride=doc_stride,
        )
        # Per feature, what post-processing and scoring read (TEXT_COLUMNS), and the answer's class.
        for name in ("example_id", "context", "answers", "answer_class"):
            if name in batch:
                features[name] = [batch[name][i] for i in features["example_index"]]
        return features

    return encode


