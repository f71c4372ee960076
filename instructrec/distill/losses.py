"""Distillation losses: each a small module whose docstring gives the tensor shapes.

Why separate modules: a recipe mixes them with weights (and schedules, see :mod:`.schedules`), and
each one is tested alone against a hand computation or a torch reference.

Shapes: ``B`` batch, ``C`` classes, ``S`` sequence length, ``K`` kept top-k entries, ``H``/``H_t``
student/teacher hidden size, ``A`` attention heads.

"Logits" are either classification logits ``(B, C)`` or one of the QA start/end logits ``(B, S)``;
a QA loss is the mean of the start and end losses (:func:`over_spans`). A ``mask`` (``(B, C)`` or
``(B, S)``, true where a position may be predicted: real context tokens for QA) removes positions
from both distributions; rows without any valid position are left out of the mean.

Top-k cached teachers keep only their ``K`` largest logits. :class:`TopKSoftTargetKLLoss` then
renormalises the teacher's distribution over those ``K`` entries (the rest get probability 0) and
compares it with the student's full log-softmax gathered at the same entries:
``T^2 * mean_rows sum_k p_k (log p_k - log q_{idx_k})``. With ``K = C`` it equals the full KL.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from instructrec.batch import IGNORE_LABEL



def _masked(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Logits in float32 with masked positions at ``-inf`` (probability 0)."""
    logits = logits.float()
    return logits if mask is None else logits.masked_fill(~mask.bool(), float("-inf"))


def _row_mean(per_row: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over valid rows; zero (still attached to the graph) when none is valid."""
    if not valid.any():
        return per_row.sum() * 0.0
    return per_row[valid].mean()


def _kl_terms(p_log: torch.Tensor, q_log: torch.Tensor) -> torch.Tensor:
    """``p (log p - log q)`` elementwise, 0 where ``p`` is 0 (``0 log 0 = 0``, masked entries)."""
    p = p_log.exp()
    return torch.where(p > 0, p * (p_log - q_log), torch.zeros_like(p))


class SoftTargetKLLoss(nn.Module):
    """Hinton et al. (2015): ``T^2 * KL(softmax(t / T) || softmax(s / T))``, mean over rows.

    The ``T^2`` factor keeps the gradient scale independent of the temperature. With ``T = 1`` and
    no mask this is ``F.kl_div(s.log_softmax(-1), t.log_softmax(-1), log_target=True,
    reduction="batchmean")``.

    Args (forward):
        student_logits: ``(B, C)`` or ``(B, S)``.
        teacher_logits: the same shape (any float dtype; fp16 cached logits are upcast).
        mask: optional bool ``(B, C)``/``(B, S)``, true at positions to keep.
        temperature: overrides the module's temperature (scheduled temperatures).

    Returns:
        A scalar.
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, student_logits, teacher_logits, mask=None, temperature: float | None = None):
        t = self.temperature if temperature is None else temperature
        q_log = F.log_softmax(_masked(student_logits, mask) / t, dim=-1)
        p_log = F.log_softmax(_masked(teacher_logits, mask) / t, dim=-1)
        per_row = _kl_terms(p_log, q_log).sum(-1)
        valid = torch.ones_like(per_row, dtype=torch.bool) if mask is None else mask.bool().any(-1)
        return t * t * _row_mean(per_row, valid)


