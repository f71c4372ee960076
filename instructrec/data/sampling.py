"""Multi-task batch schedules: which task each training step draws from, and how long an epoch is.

Plain Python (no torch, no Lightning), so every rule here is unit tested with exact numbers.

A schedule is a function of ``(seed, epoch)`` alone: every DDP rank and every DataLoader worker
computes the same task sequence, so all ranks step the same task at the same step (their gradients
are averaged over one head, never over a mix of heads), and a resumed run replays the same order.

Strategies (``n_k`` = number of batches of source ``k`` in one pass, ``K`` sources):

* ``proportional``: ``p_k = n_k / sum(n)``.
* ``uniform``: ``p_k = 1 / K``.
* ``temperature``: ``p_k ~ n_k ** (1 / T)``; ``T = 1`` is proportional, ``T -> inf`` uniform.
* ``annealed``: ``p_k ~ n_k ** alpha(t)`` with ``alpha`` going linearly from ``alpha_start`` to
  ``alpha_end`` over ``anneal_steps`` global steps, then constant. The default ``1 -> 0.2`` starts
  proportional and ends near uniform (the direction of Stickland & Murray 2019's annealed sampling,
  scheduled per step instead of per epoch).
* ``round_robin``: sources in order, one batch each, ``0, 1, ..., K-1, 0, 1, ...`` by global step.

Epoch length (steps per epoch) is always explicit:

* an integer: that many steps;
* ``sum``: ``sum(n)``: one pass over every source's batches (in expectation, with proportional
  sampling, each batch is drawn once);
* ``largest``: ``K * max(n)``: Lightning's ``max_size_cycle``: with round-robin, every source cycles
  until the largest has been seen once;
* ``smallest``: ``K * min(n)``: Lightning's ``min_size``: with round-robin, the smallest source is
  seen once. Only when asked for: it never sets the length silently.

A source whose batches run out is reshuffled and cycled, so any strategy works with any length.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal, Sequence

from instructrec.hashing import stable_hash

Strategy = Literal["proportional", "uniform", "temperature", "annealed", "round_robin"]
STRATEGIES: tuple[str, ...] = ("proportional", "uniform", "temperature", "annealed", "round_robin")
EPOCH_MODES: tuple[str, ...] = ("sum", "largest", "smallest")


def power_probabilities(sizes: Sequence[int], exponent: float) -> list[float]:
    """``p_k = n_k ** exponent / sum_j n_j ** exponent`` (exponent 1: proportional, 0: uniform)."""
    if not sizes or any(n <= 0 for n in sizes):
        raise ValueError(f"every source needs at least one batch, got sizes {list(sizes)}")
    weights = [n**exponent for n in sizes]
    total = sum(weights)
    return [w / total for w in weights]


def annealed_exponent(step: int, alpha_start: float, alpha_end: float, anneal_steps: int) -> float:
    """``alpha(step)``: linear from ``alpha_start`` at step 0 to ``alpha_end`` at ``anneal_steps``."""
    if anneal_steps <= 0:
        return alpha_end
    progress = min(1.0, max(0.0, step / anneal_steps))
    return alpha_start + (alpha_end - alpha_start) * progress


def epoch_steps(sizes: Sequence[int], epoch_length: int | str) -> int:
    """Steps per epoch for ``epoch_length`` (an int, ``sum``, ``largest`` or ``smallest``)."""
    if isinstance(epoch_length, int) and not isinstance(epoch_length, bool):
        if epoch_length <= 0:
            raise ValueError(f"epoch_length must be positive, got {epoch_length}")
        return epoch_length
    if epoch_length == "sum":
        return sum(sizes)
    if epoch_length == "largest":
        return len(sizes) * max(sizes)
    if epoch_length == "smallest":
        return len(sizes) * min(sizes)
    raise ValueError(f"epoch_length must be a positive int or one of {EPOCH_MODES}, got {epoch_length!r}")


@dataclass(frozen=True)
class TaskSchedule:
    """The task (source index) of every training step.

    Args:
        sizes: batches per source in one pass (per rank).
        strategy: one of :data:`STRATEGIES`.
        epoch_length: an int or one of :data:`EPOCH_MODES`.
        temperature: ``T`` of the ``temperature`` strategy.
        alpha_start, alpha_end, anneal_steps: the ``annealed`` strategy's exponent schedule
            (``anneal_steps`` 0: the whole of ``max_epochs`` is not known here, so give it).
        seed: with the epoch, fixes the draws.
    """

    sizes: tuple[int, ...]
    strategy: str = "proportional"
    epoch_length: int | str = "sum"
    temperature: float = 2.0
    alpha_start: float = 1.0
    alpha_end: float = 0.2
    anneal_steps: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"sampling must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.strategy == "temperature" and not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        power_probabilities(self.sizes, 1.0)  # validates sizes
        epoch_steps(self.sizes, self.epoch_length)

    @property
    def steps_per_epoch(self) -> int:
        return epoch_steps(self.sizes, self.epoch_length)

    def probabilities(self, step: int = 0) -> list[float]:
        """The sampling distribution over sources at global ``step`` (round-robin: its average)."""
        if self.strategy == "proportional":
            return power_probabilities(self.sizes, 1.0)
        if self.strategy in ("uniform", "round_robin"):
            return power_probabilities(self.sizes, 0.0)
        if self.strategy == "temperature":
            return power_probabilities(self.sizes, 1.0 / self.temperature)
        alpha = annealed_exponent(step, self.alpha_start, self.alpha_end, self.anneal_steps)
        return power_probabilities(self.sizes, alpha)

    def epoch(self, epoch: int) -> list[int]:
        """The source index of each step of ``epoch`` (0-based)."""
        steps = self.steps_per_epoch
        first = epoch * steps
        if self.strategy == "round_robin":
            return [(first + i) % len(self.sizes) for i in range(steps)]
        rng = random.Random(stable_hash("task-schedule", self.seed, epoch))
        sources = range(len(self.sizes))
        if self.strategy != "annealed":  # one distribution for the whole epoch
            weights = self.probabilities()
            return rng.choices(sources, weights=weights, k=steps)
        return [rng.choices(sources, weights=self.probabilities(first + i))[0] for i in range(steps)]

    def draws_before(self, epoch: int) -> list[int]:
        """Batches drawn from each source in epochs ``0 .. epoch-1``: where each source's stream
        stands when ``epoch`` starts (so an epoch continues a source instead of restarting it)."""
        counts = [0] * len(self.sizes)
        for previous in range(epoch):
            for source in self.epoch(previous):
                counts[source] += 1
        return counts


def shuffled_shard(num_rows: int, *, seed: int, source: str, cycle: int, rank: int, world_size: int) -> list[int]:
    """Row indices of one pass (``cycle``) over a source, shuffled and sharded for ``rank``.

    The permutation depends on ``(seed, source, cycle)`` only, so ranks shard the same order: rank
    ``r`` takes positions ``r, r + world_size, ...``. The shard is padded by wrapping around (as
    ``DistributedSampler`` does) so every rank has ``ceil(num_rows / world_size)`` rows.
    """
    order = list(range(num_rows))
    random.Random(stable_hash("source-order", seed, source, cycle)).shuffle(order)
    per_rank = math.ceil(num_rows / world_size)
    padded = (order * math.ceil(per_rank * world_size / max(1, num_rows)))[: per_rank * world_size]
    return padded[rank::world_size]


def batches_per_pass(num_rows: int, batch_size: int, world_size: int) -> int:
    """Batches of one rank's shard of a source (the last one may be short)."""
    return math.ceil(math.ceil(num_rows / world_size) / batch_size)
