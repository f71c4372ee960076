"""Distillation losses against hand computations and torch references."""

import math

import pytest
import torch
from torch.nn import functional as F

from instructrec.distill.losses import (
    AttentionTransferLoss,
    HardLabelCrossEntropyLoss,
    HiddenStateMSELoss,
    SoftTargetKLLoss,
    TopKSoftTargetKLLoss,
    over_spans,
)


def logits(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 3


def test_kl_at_temperature_one_is_torch_kl_div():
    s, t = logits(5, 7, seed=1), logits(5, 7, seed=2)
    expected = F.kl_div(s.log_softmax(-1), t.log_softmax(-1), log_target=True, reduction="batchmean")
    assert torch.allclose(SoftTargetKLLoss(1.0)(s, t), expected, atol=1e-6)


def test_kl_is_scaled_by_temperature_squared_and_matches_a_hand_computation():
    s, t = torch.tensor([[1.0, 2.0, 0.0]]), torch.tensor([[0.0, 3.0, 1.0]])
    T = 2.0
    p = [math.exp(x / T) for x in (0.0, 3.0, 1.0)]
    q = [math.exp(x / T) for x in (1.0, 2.0, 0.0)]
    p = [x / sum(p) for x in p]
    q = [x / sum(q) for x in q]
    hand = T * T * sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    assert SoftTargetKLLoss(T)(s, t).item() == pytest.approx(hand, rel=1e-6)
    # The temperature argument overrides the module's (scheduled temperatures).
    assert SoftTargetKLLoss(1.0)(s, t, temperature=T).item() == pytest.approx(hand, rel=1e-6)
    assert SoftTargetKLLoss(T)(t, t).item() == pytest.approx(0.0, abs=1e-7)


def test_kl_gradient_flows_to_the_student_only():
    s, t = logits(3, 4, seed=1).requires_grad_(), logits(3, 4, seed=2)
    SoftTargetKLLoss(2.0)(s, t).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0


def test_masked_qa_logits_ignore_padding_and_rows_without_positions():
    s, t = logits(3, 6, seed=3), logits(3, 6, seed=4)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    got = SoftTargetKLLoss(1.0)(s, t, mask=mask)
    # Reference: the valid rows, each over its valid positions only.
    rows = [F.kl_div(s[0, :4].log_softmax(-1), t[0, :4].log_softmax(-1), log_target=True, reduction="sum"),
            F.kl_div(s[1].log_softmax(-1), t[1].log_softmax(-1), log_target=True, reduction="sum")]
    assert torch.allclose(got, torch.stack(rows).mean(), atol=1e-6)
    # Garbage in masked positions changes nothing.
    s2, t2 = s.clone(), t.clone()
    s2[0, 4:], t2[0, 4:] = 100.0, -100.0
    assert torch.allclose(SoftTargetKLLoss(1.0)(s2, t2, mask=mask), got)
    assert torch.isfinite(got)


def test_qa_start_end_loss_is_the_mean_of_both():
    ss, se, ts, te = (logits(2, 5, seed=i) for i in range(4))
    loss = SoftTargetKLLoss(1.5)
    both = over_spans(loss, (ss, se), (ts, te))
    assert torch.allclose(both, (loss(ss, ts) + loss(se, te)) / 2)


def test_top_k_with_every_class_equals_the_full_kl():
    s, t = logits(4, 6, seed=5), logits(4, 6, seed=6)
    values, indices = t.topk(6, dim=-1)
    assert torch.allclose(TopKSoftTargetKLLoss(2.0)(s, values, indices), SoftTargetKLLoss(2.0)(s, t), atol=1e-6)


def test_top_k_restriction_is_as_documented():
    """Teacher renormalised over its top-k; student's full log-softmax gathered at those entries."""
    s, t = logits(3, 10, seed=7), logits(3, 10, seed=8)
    T, k = 2.0, 3
    values, indices = t.topk(k, dim=-1)
    p = (values / T).softmax(-1)
    log_q = (s / T).log_softmax(-1).gather(-1, indices)
    hand = T * T * (p * (p.log() - log_q)).sum(-1).mean()
    assert torch.allclose(TopKSoftTargetKLLoss(T)(s, values, indices), hand, atol=1e-6)


def test_top_k_ignores_minus_infinity_padding_entries():
    s = logits(1, 4, seed=9)
    values = torch.tensor([[2.0, 1.0, float("-inf")]])
    indices = torch.tensor([[3, 0, 0]])
    got = TopKSoftTargetKLLoss(1.0)(s, values, indices)
    expected = TopKSoftTargetKLLoss(1.0)(s, values[:, :2], indices[:, :2])
    assert torch.allclose(got, expected) and torch.isfinite(got)


def test_hard_label_cross_entropy_ignores_unlabelled_rows():
    s = logits(3, 4, seed=10)
    labels = torch.tensor([1, -100, 3])
    assert torch.allclose(HardLabelCrossEntropyLoss()(s, labels), F.cross_entropy(s[[0, 2]], labels[[0, 2]]))
    assert HardLabelCrossEntropyLoss()(s, torch.full((3,), -100)).item() == 0.0


def test_hidden_mse_through_the_projection_over_real_tokens():
    torch.manual_seed(0)
    loss = HiddenStateMSELoss(4, 6, [[0, 0], [1, 2]])
    student = [torch.randn(2, 3, 4) for _ in range(2)]
    teacher = [torch.randn(2, 3, 6) for _ in range(3)]
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    expected = []
    for (si, ti), projection in zip([(0, 0), (1, 2)], loss.projections):
        error = (projection(student[si]) - teacher[ti]).pow(2).mean(-1)
        expected.append((error * mask).sum() / mask.sum())
    assert torch.allclose(loss(student, teacher, mask), torch.stack(expected).mean())
    # Same sizes: the projection starts as the identity, so equal states cost nothing.
    same = HiddenStateMSELoss(4, 4, [[1, 1]])
    assert same(student, student).item() == 0.0


def attention(batch, heads, seq, seed):
    return logits(batch, heads, seq, seq, seed=seed).softmax(-1)


def test_minilm_attention_transfer_is_kl_over_heads_and_queries():
    s, t = attention(2, 3, 4, 1), attention(2, 3, 4, 2)
    got = AttentionTransferLoss([[0, 1]], "minilm")([s], [None, t])
    expected = F.kl_div(s.log(), t, reduction="none").sum(-1).mean()  # per (batch, head, query) then mean
    assert torch.allclose(got, expected, atol=1e-6)


def test_tinybert_attention_transfer_is_mse_and_padding_queries_are_ignored():
    s, t = attention(1, 2, 3, 3), attention(1, 2, 3, 4)
    mask = torch.tensor([[1, 1, 0]])
    got = AttentionTransferLoss([[0, 0]], "tinybert")([s], [t], mask)
    expected = (s - t)[:, :, :2].pow(2).mean()
    assert torch.allclose(got, expected, atol=1e-7)
    with pytest.raises(ValueError, match="style"):
        AttentionTransferLoss([[0, 0]], "other")
