"""Loss-weight and temperature schedules: exact values at given steps."""

import math

import pytest

from instructrec.distill.schedules import build_schedule


def test_constant():
    assert build_schedule(0.5)(0) == 0.5 and build_schedule(0.5)(10_000) == 0.5
    assert build_schedule({"type": "constant", "value": 2.0})(7) == 2.0


def test_linear_exact_values_and_hold_after_the_end():
    schedule = build_schedule({"type": "linear", "start": 1.0, "end": 0.0, "steps": 100})
    assert [schedule(s) for s in (0, 25, 50, 100, 150)] == [1.0, 0.75, 0.5, 0.0, 0.0]


def test_cosine_exact_values():
    schedule = build_schedule({"type": "cosine", "start": 4.0, "end": 1.0, "steps": 10})
    assert schedule(0) == 4.0 and schedule(10) == 1.0 and schedule(20) == 1.0
    assert schedule(5) == pytest.approx(2.5)
    assert schedule(2) == pytest.approx(1.0 + 3.0 * (1 + math.cos(math.pi * 0.2)) / 2)


def test_steps_default_to_the_run_length():
    schedule = build_schedule({"type": "linear", "start": 0.0, "end": 1.0})
    assert schedule(30, total_steps=120) == 0.25
    with pytest.raises(ValueError, match="total steps"):
        schedule(3)


def test_bad_specs_are_refused():
    with pytest.raises(ValueError, match="type"):
        build_schedule({"type": "exponential", "start": 1, "end": 0})
    with pytest.raises(ValueError, match="keys"):
        build_schedule({"type": "linear", "start": 1, "end": 0, "step": 3})
    with pytest.raises(ValueError, match="positive"):
        build_schedule({"type": "linear", "start": 1, "end": 0, "steps": 0})
