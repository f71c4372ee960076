"""The layers import one way: a model, a student or the batch contract never drags in the
instruction parser or the data layer (a fresh interpreter each, so nothing is imported already)."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = """
import sys
{imports}
loaded = sorted(m for m in sys.modules if m.startswith({forbidden!r}))
print(",".join(loaded))
"""


@pytest.mark.parametrize("imports, forbidden", [
    ("from instructrec.models import MultiTaskModule, QAReasoningModule", ("instructrec.data", "instructrec.instructions")),
    ("from instructrec.distill import DistillationModule", ("instructrec.data", "instructrec.instructions")),
    ("import instructrec.batch, instructrec.paths, instructrec.hashing, instructrec.errors", ("torch", "lightning", "instructrec.data")),
    ("import instructrec.instructions", ("torch", "lightning", "instructrec.data", "instructrec.models")),
])
def test_importing_a_layer_does_not_import_the_ones_above_it(imports, forbidden):
    result = subprocess.run([sys.executable, "-c", CHECK.format(imports=imports, forbidden=forbidden)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "", f"{imports} imported {result.stdout.strip()}"
