"""Examples -> model features, per task: the checks that make an example usable, and the batched
tokenisation that ``datasets.Dataset.map`` runs.

Classification: the model reads the rendered instruction without its answer; the label is the
answer's index in the label set (the options every example shares). Extractive QA: question and
context are encoded as a pair in doc-stride windows (:mod:`instructrec.data.qa_features`). With
closed answers (yes/no, counts, lists: what a span of the context cannot be), an example whose
answer its context does not hold as a word is labelled with that answer's class and "no span" (CLS)
in every window; one whose context holds it is labelled with the span, as without them.
"""

from __future__ import annotations

import re
from typing import Callable

from instructrec.batch import IGNORE_LABEL, SPAN_CLASS
from instructrec.data.loading import Example
from instructrec.data.qa_features import answer_char_span, prepare_qa_features
from instructrec.instructions import Instruction, InstructionError, render

ENCODED_TASKS = ("classification", "qa")


def check_task(task: str, closed_answers: list[str] | None = None) -> Callable[[Instruction], None]:
    """A check that rejects instructions of another task (one data module, one task), and QA
    answers that are not in their context (with ``closed_answers``: as a word) nor one of them."""
    closed = set(closed_answers or ())

    def check(instruction: Instruction) -> None:
        if instruction.task != task:
            raise InstructionError(f"expected a {task} instruction, got {instruction.task}")
        if task != "qa" or instruction.answer is None:
            return
        context, answer = instruction.fields["context"], instruction.answer
        if closed_answers is None:
            if answer_char_span(context, answer) is None:
                raise InstructionError(f"answer {answer!r} does not occur in the context")
        elif answer not in closed and word_occurrence(context, answer) is None:
            raise InstructionError(f"answer {answer!r} does not occur in the context as a word nor is one of the "
                                   f"closed answers {sorted(closed)}")

    return check


def word_occurrence(context: str, answer: str, hint: int | None = None) -> int | None:
    """Where ``answer`` occurs in ``context`` as whole words (not "no" in "north", nor "one" in
    "someone"): at ``hint`` when it does there, else its first such occurrence; None if nowhere.
    Only Latin letters and digits count as word characters at its edges, so a Chinese answer inside
    a Chinese sentence (no spaces between words) still occurs."""
    if not answer:
        return None
    before = "(?<![A-Za-z0-9])" if answer[0].isascii() and answer[0].isalnum() else ""
    after = "(?![A-Za-z0-9])" if answer[-1].isascii() and answer[-1].isalnum() else ""
    pattern = re.compile(before + re.escape(answer) + after)
    if hint is not None and hint >= 0 and pattern.match(context, hint):
        return hint
    found = pattern.search(context)
    return None if found is None else found.start()


def answers_outside_context(examples: list[Example]) -> list[str]:
    """The QA answers that some example's context does not hold as a word, sorted: what a reader
    must choose rather than extract (``closed_answers="auto"``)."""
    outside = {
        e.instruction.answer
        for e in examples
        if e.instruction.answer is not None and word_occurrence(e.instruction.fields["context"], e.instruction.answer) is None
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
    examples: list[Example],
    references: dict[str, list[dict]] | None = None,
    closed_answers: list[str] | None = None,
    evidence: dict[str, list[dict]] | None = None,
) -> dict[str, list]:
    """The QA columns; ``answers`` are the reference answers' texts that score a prediction: those
    of ``references`` (``{"text", "answer_start"}`` per answer of a raw record, e.g. every
    annotator's answer of a SQuAD question) where it has the example's id, else the instruction's
    own answer (none for an unanswerable question). ``answer_start`` is where the first reference
    with the instruction's answer text starts, when known: labels then point at that occurrence,
    not at the text's first one. With ``closed_answers`` (None: no such column), ``answer_class``
    is :data:`~instructrec.batch.SPAN_CLASS` for an answer its context holds as a word (extract it
    there: at ``answer_start`` when it is a word there), else 1 + its index among them (``answer``
    None: no span to extract), or IGNORE_LABEL for no answer. So one answer text can be extracted in
    one task and chosen in another ("kitchen" told in bAbI task 1, inferred from "hungry" in task
    20). With ``evidence`` (``{"text", "start"}`` passages per example id, see
    :func:`~instructrec.data.sources.evidence_spans`), ``evidence`` holds each passage's
    ``[start, end)`` characters in the instruction's context."""
    fields = [e.instruction.fields for e in examples]
    references = references or {}
    answers = [f.get("answer") for f in fields]
    starts = [_answer_start(references.get(e.id, []), answer) for e, answer in zip(examples, answers)]
    extra = {}
    if closed_answers is not None:
        index = {answer: 1 + i for i, answer in enumerate(closed_answers)}
        starts = [None if a is None else word_occurrence(f["context"], a, s) for f, a, s in zip(fields, answers, starts)]
        extra["answer_class"] = [
            IGNORE_LABEL if a is None else SPAN_CLASS if s is not None else index[a] for a, s in zip(answers, starts)
        ]
        answers = [a if s is not None else None for a, s in zip(answers, starts)]
    if evidence is not None:
        extra["evidence"] = [locate_evidence(evidence.get(e.id, []), f["context"], e.id) for e, f in zip(examples, fields)]
    return {
        "example_id": [e.id for e in examples],
        "question": [f["question"] for f in fields],
        "context": [f["context"] for f in fields],
        "answer": answers,
        "answer_start": starts,
        "answers": [
            [a["text"] for a in references[e.id]] if e.id in references else [f["answer"]] if "answer" in f else []
            for e, f in zip(examples, fields)
        ],
        **extra,
    }


def locate_evidence(passages: list[dict], context: str, example_id: str) -> list[list[int]]:
    """The ``[start, end)`` characters of each evidence passage in ``context`` (at its ``start``
    when it is there, else its first occurrence)."""
    spans = []
    for passage in passages:
        span = answer_char_span(context, passage["text"], passage.get("start"))
        if span is None:
            raise InstructionError(f"evidence {passage['text']!r} does not occur in the context of {example_id}")
        spans.append(list(span))
    return spans


def support_labels(offsets: list, spans: list[list[int]]) -> list[int]:
    """Per token of one feature: 1 inside an evidence span, 0 elsewhere in the context, and
    IGNORE_LABEL for tokens that are not the context's (``NO_OFFSET``: question, special tokens)."""
    return [
        IGNORE_LABEL if start < 0 else int(any(low <= start and end <= high for low, high in spans))
        for start, end in offsets
    ]


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
        if "evidence" in batch:
            features["support_labels"] = [
                support_labels(offsets, batch["evidence"][i])
                for offsets, i in zip(features["offset_mapping"], features["example_index"])
            ]
        return features

    return encode


