"""``instructrec train-parser``: train the learned instruction parser into the model cache (see
:mod:`instructrec.models.instruction_parser`)."""

from __future__ import annotations


def main(argv: list[str]) -> int:
    from instructrec.models.instruction_parser import train_parser_main

    return train_parser_main(argv)
