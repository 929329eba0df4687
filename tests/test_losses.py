"""Every registered loss: finite value, gradients, masking; the weighted sum of configured terms."""

from __future__ import annotations

import pytest
import torch

from ltx.losses import WeightedLossTerms
from ltx.losses.reconstruction import masked_mean
from ltx.registry import LOSSES


@pytest.mark.parametrize("name", LOSSES.names())
def test_registered_loss_is_zero_on_equal_inputs_and_differentiable(name):
    loss = LOSSES.build(name)
    target = torch.randn(2, 3, 5, 8, 8)
    prediction = (target + 0.5 * torch.randn_like(target)).requires_grad_()
    value = loss(prediction, target)
    assert value.ndim == 0 and torch.isfinite(value) and value > 0
    value.backward()
    assert prediction.grad is not None and prediction.grad.abs().sum() > 0
    assert loss(target, target).item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("name", LOSSES.names())
def test_registered_loss_ignores_masked_out_positions(name):
    loss = LOSSES.build(name)
    target = torch.zeros(1, 4, 3, 2, 2)
    prediction = torch.zeros_like(target)
    prediction[:, :, 0] = 100.0  # only the first (masked) frame is wrong
    mask = torch.ones(1, 1, 3, 1, 1, dtype=torch.bool)
    mask[:, :, 0] = False
    assert loss(prediction, target, mask).item() == pytest.approx(0.0)
    assert loss(prediction, target).item() > 1.0


def test_masked_mean_of_empty_mask_is_zero_not_nan():
    values = torch.ones(2, 3, requires_grad=True)
    result = masked_mean(values, torch.zeros(2, 3, dtype=torch.bool))
    assert result.item() == 0.0


def test_weighted_terms_sum_with_weights_and_report_each_term():
    terms = WeightedLossTerms({"pixels": {"name": "mse", "weight": 2.0}, "sparse": {"name": "l1", "weight": 0.5}})
    prediction, target = torch.full((4,), 3.0), torch.zeros(4)
    total, values = terms({"pixels": (prediction, target), "sparse": {"prediction": prediction, "target": target}})
    assert values["pixels"].item() == pytest.approx(9.0) and values["sparse"].item() == pytest.approx(3.0)
    assert total.item() == pytest.approx(2.0 * 9.0 + 0.5 * 3.0)


def test_weighted_terms_errors_name_the_problem():
    with pytest.raises(ValueError, match="names no terms"):
        WeightedLossTerms({})
    with pytest.raises(ValueError, match="must have keys name, weight"):
        WeightedLossTerms({"pixels": {"weight": 1.0}})
    with pytest.raises(LookupError, match="unknown loss 'nope'. Valid names: .*mse"):
        WeightedLossTerms({"pixels": {"name": "nope"}})
    terms = WeightedLossTerms({"pixels": {"name": "mse", "weight": 1.0}})
    with pytest.raises(KeyError, match=r"no inputs given for loss term\(s\) \['pixels'\]"):
        terms({})
