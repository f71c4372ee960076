"""The ``instructrec`` command: LightningCLI's ``fit/validate/test/predict`` from YAML configs.

Model and data are chosen by ``class_path`` in the config (LightningCLI subclass mode). The CLI
links the model's backbone to the data module's tokenizer, and the data's tasks (names, types,
label sets) into the model. The other commands (:mod:`instructrec.commands`: ``export``,
``evaluate-squad``, ``cache-teacher``, ``ask``...) are dispatched here, outside LightningCLI. Every run saves its full
config beside its logs and sends it to the logger (W&B, offline
unless ``WANDB_MODE`` says otherwise).

Nothing in the package imports this module.
"""

from __future__ import annotations

import os
import sys
import warnings

# Offline by default: a hub look-up fails at once instead of hanging, and W&B writes locally
# (``wandb sync`` is the user's step). The user's own settings win.
os.environ.setdefault("WANDB_MODE", "offline")

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


def _cli_class():
    from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
    from lightning.pytorch.loggers import Logger

    from instructrec.callbacks import NonFiniteLoss

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
            # Always on: a NaN or infinite loss stops the run (or, with `action: skip`, skips the step).
            parser.add_lightning_class_args(NonFiniteLoss, "non_finite_loss")

        def before_instantiate_classes(self) -> None:
            if self.subcommand is not None:
                place_outputs(self.config[self.subcommand])

        def instantiate_trainer(self, **kwargs):
            """Every run can be resumed exactly (see :func:`instructrec.callbacks.make_resumable`)."""
            from instructrec.callbacks import make_resumable

            return make_resumable(super().instantiate_trainer(**kwargs))

        def before_fit(self) -> None:
            """A resumed fit continues its W&B run (the id is in the checkpoint)."""
            from instructrec.callbacks import continue_wandb_run

            continue_wandb_run(self.trainer, self.config[self.subcommand].get("ckpt_path"))

        def after_fit(self) -> None:
            options = self.config[self.subcommand]
            if options.get("test_after_fit"):
                checkpoint = "best" if self.trainer.checkpoint_callback and self.trainer.checkpoint_callback.best_model_path else None
                self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=checkpoint)
            texts = options.get("show_predictions") or []
            if texts and self.trainer.is_global_zero:
                from instructrec.predictions import predict_texts, print_predictions

                print_predictions(texts, predict_texts(self.model, self.datamodule, texts))

        def parse_arguments(self, parser, args) -> None:
            """Parse, then check ``--ckpt_path`` before LightningCLI reads the checkpoint's
            hyper-parameters into the config: a class it names must be one of ours (see
            :mod:`instructrec.models.checkpoints`), and it is loaded with ``weights_only=True``
            unless the command line says otherwise."""
            super().parse_arguments(parser, args)
            options = self.config.get(self.config.get("subcommand") or "", None)
            if options is None:
                return
            if "weights_only" in options and options["weights_only"] is None:
                options["weights_only"] = True
            check_ckpt_path(options.get("ckpt_path"))

    return InstructRecCLI, LoggerSaveConfigCallback


# Init arguments of loggers and callbacks that name the folder they write to.
OUTPUT_ARGUMENTS = ("save_dir", "dirpath", "output_dir")


def place_outputs(config) -> None:
    """Put a run's outputs under ``trainer.default_root_dir`` and refuse unwritable places early.

    A relative ``save_dir`` (loggers), ``dirpath`` (ModelCheckpoint) or ``output_dir`` (prediction
    writers) is taken relative to ``default_root_dir``, and a logger without a ``save_dir`` writes
    there, so that one ``--trainer.default_root_dir`` moves everything a run writes. Every such
    folder, and the data cache, must be writable before any work starts (an
    :class:`~instructrec.errors.InputError` names the option and the path otherwise).
    """
    from instructrec.paths import resolve_path, writable_folder

    trainer = config["trainer"]
    root = writable_folder(trainer.get("default_root_dir") or os.getcwd(), "trainer.default_root_dir")
    trainer["default_root_dir"] = str(root)
    loggers = trainer.get("logger")
    for option, items in (("trainer.logger", loggers if isinstance(loggers, list) else [loggers]),
                          ("trainer.callbacks", trainer.get("callbacks") or [])):
        for item in items:
            init_args = getattr(item, "init_args", None)
            if init_args is None:  # `logger: false`, or no logger
                continue
            for name in (name for name in OUTPUT_ARGUMENTS if name in init_args):
                value = init_args[name]
                if value is None and name != "save_dir":
                    continue  # Lightning's own default place (under the logger's folder)
                folder = root if value in (None, ".") else resolve_path(value)
                folder = folder if folder.is_absolute() or folder == root else root / folder
                init_args[name] = str(writable_folder(folder, f"{option} {item.class_path.rsplit('.', 1)[-1]}.{name}"))
    data = getattr(config.get("data"), "init_args", None)
    if data is not None and data.get("cache_dir"):
        writable_folder(data["cache_dir"], "data.init_args.cache_dir")


