"""One run of a study: a base config, overlays and ``key: value`` overrides, run through the same
LightningCLI as ``instructrec fit``, in this process, with its outputs in one folder.

Overrides name config keys with dots, as on the command line (``model.init_args.learning_rate``),
and apply both ways: as ``--key=value`` arguments for a run (:func:`cli_arguments`), and into the
YAML of a config that ``instructrec fit --config`` accepts (:func:`apply_overrides`).
"""

from __future__ import annotations

import copy
import functools
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instructrec.errors import InputError


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the git checkout this package runs from, read once per process:
    the first call comes before a study's first run imports the training code, and the process
    keeps that code for its later runs (so a commit made meanwhile is not what they ran). ``dirty``:
    tracked files differed from the commit. None outside a git checkout (an installed wheel)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        commit = _git(root, "rev-parse", "HEAD")
        changed = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(changed)}


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30, check=True).stdout.strip()


def cli_arguments(overrides: dict[str, Any]) -> list[str]:
    """``--key=value`` per override. jsonargparse reads each value as YAML, so values go as JSON,
    except strings that YAML reads back unchanged (paths, class names): ``single: sentiment``
    would otherwise arrive as a mapping."""
    return [f"--{key}={_cli_value(value)}" for key, value in overrides.items()]


def _cli_value(value: Any) -> str:
    import yaml

    if isinstance(value, str):
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value, ensure_ascii=False)


def apply_overrides(config: dict, overrides: dict[str, Any]) -> dict:
    """A copy of a loaded YAML config with each dotted key set (missing levels are created)."""
    result = copy.deepcopy(config)
    for key, value in overrides.items():
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise InputError(f"override {key!r}: {part!r} is {type(child).__name__}, not a mapping")
            node = child
        node[parts[-1]] = value
    return result


def read_yaml(path: str | Path, what: str) -> dict:
    """A YAML mapping (``yaml.safe_load``), or an :class:`InputError` naming the file."""
    import yaml

    from instructrec.paths import resolve_path

    resolved = resolve_path(path)
    if not resolved.is_file():
        raise InputError(f"{what} {resolved} does not exist")
    try:
        data = yaml.safe_load(resolved.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise InputError(f"{what} is not valid YAML: {error}", source=str(resolved)) from None
    if not isinstance(data, dict):
        raise InputError(f"{what} must be a mapping, got {type(data).__name__}", source=str(resolved))
    return data


@dataclass
class RunSpec:
    """What one run is: ``command`` (``fit``) on ``config`` plus ``overlays`` and ``overrides``,
    written under ``root`` with ``seed``."""

    config: str
    root: Path
    seed: int = 0
    overlays: list[str] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    command: str = "fit"
    test: bool = False  # test the best checkpoint after fit (the runs an ablation tabulates)
    logger: dict[str, Any] = field(default_factory=dict)  # W&B group, job type, tags (where the config logs to W&B)

    def arguments(self) -> list[str]:
        args = [self.command, "--config", str(self.config)]
        for overlay in self.overlays:
            args += ["--config", str(overlay)]
        args += cli_arguments(self.overrides)
        args += [f"--seed_everything={self.seed}", f"--trainer.default_root_dir={self.root}"]
        if self.command == "fit":
            args.append(f"--test_after_fit={'true' if self.test else 'false'}")
        if self.logger and logs_to_wandb(self.config, self.overlays):
            args += cli_arguments({f"trainer.logger.init_args.{key}": value for key, value in self.logger.items()})
        return args


def logs_to_wandb(config: str, overlays: list[str]) -> bool:
    """Whether the config (its last overlay that sets one) logs to W&B."""
    logger = None
    for path in [config, *overlays]:
        trainer = read_yaml(path, "config").get("trainer") or {}
        logger = trainer.get("logger", logger)
    return isinstance(logger, dict) and str(logger.get("class_path", "")).endswith("WandbLogger")


def run(spec: RunSpec, callbacks: list | None = None) -> dict[str, Any]:
    """Run it; the metrics it logged last (``trainer.callback_metrics``), plus ``best`` (the
    checkpoint callback's best monitored value) and ``best_model_path`` where there is one."""
    from instructrec.cli import run_lightning

    spec.root.mkdir(parents=True, exist_ok=True)
    cli = run_lightning(spec.arguments(), trainer_defaults={"callbacks": list(callbacks or [])})
    trainer = cli.trainer
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items() if _is_number(value)}
    checkpoint = trainer.checkpoint_callback
    if checkpoint is not None and checkpoint.best_model_score is not None:
        metrics["best"] = float(checkpoint.best_model_score)
        metrics["best_model_path"] = checkpoint.best_model_path
    return metrics


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError, RuntimeError):  # a tensor of several values
        return False
    return True
