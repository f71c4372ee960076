"""Task schedules: exact probabilities, order, annealing values and epoch lengths."""

import math

import pytest

from instructrec.data.sampling import (
    TaskSchedule,
    annealed_exponent,
    batches_per_pass,
    epoch_steps,
    power_probabilities,
    shuffled_shard,
)

SIZES = (100, 25, 1)


def test_proportional_and_uniform_are_exact():
    assert TaskSchedule(SIZES, "proportional").probabilities() == [100 / 126, 25 / 126, 1 / 126]
    assert TaskSchedule(SIZES, "uniform").probabilities() == [1 / 3] * 3


def test_temperature_one_is_proportional_and_large_is_uniform():
    assert TaskSchedule(SIZES, "temperature", temperature=1.0).probabilities() == pytest.approx([100 / 126, 25 / 126, 1 / 126])
    # T = 2: p ~ sqrt(n) = 10, 5, 1
    assert TaskSchedule(SIZES, "temperature", temperature=2.0).probabilities() == pytest.approx([10 / 16, 5 / 16, 1 / 16])
    assert TaskSchedule(SIZES, "temperature", temperature=1e9).probabilities() == pytest.approx([1 / 3] * 3, abs=1e-8)


def test_annealed_schedule_values():
    assert annealed_exponent(0, 1.0, 0.2, 100) == 1.0
    assert annealed_exponent(50, 1.0, 0.2, 100) == pytest.approx(0.6)
    assert annealed_exponent(100, 1.0, 0.2, 100) == pytest.approx(0.2)
    assert annealed_exponent(500, 1.0, 0.2, 100) == pytest.approx(0.2)
    schedule = TaskSchedule((4, 1), "annealed", alpha_start=1.0, alpha_end=0.0, anneal_steps=10)
    assert schedule.probabilities(0) == [0.8, 0.2]
    assert schedule.probabilities(5) == pytest.approx([2 / 3, 1 / 3])  # 4 ** 0.5 = 2 vs 1
    assert schedule.probabilities(10) == [0.5, 0.5]


def test_round_robin_order_continues_across_epochs():
    schedule = TaskSchedule((5, 2, 1), "round_robin", epoch_length=4)
    assert schedule.epoch(0) == [0, 1, 2, 0]
    assert schedule.epoch(1) == [1, 2, 0, 1]


@pytest.mark.parametrize(
    "mode, steps", [(7, 7), ("sum", 126), ("largest", 300), ("smallest", 3)]
)
def test_epoch_length_modes(mode, steps):
    assert epoch_steps(SIZES, mode) == steps
    assert len(TaskSchedule(SIZES, "proportional", epoch_length=mode).epoch(0)) == steps


@pytest.mark.parametrize("bad", [0, -3, "shortest", True])
def test_bad_epoch_length_is_refused(bad):
    with pytest.raises(ValueError, match="epoch_length"):
        epoch_steps(SIZES, bad)


def test_schedule_is_a_function_of_seed_and_epoch():
    a = TaskSchedule(SIZES, "temperature", epoch_length=200, seed=3)
    b = TaskSchedule(SIZES, "temperature", epoch_length=200, seed=3)
    assert a.epoch(2) == b.epoch(2)
    assert a.epoch(0) != a.epoch(1)
    assert a.epoch(0) != TaskSchedule(SIZES, "temperature", epoch_length=200, seed=4).epoch(0)
    # draws follow the probabilities (10/16, 5/16, 1/16) within sampling noise
    draws = [s for e in range(20) for s in a.epoch(e)]
    assert draws.count(0) / len(draws) == pytest.approx(10 / 16, abs=0.03)
    assert a.draws_before(2) == [sum(1 for s in a.epoch(0) + a.epoch(1) if s == k) for k in range(3)]


def test_power_probabilities_refuses_empty_sources():
    with pytest.raises(ValueError, match="at least one batch"):
        power_probabilities((3, 0), 1.0)


def test_shards_are_disjoint_complete_and_equal():
    shards = [shuffled_shard(10, seed=0, source="a", cycle=0, rank=r, world_size=3) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]  # padded by wrapping, as DistributedSampler does
    assert set().union(*shards) == set(range(10))
    assert shuffled_shard(10, seed=0, source="a", cycle=1, rank=0, world_size=1) != shuffled_shard(
        10, seed=0, source="a", cycle=0, rank=0, world_size=1
    )
    assert batches_per_pass(10, 4, 3) == 1 and batches_per_pass(10, 4, 1) == math.ceil(10 / 4)
