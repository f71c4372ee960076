"""The ``instructrec`` command: LightningCLI's ``fit/validate/test/predict`` from YAML configs.

Model and data are chosen by ``class_path`` in the config (LightningCLI subclass mode). The CLI
links the model's backbone to the data module's tokenizer, and the data's tasks (names, types,
label sets) into the model. The commands of ``COMMANDS`` (``export``, ``evaluate-squad``,
``cache-teacher``, ``ask``) are dispatched here, outside LightningCLI. Every run saves its full
config beside its logs and sends it to the logger (W&B, offline
unless ``WANDB_MODE`` says otherwise).

Nothing in the package imports this module.
"""

from __future__ import annotations

import os
import sys

# Offline by default: a hub look-up fails at once instead of hanging, and W&B writes locally
# (``wandb sync`` is the user's step). The user's own settings win.
os.environ.setdefault("WANDB_MODE", "offline")

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


def _cli_class():
    from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
    from lightning.pytorch.loggers import Logger

    class LoggerSaveConfigCallback(SaveConfigCallback):
        """Save the config beside the run (Lightning's default) and send it to the logger."""

        def save_config(self, trainer, pl_module, stage) -> None:
            if isinstance(trainer.logger, Logger):
                config = self.parser.dump(self.config, skip_none=False, format="yaml")
                trainer.logger.log_hyperparams({"config": config})

    class InstructRecCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            parser.link_arguments("model.init_args.backbone", "data.init_args.tokenizer")
            # Every data module describes its tasks ({name: {"type", "labels"}}); the model builds a head each.
            parser.link_arguments("data.tasks", "model.init_args.tasks", apply_on="instantiate")
            parser.add_argument(
                "--test_after_fit",
                type=bool,
                default=False,
                help="After fit, test the best checkpoint on the data's test split.",
            )
            parser.add_argument(
                "--show_predictions",
                type=list[str],
                default=[],
                help="Raw instructions to predict after fit (and test), printed with their answers.",
            )

        def after_fit(self) -> None:
            options = self.config[self.subcommand]
            if options.get("test_after_fit"):
                checkpoint = "best" if self.trainer.checkpoint_callback and self.trainer.checkpoint_callback.best_model_path else None
                self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=checkpoint)
            texts = options.get("show_predictions") or []
            if texts and self.trainer.is_global_zero:
                from instructrec.predictions import predict_texts, print_predictions

                print_predictions(texts, predict_texts(self.model, self.datamodule, texts))

    return InstructRecCLI, LoggerSaveConfigCallback


def run_lightning(args: list[str] | None = None):
    """LightningCLI over any instructrec model and data module, as configured."""
    from lightning import LightningDataModule, LightningModule

    cli_class, save_callback = _cli_class()
    return cli_class(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=save_callback,
        save_config_kwargs={"overwrite": True},
        seed_everything_default=0,
        auto_configure_optimizers=False,
        args=args,
    )


def export_main(argv: list[str]) -> int:
    """``instructrec export CKPT DIR``: a checkpoint -> a transformers encoder folder plus heads."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="instructrec export",
        description=(
            "Export a MultiTaskModule checkpoint: the encoder and tokenizer in transformers' save_pretrained "
            "format (AutoModel.from_pretrained(DIR) loads it), the heads as heads.safetensors with heads.json "
            "(task, type, labels, tensor shapes). The checkpoint is loaded with weights_only=True."
        ),
    )
    parser.add_argument("checkpoint", help="a .ckpt written by `instructrec fit`")
    parser.add_argument("output_dir", help="folder to write (created; existing files are overwritten)")
    args = parser.parse_args(argv)
    from instructrec.export import export_checkpoint

    written = export_checkpoint(args.checkpoint, args.output_dir)
    print(f"exported {args.checkpoint} -> {written}")
    return 0


def _evaluate_squad(argv: list[str]) -> int:
    from instructrec.qa.commands import evaluate_squad_main

    return evaluate_squad_main(argv)


def _ask(argv: list[str]) -> int:
    from instructrec.qa.ask import ask_main

    return ask_main(argv)


def _cache_teacher(argv: list[str]) -> int:
    from instructrec.distill.commands import cache_teacher_main

    return cache_teacher_main(argv)


# Commands beside LightningCLI's fit/validate/test/predict: name -> (argv -> exit status, summary).
COMMANDS = {
    "export": (export_main, "a checkpoint -> transformers encoder folder + heads"),
    "evaluate-squad": (_evaluate_squad, "score SQuAD predictions as the official v1.1/v2.0 scripts do"),
    "cache-teacher": (_cache_teacher, "run a distillation teacher once and cache its logits"),
    "ask": (_ask, "answer questions from a knowledge base with a QA checkpoint, with the trace of passages"),
}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        status = COMMANDS[argv[0]][0](argv[1:])
        if status:
            sys.exit(status)
        return
    if not argv or argv[0] in ("-h", "--help"):
        print("more commands: " + "; ".join(f"{name}: {summary}" for name, (_, summary) in COMMANDS.items()))
    run_lightning(argv)


if __name__ == "__main__":
    main()
