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


def teacher_columns(task_type: str, top_k: int | None) -> list[str]:
    """The cached columns (and batch keys) for a task type."""
    if top_k is None:
        return [f"teacher_{g}" for g in logit_groups(task_type)]
    return [f"teacher_{g}_topk_{part}" for g in logit_groups(task_type) for part in ("values", "indices")]


def cached_logits(batch: dict, task_type: str):
    """The batch's cached teacher logits, or None.

    Returns:
        ``("full", logits)`` or ``("topk", values, indices)``, each logits-like (a tensor, or a
        ``(start, end)`` tuple for qa).
    """
    groups = logit_groups(task_type)
    pick = lambda names: tuple(batch[n] for n in names)  # noqa: E731
    if all(f"teacher_{g}" in batch for g in groups):
        full = pick(f"teacher_{g}" for g in groups)
        return ("full", full[0] if len(full) == 1 else full)
    if all(f"teacher_{g}_topk_values" in batch for g in groups):
        values = pick(f"teacher_{g}_topk_values" for g in groups)
        indices = pick(f"teacher_{g}_topk_indices" for g in groups)
        return ("topk", *(x[0] if len(x) == 1 else x for x in (values, indices)))
    return None
