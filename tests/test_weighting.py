"""Loss weightings against hand-computed values."""

import math

import pytest
import torch

from instructrec.models.weighting import DynamicWeightAveraging, StaticWeighting, UncertaintyWeighting, build_weighting


def test_static_weights():
    weighting = build_weighting("static", {"a": "classification", "b": "qa"}, {"b": 0.25})
    assert isinstance(weighting, StaticWeighting)
    assert weighting(torch.tensor(2.0), 0).item() == 2.0
    assert weighting(torch.tensor(2.0), 1).item() == 0.5
    with pytest.raises(ValueError, match="unknown tasks"):
        build_weighting("static", {"a": "classification"}, {"c": 1.0})


def test_uncertainty_weighting_values_and_gradient():
    weighting = UncertaintyWeighting([1.0, 0.5])
    assert weighting(torch.tensor(2.0), 0).item() == 2.0  # s = 0: exp(0) * 2 + 0
    with torch.no_grad():
        weighting.log_vars.copy_(torch.tensor([math.log(2.0), math.log(4.0)]))
    # classification: 1 * 2 / 2 + ln(2) / 2;  regression: 0.5 * 2 / 4 + ln(4) / 2
    assert weighting(torch.tensor(2.0), 0).item() == pytest.approx(1.0 + math.log(2) / 2)
    assert weighting(torch.tensor(2.0), 1).item() == pytest.approx(0.25 + math.log(4) / 2)
    weighting.zero_grad()
    weighting(torch.tensor(3.0), 0).backward()
    # d/ds (exp(-s) L + s/2) = -exp(-s) L + 1/2 = -3/2 + 1/2 at s = ln 2
    assert weighting.log_vars.grad.tolist() == pytest.approx([-1.0, 0.0])
    assert build_weighting("uncertainty", {"a": "classification", "r": "regression"}).scales.tolist() == [1.0, 0.5]


def test_dwa_weights_after_two_epochs():
    dwa = DynamicWeightAveraging(2, temperature=2.0)
    for a, b in ((1.0, 1.0), (0.5, 1.0)):  # epoch means: task a 1.0 -> 0.5, task b 1.0 -> 1.0
        assert dwa(torch.tensor(a), 0).item() == a and dwa(torch.tensor(b), 1).item() == b  # weights still 1
        dwa(torch.tensor(a), 0)  # a second batch with the same loss: the mean is unchanged
        dwa.end_epoch()
    # r = (0.5, 1.0); w = 2 * softmax(r / 2)
    ea, eb = math.exp(0.25), math.exp(0.5)
    expected = [2 * ea / (ea + eb), 2 * eb / (ea + eb)]
    assert dwa.current_weights().tolist() == pytest.approx(expected)
    assert expected == pytest.approx([0.87565, 1.12435], abs=1e-5)
    assert dwa(torch.tensor(2.0), 1).item() == pytest.approx(2 * expected[1])


def test_dwa_keeps_weights_while_a_task_is_missing():
    dwa = DynamicWeightAveraging(2)
    dwa(torch.tensor(1.0), 0)
    dwa.end_epoch()
    dwa(torch.tensor(1.0), 0)
    dwa.end_epoch()  # task 1 never seen: no ratio, weights stay 1
    assert dwa.current_weights().tolist() == [1.0, 1.0]
