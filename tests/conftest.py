"""Shared test fixtures. Tests run offline: no hub, no dataset downloads, no W&B."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from instructrec.paths import data_root  # noqa: E402

# Test models are tiny: on 2 shared cores, intra-op threads cost far more in synchronisation than
# they gain (measured: a tiny reader's fit step 40 s with 2 threads, 0.9 s with 1).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared public data sets; tests that need them skip where they are absent."""
    root = data_root()
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root}; set INSTRUCTREC_DATA")
    return root