# ``--ckpt_path`` words that Lightning resolves itself to checkpoints its callbacks wrote.
CKPT_PATH_WORDS = ("last", "best", "hpc", "registry")


def check_ckpt_path(ckpt_path: str | None) -> None:
    """Refuse a ``--ckpt_path`` that is missing, unreadable or names code that is not ours."""
    if not ckpt_path or ckpt_path in CKPT_PATH_WORDS or str(ckpt_path).startswith("registry:"):
        return
    from instructrec.models.checkpoints import CheckpointError, read_checkpoint

    if "://" in str(ckpt_path):
        raise CheckpointError(
            "remote checkpoints are not loaded (Lightning would unpickle them with weights_only=False)",
            source=str(ckpt_path),
            hint="download the file and pass its local path",
        )
    read_checkpoint(ckpt_path, mmap=True)  # Lightning reads it again: only the hyper-parameters matter here


def run_lightning(args: list[str] | None = None, trainer_defaults: dict | None = None):
    """LightningCLI over any instructrec model and data module, as configured; ``trainer_defaults``
    (e.g. ``{"callbacks": [...]}``, added to the config's) for callers such as ``instructrec tune``."""
    from lightning import LightningDataModule, LightningModule

    cli_class, save_callback = _cli_class()
    with warnings.catch_warnings():
        # `args` is always the whole command line here (main's, or a study's run), so Lightning's
        # warning about `args` beside sys.argv would only print the command twice on every run.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended", category=UserWarning)
        # torch deprecates the LeafSpec check Lightning's batch flattening still makes: a line per
        # loader on every run, about Lightning's code, that no user can act on.
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        return cli_class(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=save_callback,
            save_config_kwargs={"overwrite": True},
            seed_everything_default=0,
            auto_configure_optimizers=False,
            trainer_defaults=trainer_defaults or {},
            args=args,
        )


def main(argv: list[str] | None = None) -> None:
    """Run a command. Bad input (:class:`~instructrec.errors.InputError`) is printed as one or two
    lines and exits with status 2; ``--debug`` (anywhere) or ``INSTRUCTREC_DEBUG=1`` shows its
    traceback instead."""
    from instructrec.errors import DEBUG_VARIABLE, InputError, debugging

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or debugging()
    argv = [arg for arg in argv if arg != "--debug"]
    try:
        status = _dispatch(argv)
    except Exception as raised:
        # jsonargparse reports a constructor's error as a ValueError raised while handling it
        error = raised if isinstance(raised, InputError) else raised.__cause__ or raised.__context__
        if debug or not isinstance(error, InputError):
            raise
        print(f"instructrec: error: {error.lines()}", file=sys.stderr)
        if not error.hint:
            print(f"  (--debug or {DEBUG_VARIABLE}=1 shows the traceback)", file=sys.stderr)
        sys.exit(2)
    if status:
        sys.exit(status)


def _dispatch(argv: list[str]) -> int:
    from instructrec.commands import COMMANDS, run

    if argv and argv[0] in COMMANDS:
        return run(argv[0], argv[1:])
    if not argv or argv[0] in ("-h", "--help"):
        print("more commands: " + "; ".join(f"{name}: {summary}" for name, (_, summary) in COMMANDS.items()))
        print("any command: --debug (or INSTRUCTREC_DEBUG=1) shows the traceback of an input error")
    run_lightning(argv)
    return 0


if __name__ == "__main__":
    main()
