"""The instruction language: text -> :class:`Instruction` -> text, and templates over raw data."""

from instructrec.instructions.model import (
    LANGUAGES,
    OPTIONAL_FIELDS,
    REQUIRED_FIELDS,
    TASKS,
    Instruction,
    InstructionError,
)
from instructrec.instructions.parser import Reading, parse_instruction, read_instruction
from instructrec.instructions.renderer import render

__all__ = [
    "LANGUAGES",
    "OPTIONAL_FIELDS",
    "REQUIRED_FIELDS",
    "TASKS",
    "Instruction",
    "InstructionError",
    "Reading",
    "parse_instruction",
    "read_instruction",
    "render",
]
