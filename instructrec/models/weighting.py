"""Multi-task loss weighting: how one task's batch loss counts towards the shared encoder's update.

Every batch holds one task (see :mod:`instructrec.data.sampling`), so each module maps a scalar
task loss ``()`` and the task's index ``t`` (``0 <= t < T`` tasks) to a scalar weighted loss ``()``.

* :class:`StaticWeighting`: fixed ``w_t``.
* :class:`UncertaintyWeighting`: Kendall, Gal & Cipolla 2018, learned log-variances.
* :class:`DynamicWeightAveraging`: Liu, Johns & Davison 2019 (DWA), weights from the epoch-to-epoch
  rate of each task's loss.

GradNorm and PCGrad are not implemented: both need every task's gradient at the same step, and here
a step sees one task (the schedule's choice), which is also what keeps DDP simple.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class StaticWeighting(nn.Module):
    """``L = w_t * L_t``.

    Args:
        weights: ``T`` fixed weights, in task order.
    """

    def __init__(self, weights: list[float]) -> None:
        super().__init__()
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32))

    def forward(self, loss: torch.Tensor, task: int) -> torch.Tensor:
        """``loss``: ``()`` task loss; returns ``()``."""
        return self.weights[task] * loss

    def current_weights(self) -> torch.Tensor:
        """``(T,)`` the weight each task's loss gets now."""
        return self.weights


class UncertaintyWeighting(nn.Module):
    """Kendall et al. 2018: ``L = c_t * exp(-s_t) * L_t + s_t / 2`` with ``s_t = log sigma_t^2`` learned.

    ``c_t = 1`` for a likelihood-type loss (cross-entropy: ``L/sigma^2 + log sigma``) and ``1/2`` for
    a squared error (``L/(2 sigma^2) + log sigma``). ``s_t`` starts at 0 (every weight 1). Weight
    decay must not apply to ``log_vars`` (it would pull every ``sigma`` to 1).

    Args:
        scales: ``T`` values of ``c_t``, in task order.
    """

    def __init__(self, scales: list[float]) -> None:
        super().__init__()
        self.register_buffer("scales", torch.tensor(scales, dtype=torch.float32))
        self.log_vars = nn.Parameter(torch.zeros(len(scales)))

    def forward(self, loss: torch.Tensor, task: int) -> torch.Tensor:
        """``loss``: ``()`` task loss; returns ``()``."""
        s = self.log_vars[task]
        return self.scales[task] * torch.exp(-s) * loss + s / 2

    def current_weights(self) -> torch.Tensor:
        """``(T,)`` the factor ``c_t * exp(-s_t)`` on each task's loss."""
        return (self.scales * torch.exp(-self.log_vars)).detach()


class DynamicWeightAveraging(nn.Module):
    """Liu et al. 2019: ``w_k = T_count * softmax_k(r_k / temperature)``, ``r_k = L_k(e-1) / L_k(e-2)``.

    ``L_k(e)`` is task ``k``'s mean training loss over epoch ``e``; weights are 1 until two epochs
    have ended (and stay as they were while a task has no loss in one of the last two epochs).
    :meth:`forward` records the unweighted loss; :meth:`end_epoch` (call it at each train epoch's
    end) updates the weights.

    Args:
        num_tasks: ``T_count``.
        temperature: smooths the weights (``inf``: all 1); the paper uses 2.
    """

    def __init__(self, num_tasks: int, temperature: float = 2.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"DWA temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.register_buffer("weights", torch.ones(num_tasks))
        self.register_buffer("sums", torch.zeros(num_tasks, dtype=torch.float64))
        self.register_buffer("counts", torch.zeros(num_tasks, dtype=torch.float64))
        # Row 0: the epoch before last, row 1: the last epoch; NaN until known.
        self.register_buffer("history", torch.full((2, num_tasks), float("nan"), dtype=torch.float64))

    def forward(self, loss: torch.Tensor, task: int) -> torch.Tensor:
        """``loss``: ``()`` task loss; returns ``()``."""
        self.sums[task] += loss.detach().double()
        self.counts[task] += 1
        return self.weights[task] * loss

    def end_epoch(self, reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t) -> torch.Tensor:
        """Close an epoch and return the new ``(T,)`` weights.

        ``reduce`` sums a tensor over processes (under DDP: the strategy's all-reduce), so every
        rank computes the same weights.
        """
        sums, counts = reduce(self.sums.clone()), reduce(self.counts.clone())
        means = torch.where(counts > 0, sums / counts.clamp(min=1), torch.full_like(sums, float("nan")))
        self.history.copy_(torch.stack([self.history[1], means]))
        ratios = self.history[1] / self.history[0]
        if not torch.isnan(ratios).any():
            self.weights.copy_(len(ratios) * torch.softmax(ratios / self.temperature, dim=0).float())
        self.sums.zero_()
        self.counts.zero_()
        return self.weights

    def current_weights(self) -> torch.Tensor:
        return self.weights


WEIGHTINGS = ("static", "uncertainty", "dwa")

# c_t of UncertaintyWeighting per task type: squared errors get 1/2, likelihood losses 1.
UNCERTAINTY_SCALES = {"classification": 1.0, "qa": 1.0, "ranking": 1.0, "regression": 0.5}


def build_weighting(
    kind: str, task_types: dict[str, str], task_weights: dict[str, float] | None = None, dwa_temperature: float = 2.0
) -> nn.Module:
    """The weighting ``kind`` over tasks ``{name: type}`` (their order is the index order)."""
    names = list(task_types)
    if kind == "static":
        unknown = set(task_weights or {}) - set(names)
        if unknown:
            raise ValueError(f"task_weights names unknown tasks {sorted(unknown)}; tasks: {names}")
        return StaticWeighting([float((task_weights or {}).get(name, 1.0)) for name in names])
    if task_weights:
        raise ValueError(f"task_weights are for loss_weighting='static', not {kind!r}")
    if kind == "uncertainty":
        return UncertaintyWeighting([UNCERTAINTY_SCALES[task_types[name]] for name in names])
    if kind == "dwa":
        return DynamicWeightAveraging(len(names), dwa_temperature)
    raise ValueError(f"loss_weighting must be one of {WEIGHTINGS}, got {kind!r}")
