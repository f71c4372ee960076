"""What the experiment scripts share: offline defaults (set on import, before anything reads
them: no hub, no dataset downloads, no W&B) and a shipped config rewritten for one run's output
folder.

Scripts import it with ``sys.path.insert(0, <experiments folder>)``; it is not part of the package.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")


def run_config(config: Path, out: Path, *, timer: bool = False) -> Path:
    """``config`` with its checkpoints and prediction files under ``out``, no progress bar, and
    (``timer``) Lightning's ``Timer`` callback; written to ``out/config.yaml``."""
    import yaml

    data = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
    callbacks = []
    for callback in data["trainer"].get("callbacks") or []:
        name = callback["class_path"].rsplit(".", 1)[-1]
        if name == "ModelCheckpoint":
            callback["init_args"]["dirpath"] = str(out / "checkpoints")
        elif name in ("QAPredictionWriter", "JsonlPredictionWriter"):
            callback["init_args"]["output_dir"] = str(out / "predictions")
        elif name == "RichProgressBar":
            continue
        callbacks.append(callback)
    if timer:
        # Timer's `interval` defaults to an enum that the saved config cannot hold: give the string.
        callbacks.append({"class_path": "lightning.pytorch.callbacks.Timer", "init_args": {"interval": "step"}})
    data["trainer"]["callbacks"] = callbacks
    out.mkdir(parents=True, exist_ok=True)
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
