"""Small builders shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from lightning.pytorch.callbacks import Callback

from instructrec.data.files import write_jsonl
from instructrec.instructions import Instruction, render

SENTIMENT = ["positive", "negative"]


def classification_text(text: str, answer: str | None, options: list[str] = SENTIMENT) -> str:
    fields = {"text": text, "options": list(options)}
    if answer is not None:
        fields["answer"] = answer
    return render(Instruction("classification", "en", fields))


def write_classification(path: Path, rows: list[tuple[str, str | None]], options: list[str] = SENTIMENT) -> Path:
    write_jsonl(path, [{"id": f"r{i}", "text": classification_text(t, a, options)} for i, (t, a) in enumerate(rows)])
    return path


class KillAtStep(Callback):
    """Kills its own process with SIGKILL once ``step`` optimizer steps are done: no handler runs and
    nothing is cleaned up, as when a machine is pre-empted (before the step's checkpoint, if any)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
