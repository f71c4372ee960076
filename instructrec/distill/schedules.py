"""Schedules for distillation loss weights and the temperature: a value per optimiser step.

Why: recipes anneal the soft/hard mix (more teacher early, more labels late) or the temperature;
a schedule is a plain callable so the module reads ``schedule(step, total_steps)`` each step and
logs it.

A spec (what configs hold) is either a number (constant) or a mapping::

    {"type": "linear" | "cosine" | "constant", "start": 1.0, "end": 0.1, "steps": 1000}

``steps`` is how many optimiser steps the change takes (afterwards the value stays at ``end``);
omitted or null, it is the run's total steps (``trainer.estimated_stepping_batches``).
``linear``: ``start + (end - start) * r``; ``cosine``: ``end + (start - end) * (1 + cos(pi r)) / 2``,
with ``r = min(step / steps, 1)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

ScheduleSpec = Union[float, dict]


@dataclass(frozen=True)
class Schedule:
    kind: str
    start: float
    end: float
    steps: int | None = None

    def __call__(self, step: int, total_steps: int | None = None) -> float:
        if self.kind == "constant":
            return self.start
        steps = self.steps if self.steps is not None else total_steps
        if not steps:
            raise ValueError(f"a {self.kind} schedule without 'steps' needs the run's total steps")
        r = min(max(step, 0) / steps, 1.0)
        if self.kind == "linear":
            return self.start + (self.end - self.start) * r
        return self.end + (self.start - self.end) * (1.0 + math.cos(math.pi * r)) / 2.0


KINDS = ("constant", "linear", "cosine")


def build_schedule(spec: ScheduleSpec) -> Schedule:
    """A :class:`Schedule` from a number or a ``{"type", "start", "end", "steps"}`` mapping."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return Schedule("constant", float(spec), float(spec))
    if not isinstance(spec, dict):
        raise TypeError(f"a schedule is a number or a mapping, got {spec!r}")
    unknown = set(spec) - {"type", "start", "end", "steps", "value"}
    if unknown:
        raise ValueError(f"unknown schedule keys {sorted(unknown)}; known: type, start, end, steps (value for constant)")
    kind = spec.get("type", "constant")
    if kind not in KINDS:
        raise ValueError(f"schedule type must be one of {KINDS}, got {kind!r}")
    if kind == "constant":
        value = float(spec.get("value", spec.get("start")))
        return Schedule("constant", value, value)
    steps = spec.get("steps")
    if steps is not None and int(steps) <= 0:
        raise ValueError(f"schedule steps must be positive, got {steps}")
    return Schedule(kind, float(spec["start"]), float(spec["end"]), None if steps is None else int(steps))
