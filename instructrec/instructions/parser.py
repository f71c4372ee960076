"""Instruction text -> :class:`Instruction`.

The text is cut at its markers (see :mod:`~instructrec.instructions.markers` for what a marker
is): each marker's value runs to the next marker, is unescaped and stripped. Text before the first
marker is the *preamble*. The markers present decide the task, first match wins:

1. a translation marker -> translation; its value is the text, or a ``Text:`` field when the
   marker's value is empty;
2. a question -> qa; the context is ``Context:``/``Passage:``, else ``Text:`` (not both), else
   the preamble (``<passage>\nQuestion: ...``); with a context marker the preamble, if any, is the
   ``instruction`` field (``Answer from the passage.\nQuestion: ...\nContext: ...``);
3. options -> classification; the preamble, if any, is the ``instruction`` field. Without a
   ``Text:`` marker the preamble must open with an imperative (``Classify ...``, ``判断 ...``) and
   its first unescaped colon separates the instruction from the text. When ``Text:`` is the first
   marker and ends a one-line imperative mid-sentence (``Classify the following text: ...``), the
   marker word belongs to the instruction;
4. ``Instruction:``/``Prompt:``/``指令：`` -> generation;
5. only an answer -> generation whose prompt is the preamble; no markers at all -> generation whose
   prompt is the whole text.

Anything else is an :class:`InstructionError` carrying a character offset: markers that form no
task, fields (or a preamble) the task has no place for, a field given twice, a required field
missing or empty. An empty ``Answer:`` means "no answer" (prompts for prediction end that way).

The language is that of the first marker; without markers, ``zh`` when CJK characters are more
than half of the non-space characters.

A question ends at its question mark when a blank line follows it: a paragraph after that which
is not itself a question (``Q: Who ...?\n\nReferring to the passage above, the answer is``) is
wording, the ``instruction`` field (after the preamble's, when both are there), not part of the
question.

``auto`` mode (:func:`read_instruction`) reads more: options and questions written in prose in a
text without markers (:mod:`.prose`), and what the rules cannot read through the learned parser.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Callable

from instructrec.instructions.markers import (
    IMPERATIVE,
    TRANSLATE,
    Marker,
    find_markers,
    guess_language,
    split_options,
    unescape,
)
from instructrec.instructions.model import Instruction, InstructionError
from instructrec.instructions.prose import read_prose

# Fields each task accepts from markers (TRANSLATE is the translation marker itself).
_ACCEPTS = {
    "translation": frozenset({TRANSLATE, "text", "answer"}),
    "qa": frozenset({"question", "context", "text", "answer"}),
    "classification": frozenset({"options", "text", "answer"}),
    "generation": frozenset({"prompt", "answer"}),
}
_UNESCAPED_COLON = re.compile(r"(?<!\\)(?:\\\\)*[:：]")


MODES = ("rules", "learned", "auto")
PROSE_NOTE = "no markers; the structure written in prose was read by rules"
log = logging.getLogger(__name__)
_WARNED: set[str] = set()


@dataclass(frozen=True)
class Reading:
    """What :func:`read_instruction` made of a text: the instruction, which parser read it
    (``rules`` or ``learned``), its confidence (1.0 for the rules), and why ``auto`` fell back to
    the rules when it did (e.g. no learned weights yet) or that it read a structure from prose, else
    None."""

    instruction: Instruction
    method: str
    confidence: float = 1.0
    note: str | None = None


def parse_instruction(text: str, mode: str = "rules") -> Instruction:
    """Parse one instruction; raises :class:`InstructionError` (with an offset) when it is bad.

    ``mode``: ``rules`` (this module's markers; no torch), ``learned`` (the learned parser of
    :mod:`instructrec.models.instruction_parser`, which reads instructions without markers too) or
    ``auto`` (the rules where they find a structure, else the learned parser); see
    :func:`read_instruction`, which also says which parser read the text.
    """
    if mode == "rules":
        return _parse_rules(text)
    return read_instruction(text, mode).instruction


def read_instruction(text: str, mode: str = "auto") -> Reading:
    """Parse one instruction with the parser ``mode`` names, saying which read it.

    ``auto`` keeps the rules' reading when the text has markers and the rules read it. A text
    without markers that writes its options or its question in prose (``Is this review positive or
    negative? ...``, ``(A) ... (B) ...``, ``<passage>\n\nAccording to the text, who ...?``:
    :mod:`.prose`) is read by those rules, with :data:`PROSE_NOTE`.
    Otherwise (no markers, or the rules refuse it) the learned parser reads it. Without learned
    weights, or where the learned parser finds no valid instruction, ``auto`` falls back to the
    rules (their reading, or their error) and says why in :attr:`Reading.note`.
    """
    if mode not in MODES:
        raise InstructionError(f"unknown parse mode {mode!r}; expected one of {', '.join(MODES)}")
    if mode == "rules":
        return Reading(_parse_rules(text), "rules")
    rules_error: InstructionError | None = None
    if mode == "auto":
        markers = find_markers(text) if isinstance(text, str) else None
        try:
            ruled = _parse_rules(text, markers)
        except InstructionError as error:
            ruled, rules_error = None, error
        if ruled is not None and markers:
            return Reading(ruled, "rules")
        if not markers:
            prose = read_prose(text)
            if prose is not None:
                return Reading(prose, "rules", 1.0, PROSE_NOTE)
    from instructrec.errors import InputError
    from instructrec.models.instruction_parser import learned_parse

    try:
        learned, confidence = learned_parse([text])[0]
    except InputError as error:  # no weights: the hint says how to get them
        if mode == "learned":
            raise
        note = f"the learned parser is not available ({error.lines()}); the rules read this text"
        if note not in _WARNED:  # once per process, not once per text
            _WARNED.add(note)
            log.warning(note)
        learned, confidence = None, 0.0
    else:
        note = "the learned parser found no valid instruction; the rules read this text"
    if learned is not None:
        return Reading(learned, "learned", confidence)
    if mode == "learned":
        raise InstructionError("the learned parser found no valid instruction in this text", offset=0)
    if rules_error is not None:
        raise rules_error
    return Reading(ruled, "rules", 1.0, note)


def _parse_rules(text: str, markers: list[Marker] | None = None) -> Instruction:
    """The rules' reading; ``markers``: the text's, when the caller has found them already."""
    if not isinstance(text, str):
        raise InstructionError(f"instruction text must be a string, got {type(text).__name__}")
    if not text or text.isspace():
        raise InstructionError("instruction text is empty", offset=0)
    markers = find_markers(text) if markers is None else markers
    if not markers:
        return Instruction("generation", guess_language(text), {"prompt": unescape(text).strip()})
    fields = _collect(text, markers)
    task, build = _decide(text, markers, fields)
    _reject_foreign(text, task, fields)
    values = build(text, markers, fields)
    answer = _value(text, fields, "answer", required=False)
    if answer:
        values["answer"] = answer
    return Instruction(task, markers[0].language, values)


def _collect(text: str, markers: list[Marker]) -> dict[str, tuple[Marker, str]]:
    """field -> (its marker, its raw value); a field given twice is an error."""
    fields, end = {}, len(text)
    for marker in reversed(markers):  # each value runs to the next marker
        fields[marker.field] = (marker, text[marker.end : end])
        end = marker.start
    if len(fields) < len(markers):
        _reject_repeated(text, markers)
    return fields


def _reject_repeated(text: str, markers: list[Marker]) -> None:
    seen: dict[str, Marker] = {}
    for marker in markers:
        first = seen.setdefault(marker.field, marker)
        if first is not marker:
            raise InstructionError(
                f"{_name(marker.field)} given twice: {_spelled(text, marker)!r} repeats "
                f"{_spelled(text, first)!r} at character {first.start}",
                offset=marker.start,
            )


def _reject_foreign(text: str, task: str, fields: dict) -> None:
    """Fields the task has no place for are errors, not silently dropped."""
    if _ACCEPTS[task].issuperset(fields):
        return
    marker = min(marker for field, (marker, _) in fields.items() if field not in _ACCEPTS[task])
    raise InstructionError(
        f"{_spelled(text, marker)!r} ({_name(marker.field)}) does not belong in a {task} "
        "instruction",
        offset=marker.start,
    )


def _no_preamble(text: str, markers: list[Marker], task: str) -> None:
    if text[: markers[0].start].strip():
        raise InstructionError(
            f"text before the first marker {_spelled(text, markers[0])!r} has no place in a {task} "
            "instruction",
            offset=len(text) - len(text.lstrip()),
        )


def _value(text: str, fields: dict, field: str, *, required: bool = True) -> str | None:
    """The unescaped, stripped value of a field; a required one must be there and non-empty."""
    if field not in fields:
        return None
    marker, raw = fields[field]
    value = unescape(raw).strip()
    if not value and required:
        raise _empty(text, marker)
    return value


def _empty(text: str, marker: Marker) -> InstructionError:
    return InstructionError(f"{_spelled(text, marker)!r} has an empty value", offset=marker.start)


def _missing(task: str, field: str, hint: str, marker: Marker) -> InstructionError:
    return InstructionError(f"{task} instruction has no {field}: add {hint}", offset=marker.start)


def _translation(text: str, markers: list[Marker], fields: dict) -> dict:
    _no_preamble(text, markers, "translation")
    marker, raw = fields[TRANSLATE]
    value = unescape(raw).strip()
    if value and "text" in fields:
        raise InstructionError(
            f"translation text given twice: after {_spelled(text, marker)!r} and as "
            f"{_spelled(text, fields['text'][0])!r}",
            offset=fields["text"][0].start,
        )
    value = value or _value(text, fields, "text")
    if not value:
        raise _missing("translation", "text", "it after the translation marker", marker)
    return {"source_language": marker.source, "target_language": marker.target, "text": value}


def _qa(text: str, markers: list[Marker], fields: dict) -> dict:
    if "context" in fields and "text" in fields:
        later = max(fields["context"][0], fields["text"][0])
        raise InstructionError(
            "qa instruction has both a context and a text: give the context once",
            offset=later.start,
        )
    preamble = unescape(text[: markers[0].start]).strip()
    context = _value(text, fields, "context") or _value(text, fields, "text")
    question, wording = _question_and_wording(_value(text, fields, "question"))
    values = {"question": question}
    if context is None:  # "<passage>\nQuestion: ...": the text before the markers is the context
        context, preamble = preamble, ""
    if not context:
        raise _missing("qa", "context", "'Context:' (or '上下文：'), or the passage before the question", fields["question"][0])
    values["context"] = context
    # "Answer from the passage.\nQuestion: ...\nContext: ...", "Q: ...?\n\nAnswer in a word.": wording
    instruction = "\n".join(part for part in (preamble, wording) if part)
    if instruction:
        values["instruction"] = instruction
    return values


_QUESTION_THEN_PARAGRAPH = re.compile(r"[?？][ \t]*\n[ \t]*\n\s*")


def _question_and_wording(question: str) -> tuple[str, str]:
    """A question that ends at ``?`` before a blank line, and the paragraph after it (wording,
    unless it is a question too: then the whole value is the question)."""
    end = _QUESTION_THEN_PARAGRAPH.search(question)
    if end is None:
        return question, ""
    after = question[end.end() :].strip()
    if after.endswith(("?", "？")):
        return question, ""
    return question[: end.start() + 1].strip(), after


def _generation(text: str, markers: list[Marker], fields: dict) -> dict:
    _no_preamble(text, markers, "generation")
    return {"prompt": _value(text, fields, "prompt")}


def _answer_only(text: str, markers: list[Marker], fields: dict) -> dict:
    """A preamble followed only by an answer is generation, the preamble its prompt."""
    prompt = unescape(text[: markers[0].start]).strip()
    if not prompt:
        hint = "it before the answer, or 'Instruction:'"
        raise _missing("generation", "prompt", hint, markers[0])
    return {"prompt": prompt}


def _classification(text: str, markers: list[Marker], fields: dict) -> dict:
    first = markers[0]
    if "text" in fields:
        instruction = _glued_imperative(text, first) or unescape(text[: first.start]).strip()
        values = {"text": _value(text, fields, "text")}
    else:
        instruction, body = _split_imperative(text, first)
        values = {"text": body}
    values["options"] = _options(text, *fields["options"])
    if instruction:
        values["instruction"] = instruction
    return values


def _glued_imperative(text: str, first: Marker) -> str | None:
    """``Classify the following text: ...``: a one-line imperative ending in the Text marker."""
    preamble = text[: first.start]
    if first.field != "text" or "\n" in preamble or "\r" in preamble:
        return None
    stripped = preamble.strip()
    if not stripped or not stripped[-1].isalnum() or not IMPERATIVE.match(stripped):
        return None
    return unescape(text[: first.end - 1]).strip()


def _split_imperative(text: str, first: Marker) -> tuple[str, str]:
    """``Classify ...: <text>`` before the first marker -> (instruction, text)."""
    preamble = text[: first.start]
    start = len(preamble) - len(preamble.lstrip())
    colon = _UNESCAPED_COLON.search(preamble) if IMPERATIVE.match(preamble, start) else None
    if colon is None:
        raise _missing(
            "classification", "text", "'Text:', or open with an imperative ending in a colon "
            "('Classify the sentiment of the following text: ...')", first,
        )
    body = unescape(preamble[colon.end() :]).strip()
    if not body:
        raise InstructionError("classification instruction has an empty text", offset=colon.end())
    return unescape(preamble[: colon.end()])[:-1].strip(), body


def _options(text: str, marker: Marker, raw: str) -> list[str]:
    value = unescape(raw)
    if not value.strip():
        raise _empty(text, marker)
    options = split_options(value)
    if not all(options):
        problem = "include an empty option"
    elif len(set(options)) != len(options):
        problem = "repeat a value"
    else:
        return options
    raise InstructionError(f"options {value.strip()!r} {problem}", offset=marker.start)


# The marker that decides each task, in order of precedence, and what builds the task's fields.
_DECIDERS = {
    TRANSLATE: ("translation", _translation),
    "question": ("qa", _qa),
    "options": ("classification", _classification),
    "prompt": ("generation", _generation),
}


def _decide(text: str, markers: list[Marker], fields: dict) -> tuple[str, Callable]:
    """The task and its builder; markers that decide no task are an error."""
    for field, decided in _DECIDERS.items():
        if field in fields:
            return decided
    if set(fields) == {"answer"}:
        return "generation", _answer_only
    spelled = ", ".join(repr(_spelled(text, m)) for m in markers)
    raise InstructionError(
        f"markers {spelled} form no task: a question (Question:), options (Options:), "
        "a prompt (Instruction:) or a translation marker (Translate X to Y:) is missing",
        offset=markers[0].start,
    )


def _spelled(text: str, marker: Marker) -> str:
    return text[marker.start : marker.end]


def _name(field: str) -> str:
    return "the translation marker" if field == TRANSLATE else f"field {field!r}"
