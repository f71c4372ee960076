""":class:`Instruction` -> instruction text, the inverse of :func:`parse_instruction`.

The text is written in the instruction's language, one marker per line, in the order of
``REQUIRED_FIELDS`` then the answer::

    Question: Who wrote Hamlet?          问题：谁写了《哈姆雷特》？
    Context: Hamlet is a play by ...     上下文：……
    Answer: Shakespeare                  答案：莎士比亚

An ``instruction`` (classification, qa) comes first, on its own lines without a blank line after
it (so that rendered instructions can be stored one per blank-line-separated block). Options
are written ``a, b, c`` on the marker's line when that reads back as the same list, else one per
line after ``Options:`` (a ``- `` bullet is added where an option itself starts with one).

Values are escaped only where they must be (see :mod:`~instructrec.instructions.markers`): a colon
that would end a marker gets a backslash, a backslash run before a colon is doubled. So
``parse_instruction(render(x)) == x`` for every valid instruction, with one exception that is
refused rather than written ambiguously: translation languages must read back from their marker
(one line, no colon or backslash; an English source cannot contain the word ``to`` between spaces,
a Chinese one cannot contain ``翻译成``).
"""

from __future__ import annotations

from instructrec.instructions.markers import (
    MARKER_END,
    MARKER_WORDS,
    TRANSLATE,
    TRANSLATION_MARKER,
    escape,
    find_markers,
    split_options,
)
from instructrec.instructions.model import REQUIRED_FIELDS, Instruction, InstructionError


def render(instruction: Instruction) -> str:
    """The instruction's text; parsing it gives back ``instruction``."""
    if not isinstance(instruction, Instruction):
        raise InstructionError(f"render needs an Instruction, got {type(instruction).__name__}")
    language, fields = instruction.language, instruction.fields
    lines = []
    if "instruction" in fields:
        lines.append(escape(fields["instruction"]))
    for field in REQUIRED_FIELDS[instruction.task] + ("answer",):
        if field not in fields or field in ("source_language", "target_language"):
            continue
        if instruction.task == "translation" and field == "text":
            lines.append(_translation_line(language, fields))
        elif field == "options":
            lines.append(_options_line(language, fields["options"]))
        else:
            lines.append(_field_line(language, field, fields[field]))
    return "\n".join(lines)


def _marker(language: str, field: str) -> str:
    return MARKER_WORDS[language][field][0] + MARKER_END[language]


def _field_line(language: str, field: str, value: str) -> str:
    marker = _marker(language, field)
    return marker + escape(value, before=marker)


def _options_line(language: str, options: list[str]) -> str:
    marker = _marker(language, "options")
    one_line = ", ".join(options)
    if split_options(one_line) == options:
        return marker + escape(one_line, before=marker)
    bulleted = ("- " + o if o.startswith(("- ", "* ")) else o for o in options)
    return marker.rstrip() + "\n" + escape("\n".join(bulleted), before="\n")


def _translation_line(language: str, fields: dict) -> str:
    source, target = fields["source_language"], fields["target_language"]
    marker = TRANSLATION_MARKER[language].format(source=source, target=target)
    found = [(m.start, m.end, m.field, m.source, m.target) for m in find_markers(marker)]
    if found != [(0, len(marker.rstrip()), TRANSLATE, source, target)]:
        raise InstructionError(
            f"cannot write the languages {source!r} -> {target!r} in a translation marker that "
            "reads back the same: a language is one line without colons or backslashes, and a "
            "source language cannot contain ' to ' (English) or '翻译成' (Chinese)"
        )
    return marker + escape(fields["text"], before=marker)
