"""What a teacher or a student returns for one batch, in one shape for both.

``logits`` is classification logits ``(B, C)`` or the QA pair ``(start, end)``, each ``(B, S)`` with
padding at the float32 minimum (as :class:`instructrec.models.heads.SpanHead` returns them).
``hidden_states`` is ``L + 1`` tensors ``(B, S, H)`` (embeddings first) and ``attentions`` ``L``
tensors ``(B, A, S, S)``, when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import torch

Logits = Union[torch.Tensor, tuple]

@dataclass
class ModelOutputs:
    logits: Logits
    hidden_states: tuple | None = None
    attentions: tuple | None = None


def logit_groups(task_type: str) -> tuple[str, ...]:
    """Names of a task's logits tensors: the batch keys of cached teacher logits derive from them."""
    return ("start_logits", "end_logits") if task_type == "qa" else ("logits",)


def as_groups(logits: Logits) -> tuple:
    """``logits`` as a tuple of tensors in :func:`logit_groups` order."""
    return (logits,) if isinstance(logits, torch.Tensor) else tuple(logits)


def from_groups(parts: tuple | list) -> Logits:
    return parts[0] if len(parts) == 1 else tuple(parts)