class TopKSoftTargetKLLoss(nn.Module):
    """The soft-target KL against a top-k teacher (see the module docstring for the restriction).

    Args (forward):
        student_logits: ``(B, C)`` or ``(B, S)``.
        teacher_values: ``(B, K)`` the teacher's largest logits (masked positions may be ``-inf``).
        teacher_indices: ``(B, K)`` long, their positions in the student's last dimension.
        mask: optional bool like ``student_logits``; the student's softmax runs over kept positions.
        temperature: overrides the module's temperature.

    Returns:
        A scalar, ``T^2 * mean_rows sum_k p_k (log p_k - log q_{idx_k})``.
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, student_logits, teacher_values, teacher_indices, mask=None, temperature: float | None = None):
        t = self.temperature if temperature is None else temperature
        q_log = F.log_softmax(_masked(student_logits, mask) / t, dim=-1).gather(-1, teacher_indices.long())
        p_log = F.log_softmax(teacher_values.float() / t, dim=-1)
        per_row = _kl_terms(p_log, q_log).sum(-1)
        valid = torch.isfinite(teacher_values.float()).any(-1)
        if mask is not None:
            valid &= mask.bool().any(-1)
        return t * t * _row_mean(per_row, valid)


class HardLabelCrossEntropyLoss(nn.Module):
    """Cross-entropy with the gold labels, ignoring ``-100`` (examples without an answer).

    Args (forward):
        student_logits: ``(B, C)`` or ``(B, S)``.
        labels: ``(B,)`` long class (or token position) indices.

    Returns:
        A scalar (0 when every label is ignored).
    """

    def forward(self, student_logits, labels):
        if not (labels != IGNORE_LABEL).any():
            return student_logits.sum() * 0.0
        return F.cross_entropy(student_logits.float(), labels, ignore_index=IGNORE_LABEL)


class HiddenStateMSELoss(nn.Module):
    """TinyBERT/FitNets hidden-state transfer: ``MSE(W h_s + b, h_t)`` over a layer map.

    ``layer_map`` pairs ``(student_index, teacher_index)`` index the encoders' ``hidden_states``
    tuples, where index 0 is the embeddings' output and ``i`` the output of layer ``i``. Each pair
    has its own learned projection ``H -> H_t`` (initialised to the identity when ``H == H_t``).

    Args (forward):
        student_hidden: a sequence of ``(B, S, H)`` tensors (``output_hidden_states``).
        teacher_hidden: a sequence of ``(B, S, H_t)`` tensors.
        attention_mask: optional ``(B, S)``; padding tokens are left out.

    Returns:
        A scalar: per pair, the squared error averaged over real tokens and ``H_t``; then the mean
        over pairs.
    """

    def __init__(self, student_size: int, teacher_size: int, layer_map: Sequence[Sequence[int]]) -> None:
        super().__init__()
        self.layer_map = [tuple(int(i) for i in pair) for pair in layer_map]
        if not self.layer_map:
            raise ValueError("HiddenStateMSELoss needs a non-empty layer map")
        self.projections = nn.ModuleList(nn.Linear(student_size, teacher_size) for _ in self.layer_map)
        if student_size == teacher_size:
            for projection in self.projections:
                nn.init.eye_(projection.weight)
                nn.init.zeros_(projection.bias)

    def forward(self, student_hidden, teacher_hidden, attention_mask=None):
        losses = []
        for (s, t), projection in zip(self.layer_map, self.projections):
            projected = projection(student_hidden[s].float())
            error = (projected - teacher_hidden[t].float()).pow(2).mean(-1)  # (B, S)
            losses.append(_token_mean(error, attention_mask))
        return torch.stack(losses).mean()


class AttentionTransferLoss(nn.Module):
    """Attention-distribution transfer over a layer map, MiniLM or TinyBERT style.

    ``layer_map`` pairs ``(student_layer, teacher_layer)`` index the ``attentions`` tuples (0 is the
    first layer). Student and teacher need the same number of heads.

    * ``minilm`` (Wang et al. 2020): ``KL(A_t || A_s)`` of each head's attention distribution per
      query token, averaged over heads and real query tokens.
    * ``tinybert`` (Jiao et al. 2020): the mean squared error between the attention matrices,
      averaged over heads, real query tokens and key positions ``S``. TinyBERT uses pre-softmax
      scores; transformers returns probabilities, so this compares probabilities.

    Args (forward):
        student_attentions: a sequence of ``(B, A, S, S)`` attention probabilities.
        teacher_attentions: a sequence of ``(B, A, S, S)``.
        attention_mask: optional ``(B, S)``; padding query rows are left out (padding keys have
            probability 0 in both).

    Returns:
        A scalar, the mean over layer pairs.
    """

    STYLES = ("minilm", "tinybert")

    def __init__(self, layer_map: Sequence[Sequence[int]], style: str = "minilm") -> None:
        super().__init__()
        if style not in self.STYLES:
            raise ValueError(f"attention transfer style must be one of {self.STYLES}, got {style!r}")
        self.layer_map = [tuple(int(i) for i in pair) for pair in layer_map]
        if not self.layer_map:
            raise ValueError("AttentionTransferLoss needs a non-empty layer map")
        self.style = style

    def forward(self, student_attentions, teacher_attentions, attention_mask=None):
        losses = []
        for s, t in self.layer_map:
            student, teacher = student_attentions[s].float(), teacher_attentions[t].float()
            if student.shape != teacher.shape:
                raise ValueError(f"attention shapes differ: student {tuple(student.shape)}, teacher {tuple(teacher.shape)}")
            if self.style == "minilm":
                tiny = torch.finfo(torch.float32).tiny
                terms = torch.where(teacher > 0, teacher * (teacher.clamp_min(tiny).log() - student.clamp_min(tiny).log()), 0.0)
                per_query = terms.sum(-1)  # (B, A, S)
            else:
                per_query = (student - teacher).pow(2).mean(-1)
            per_token = per_query.mean(1)  # heads -> (B, S)
            losses.append(_token_mean(per_token, attention_mask))
        return torch.stack(losses).mean()


def _token_mean(values: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``(B, S)`` values over real tokens."""
    if attention_mask is None:
        return values.mean()
    weights = attention_mask.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp_min(1.0)


def over_spans(loss: Callable[..., torch.Tensor], student, teacher, **kwargs) -> torch.Tensor:
    """Apply a per-logits loss to classification logits, or average it over QA (start, end) pairs.

    ``student`` and ``teacher`` are both tensors or both ``(start, end)`` tuples; a tuple-valued
    keyword (e.g. top-k ``teacher_indices``) is split the same way.
    """
    if isinstance(student, torch.Tensor):
        return loss(student, teacher, **kwargs)
    parts = []
    for k, (s, t) in enumerate(zip(student, teacher)):
        parts.append(loss(s, t, **{key: v[k] if isinstance(v, tuple) else v for key, v in kwargs.items()}))
    return torch.stack(parts).mean()
