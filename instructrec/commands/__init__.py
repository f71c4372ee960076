"""The commands beside LightningCLI's ``fit/validate/test/predict``, in one place and one style.

Each module here has a ``parser()`` built by :func:`command_parser` (a jsonargparse
``ArgumentParser``: ``--help`` documents every option, and ``--config FILE`` reads any of them from
YAML, as LightningCLI's commands do) and a ``main(argv) -> exit status``. Bad input raises
:class:`~instructrec.errors.InputError`, which the ``instructrec`` command prints in two lines with
exit status 2. The libraries they call (``qa``, ``retrieval``, ``distill``, ``export``) hold no
command code; nothing imports the commands but ``instructrec.cli``.
"""

from __future__ import annotations

import importlib

# name -> (module under instructrec.commands, one-line summary); modules load only when run.
COMMANDS: dict[str, tuple[str, str]] = {
    "export": ("export", "a checkpoint of any family -> transformers folder(s) with a model card"),
    "evaluate-squad": ("evaluate_squad", "score SQuAD predictions as the official v1.1/v2.0 scripts do"),
    "cache-teacher": ("cache_teacher", "run a distillation teacher once and cache its logits"),
    "ask": ("ask", "answer questions from a knowledge base with a QA checkpoint, with the trace of passages"),
    "train-parser": ("train_parser", "train the learned instruction parser into the model cache (minutes on a CPU)"),
}


def command_parser(name: str, description: str):
    """The parser every command starts from: ``instructrec NAME``, its description, ``--config``."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(prog=f"instructrec {name}", description=description)
    parser.add_argument("--config", action=ActionConfigFile, help="read options from a YAML file")
    return parser


def run(name: str, argv: list[str]) -> int:
    """Run command ``name`` on ``argv``; its exit status."""
    module = importlib.import_module(f"instructrec.commands.{COMMANDS[name][0]}")
    return module.main(argv)
