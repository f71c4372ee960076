"""The typed form of a parsed instruction.

Plain Python on purpose: the instruction language is usable (and testable) without torch,
Lightning or any model code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping

from instructrec.errors import InputError

Task = Literal["qa", "classification", "translation", "generation"]
Language = Literal["en", "zh"]

TASKS: tuple[str, ...] = ("qa", "classification", "translation", "generation")
LANGUAGES: tuple[str, ...] = ("en", "zh")

# Required fields per task, in the order `render` writes them. `answer` is optional everywhere:
# an instruction without one is prediction input.
REQUIRED_FIELDS: Mapping[str, tuple[str, ...]] = {
    "qa": ("question", "context"),
    "classification": ("text", "options"),
    "translation": ("source_language", "target_language", "text"),
    "generation": ("prompt",),
}
# Optional fields besides `answer`. `instruction` is the prose a classification or qa instruction
# may open with ("Classify the sentiment of the following text", "Answer from the passage below.");
# it is kept so that rendering and parsing round-trip.
OPTIONAL_FIELDS: Mapping[str, tuple[str, ...]] = {
    "qa": ("instruction", "answer"),
    "classification": ("instruction", "answer"),
    "translation": ("answer",),
    "generation": ("answer",),
}


class InstructionError(InputError):
    """Bad instruction text or data; the message says what is wrong and where.

    ``offset`` is the character offset in the instruction text, ``source`` the file and ``record``
    the 1-based record number when the text came from a file (see :class:`~instructrec.errors.InputError`).
    """


@dataclass(frozen=True)
class Instruction:
    """A parsed instruction: its task, its language and its fields.

    Field values are stripped, non-empty strings, except ``options`` (a non-empty list of such
    strings, one line each). Construction validates this, so every ``Instruction`` is renderable.
    """

    task: str
    language: str
    fields: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise InstructionError(f"unknown task {self.task!r}; expected one of {', '.join(TASKS)}")
        if self.language not in LANGUAGES:
            raise InstructionError(f"unknown language {self.language!r}; expected 'en' or 'zh'")
        allowed = REQUIRED_FIELDS[self.task] + OPTIONAL_FIELDS[self.task]
        unknown = sorted(set(self.fields) - set(allowed))
        if unknown:
            raise InstructionError(
                f"{self.task} instruction has unknown field(s) {unknown}; allowed: {list(allowed)}"
            )
        for name in REQUIRED_FIELDS[self.task]:
            if name not in self.fields:
                raise InstructionError(f"{self.task} instruction is missing its {name!r} field")
        for name, value in self.fields.items():
            if name == "options":
                if not isinstance(value, list) or not value:
                    raise InstructionError("'options' must be a non-empty list of strings")
                for option in value:
                    _check_value("an option", option)
                    if "\n" in option or "\r" in option:
                        raise InstructionError(f"option {option!r} spans lines")
                if len(set(value)) != len(value):
                    raise InstructionError(f"options repeat a value: {value}")
            else:
                _check_value(f"field {name!r}", value)

    @property
    def answer(self) -> str | None:
        return self.fields.get("answer")

    def without_answer(self) -> "Instruction":
        """The prediction input: this instruction with its answer removed."""
        fields = {k: v for k, v in self.fields.items() if k != "answer"}
        return Instruction(self.task, self.language, fields)

    def to_dict(self) -> dict:
        return {"task": self.task, "language": self.language, "fields": dict(self.fields)}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Instruction":
        return cls(data["task"], data["language"], dict(data["fields"]))


def _check_value(what: str, value: object) -> None:
    if not isinstance(value, str):
        raise InstructionError(f"{what} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise InstructionError(f"{what} is empty")
    if value != value.strip():
        raise InstructionError(f"{what} has surrounding white space: {value!r}")
