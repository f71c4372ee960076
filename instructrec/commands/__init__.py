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
    "tune": ("tune", "an Optuna search over config values, every trial a fit run; the best config as YAML"),
    "serve": ("serve", "a checkpoint behind an HTTP endpoint (LitServe): raw instructions in, JSON answers out"),
    "monitor": ("monitor", "topic x sentiment shares per window of a text stream, with alerts when a topic turns negative"),
    "ablate": ("ablate", "a base config's variants x seeds: CSV, a paper-style table (Markdown, LaTeX) and a plot"),
    "rec-data": ("rec_data", "MovieLens-100K as leakage-free next-item yes/no instruction files (train/val) in a run folder"),
    "recommend": ("recommend", "rank the candidates (options) of a listwise instruction with a next-item checkpoint"),
}


def command_parser(name: str, description: str, options_flag: str = "--config"):
    """The parser every command starts from: ``instructrec NAME``, its description, and
    ``options_flag`` (``--config``; ``tune``, whose ``--config`` is the base run config, says
    ``--options``) reading any option from YAML."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(prog=f"instructrec {name}", description=description)
    parser.add_argument(options_flag, action=ActionConfigFile, help="read options from a YAML file")
    return parser


def run(name: str, argv: list[str]) -> int:
    """Run command ``name`` on ``argv``; its exit status."""
    module = importlib.import_module(f"instructrec.commands.{COMMANDS[name][0]}")
    return module.main(argv)
