"""Shared test fixtures. Tests run offline: no hub, no dataset downloads, no W&B."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from instructrec.data.paths import data_root  # noqa: E402


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared public data sets; tests that need them skip where they are absent."""
    root = data_root()
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root}; set INSTRUCTREC_DATA")
    return root
