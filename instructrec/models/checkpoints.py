"""Rebuild one of our LightningModules from a checkpoint file, loading only tensors and plain
data (``weights_only=True``): the one place that export and distillation teachers read checkpoints."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import torch

DEFAULT_CLASS = "instructrec.models.MultiTaskModule"


def load_module(path: str | Path, default_class: str = DEFAULT_CLASS) -> torch.nn.Module:
    """The module a checkpoint was saved from, with its weights.

    The class comes from the hyperparameters' ``_class_path`` (LightningCLI writes it), else
    ``default_class``. Hyperparameters the class does not take (LightningCLI's ``_``-prefixed
    keys among them) are dropped, and ``pretrained`` is turned off: the checkpoint has the weights.
    """
    saved = torch.load(path, map_location="cpu", weights_only=True)
    hparams = dict(saved.get("hyper_parameters") or {})
    module_name, _, class_name = (hparams.get("_class_path") or default_class).rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    accepted = inspect.signature(cls.__init__).parameters
    arguments = {k: v for k, v in hparams.items() if not k.startswith("_") and k in accepted}
    if "pretrained" in accepted:
        arguments["pretrained"] = False
    model = cls(**arguments)
    model.load_state_dict(saved["state_dict"])
    return model
