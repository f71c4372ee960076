"""Read checkpoint files without letting them choose code: the one place that ``export``, ``ask``,
distillation teachers and the CLI's ``--ckpt_path`` read checkpoints.

A checkpoint is data, but LightningCLI writes the module's class into it
(``hyper_parameters["_class_path"]``) and Lightning would import whatever class or
``_instantiator`` it names. Loading only tensors and plain data (``weights_only=True``) is not
enough: the class path is plain data too. So a class path read from a file is honoured only when it
names one of :data:`MODULE_CLASSES`, instructrec's own LightningModules; anything else is refused
with :class:`CheckpointError` before any import.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

import torch

from instructrec.errors import InputError

# The modules a checkpoint may name, each under the paths a config may spell it with: the package
# that exports it and the file that defines it. Add a new family here, and nowhere else.
_FAMILIES = {
    "MultiTaskModule": ("instructrec.models", "instructrec.models.multitask"),
    "QAReasoningModule": ("instructrec.models", "instructrec.models.qa_reasoning"),
    "DistillationModule": ("instructrec.distill", "instructrec.distill.module"),
    "GenerationModule": ("instructrec.models", "instructrec.models.generation"),
    "GenerationDistillationModule": ("instructrec.distill", "instructrec.distill.generation"),
    "TwoTowerModule": ("instructrec.recommendation", "instructrec.recommendation.two_tower"),
}
MODULE_CLASSES: dict[str, tuple[str, str]] = {
    f"{package}.{name}": (defining, name)
    for name, (exported, defining) in _FAMILIES.items()
    for package in (exported, defining)
}
DEFAULT_CLASS = "instructrec.models.MultiTaskModule"
# What LightningCLI writes as ``_instantiator`` (it rebuilds the module from ``_class_path``, which
# is checked too); ``load_from_checkpoint`` would import any other value.
LIGHTNING_INSTANTIATOR = "lightning.pytorch.cli.instantiate_module"


class CheckpointError(InputError):
    """A checkpoint that cannot be used: missing, unreadable, or naming code that is not ours."""


def module_class(class_path: str, source: str | None = None) -> type:
    """The LightningModule class that ``class_path`` names, if it is one of :data:`MODULE_CLASSES`."""
    if not isinstance(class_path, str) or class_path not in MODULE_CLASSES:
        raise CheckpointError(
            f"the checkpoint names the class {class_path!r}, which is not one of instructrec's modules; "
            "refusing to import it",
            source=source,
            hint=f"a checkpoint may name only {', '.join(sorted(MODULE_CLASSES))}",
        )
    module_name, class_name = MODULE_CLASSES[class_path]
    return getattr(importlib.import_module(module_name), class_name)


def read_checkpoint(path: str | Path, *, mmap: bool = False) -> dict[str, Any]:
    """A checkpoint's contents, loaded with ``weights_only=True`` and checked: a dict whose
    hyper-parameters name no code outside :data:`MODULE_CLASSES`. Every way a file can fail
    (missing, empty, truncated, not a checkpoint, holding Python objects) is a :class:`CheckpointError`.

    ``mmap``: map the tensors instead of reading them, for a check whose caller loads the file
    again (``--ckpt_path``: Lightning does); files ``torch.save`` wrote before its zip format are
    read whole."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise CheckpointError("checkpoint file does not exist", source=source)
    try:
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as error:
            if not mmap or "mmap can only be used" not in str(error):
                raise
            saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError... for broken files
        detail = _torch_reason(error)
        if "Unsupported global" in detail:  # weights_only refused a class: it could have run code
            raise CheckpointError(
                f"the checkpoint holds Python objects besides tensors and plain data; refused ({detail})", source=source
            ) from None
        raise CheckpointError(
            f"not a readable checkpoint (empty, truncated, or not written by torch.save): {detail}", source=source
        ) from None
    if not isinstance(saved, dict):
        raise CheckpointError(f"not a Lightning checkpoint: it holds a {type(saved).__name__}, not a dict", source=source)
    hparams = saved.get("hyper_parameters") or {}
    if not isinstance(hparams, dict):
        raise CheckpointError("its hyper_parameters are not a mapping", source=source)
    if "_class_path" in hparams:
        module_class(hparams["_class_path"], source)
    if hparams.get("_instantiator", LIGHTNING_INSTANTIATOR) != LIGHTNING_INSTANTIATOR:
        raise CheckpointError(
            f"the checkpoint names the instantiator {hparams['_instantiator']!r}, which is not Lightning's "
            f"({LIGHTNING_INSTANTIATOR}); refusing to import it",
            source=source,
        )
    return saved


def _torch_reason(error: Exception) -> str:
    """The line of torch's message that says what went wrong (its weights-only errors open with
    a paragraph of advice to load with ``weights_only=False``, which we never follow)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "WeightsUnpickler error:" in line:
            return line.split("WeightsUnpickler error:", 1)[1].strip()
    return lines[0] if lines else type(error).__name__


def load_module(path: str | Path, default_class: str = DEFAULT_CLASS) -> torch.nn.Module:
    """The module a checkpoint was saved from, with its weights.

    The class comes from the hyperparameters' ``_class_path`` (LightningCLI writes it), else
    ``default_class``; either must be one of :data:`MODULE_CLASSES`. Hyperparameters the class
    does not take (LightningCLI's ``_``-prefixed keys among them) are dropped, and ``pretrained``
    is turned off: the checkpoint has the weights.
    """
    return module_from_checkpoint(read_checkpoint(path), str(path), default_class)


def module_from_checkpoint(saved: dict[str, Any], source: str, default_class: str = DEFAULT_CLASS) -> torch.nn.Module:
    """:func:`load_module` for a checkpoint already read (and checked) by :func:`read_checkpoint`."""
    if "state_dict" not in saved:
        raise CheckpointError("not a Lightning checkpoint: it has no state_dict", source=source)
    hparams = dict(saved.get("hyper_parameters") or {})
    cls = module_class(hparams.get("_class_path") or default_class, source)
    accepted = inspect.signature(cls.__init__).parameters
    arguments = {k: v for k, v in hparams.items() if not k.startswith("_") and k in accepted}
    if "pretrained" in accepted:
        arguments["pretrained"] = False
    try:
        model = cls(**arguments)
        state = {**saved, "state_dict": dict(saved["state_dict"])}
        model.on_load_checkpoint(state)  # as Lightning's load_from_checkpoint: a module may add what it left out
        model.load_state_dict(state["state_dict"])
    except (TypeError, KeyError, RuntimeError, ValueError) as error:  # arguments or tensors that do not fit the class
        detail = _torch_reason(error)
        raise CheckpointError(f"its weights or hyper-parameters do not fit {cls.__name__}: {detail}", source=source) from None
    return model
