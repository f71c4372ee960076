"""The ``instructrec`` command: LightningCLI's ``fit/validate/test/predict`` from YAML configs.

Model and data are chosen by ``class_path`` in the config (LightningCLI subclass mode). The CLI
links the model's backbone to the data module's tokenizer, and the data's label set into the
model. Every run saves its full config beside its logs and sends it to the logger (W&B, offline
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
            parser.link_arguments("data.label_names", "model.init_args.label_names", apply_on="instantiate")
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


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    run_lightning(argv)


if __name__ == "__main__":
    main()
