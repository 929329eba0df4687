"""Every registered loss: finite value, gradients, masking; the weighted sum of configured terms."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import pytest
import torch
from torch import nn

from ltx.losses import WeightedLossTerms
from ltx.losses.reconstruction import masked_mean
from ltx.registry import DISCRIMINATORS, LOSSES

pytestmark = pytest.mark.filterwarnings("ignore:LPIPSLoss.*RANDOMLY INITIALISED:UserWarning")

Inputs = tuple[
    tuple[torch.Tensor | nn.Module, ...], list[torch.Tensor]
]  # (call arguments, tensors that need gradients)

# Build arguments per loss; a loss absent here is built with none. LPIPS gets a random backbone: these
# tests check plumbing, not perceptual quality (tests/test_vae_losses.py loads a backbone file).
LOSS_KWARGS: dict[str, dict[str, object]] = {"lpips": {"net": "alex", "allow_random_backbone": True}}

# Element-wise losses take (prediction, target, mask=None) videos (B, C, F, H, W) and vanish on equal
# inputs; the value is the video shape they are tested on (AlexNet-LPIPS needs at least 32x32 frames).
ELEMENTWISE_SHAPES: dict[str, tuple[int, ...]] = {
    "mse": (2, 3, 5, 8, 8),
    "l1": (2, 3, 5, 8, 8),
    "video_dwt": (2, 3, 5, 8, 8),
    "lpips": (1, 3, 2, 32, 32),
}


@cache
def build_loss(name: str) -> nn.Module:
    """One instance per loss for the whole module (LPIPS takes a while to build)."""
    return LOSSES.build(name, **LOSS_KWARGS.get(name, {}))


def elementwise_inputs(name: str) -> Callable[[nn.Module], Inputs]:
    def make(loss: nn.Module) -> Inputs:
        target = torch.rand(ELEMENTWISE_SHAPES[name]) * 2 - 1
        prediction = (target + 0.5 * torch.randn_like(target)).requires_grad_()
        return (prediction, target), [prediction]

    return make


def kl_inputs(loss: nn.Module) -> Inputs:
    mean = torch.randn(2, 4, 3, 4, 4).requires_grad_()
    logvar = (0.3 * torch.randn(2, 1, 3, 4, 4)).requires_grad_()  # uniform log-variance: one channel
    return (mean, logvar), [mean, logvar]


def gan_inputs(loss: nn.Module) -> Inputs:
    """The generator's view (``forward``'s default mode): gradients must reach the fake."""
    discriminator = DISCRIMINATORS.build(
        "patchgan3d", in_channels=loss.discriminator_in_channels(3), base_channels=4, num_layers=2
    )
    real = torch.rand(2, 3, 3, 16, 16) * 2 - 1
    fake = (real + 0.3 * torch.randn_like(real)).requires_grad_()
    return (discriminator, real, fake), [fake]


INPUT_FACTORIES: dict[str, Callable[[nn.Module], Inputs]] = {
    **{name: elementwise_inputs(name) for name in ELEMENTWISE_SHAPES},
    "kl": kl_inputs,
    "gan": gan_inputs,
    "rgan": gan_inputs,
}


def test_every_registered_loss_is_covered():
    assert set(LOSSES.names()) == set(INPUT_FACTORIES), (
        "every registered loss needs an input factory in INPUT_FACTORIES (and, if it takes "
        "(prediction, target, mask), an entry in ELEMENTWISE_SHAPES)"
    )


@pytest.mark.parametrize("name", LOSSES.names())
def test_registered_loss_is_finite_and_differentiable(name):
    if name not in INPUT_FACTORIES:
        pytest.fail(f"loss {name!r} has no input factory in INPUT_FACTORIES")
    torch.manual_seed(0)
    loss = build_loss(name)
    arguments, needs_gradient = INPUT_FACTORIES[name](loss)
    value = loss(*arguments)
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    for tensor in needs_gradient:
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all() and tensor.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(ELEMENTWISE_SHAPES))
def test_elementwise_loss_is_zero_on_equal_inputs_and_positive_otherwise(name):
    torch.manual_seed(0)
    loss = build_loss(name)
    (prediction, target), _ = INPUT_FACTORIES[name](loss)
    assert loss(prediction, target).item() > 0
    assert loss(target, target).item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("name", sorted(ELEMENTWISE_SHAPES))
def test_elementwise_loss_ignores_masked_out_frames(name):
    loss = build_loss(name)
    _, channels, _, height, width = ELEMENTWISE_SHAPES[name]
    target = torch.zeros(1, channels, 3, height, width)
    prediction = torch.zeros_like(target)
    prediction[:, :, 0] = 1.0  # only the first (masked) frame is wrong
    mask = torch.ones(1, 1, 3, 1, 1, dtype=torch.bool)
    mask[:, :, 0] = False
    assert loss(prediction, target, mask).item() == pytest.approx(0.0, abs=1e-7)
    assert loss(prediction, target).item() > 0


def test_masked_mean_of_empty_mask_is_zero_not_nan():
    values = torch.ones(2, 3, requires_grad=True)
    result = masked_mean(values, torch.zeros(2, 3, dtype=torch.bool))
    assert result.item() == 0.0


def test_masked_mean_weighs_samples_equally_so_rank_means_average_to_the_batch_mean():
    values = torch.arange(12.0).view(4, 3)
    mask = torch.tensor([[1, 1, 1], [0, 0, 1], [1, 0, 0], [1, 1, 0]], dtype=torch.bool)
    expected = torch.tensor([1.0, 5.0, 6.0, 9.5]).mean()  # each sample's mean over its kept positions
    torch.testing.assert_close(masked_mean(values, mask), expected)
    halves = (masked_mean(values[:2], mask[:2]) + masked_mean(values[2:], mask[2:])) / 2
    torch.testing.assert_close(halves, expected)


def test_weighted_terms_sum_with_weights_and_report_each_term():
    terms = WeightedLossTerms(
        {
            "pixels": {"name": "mse", "weight": 2.0},
            "sparse": {"name": "l1", "weight": 0.5, "inputs": "named"},
            "unused": {"name": "l1", "weight": 0.0},
        }
    )
    prediction, target = torch.full((4,), 3.0), torch.zeros(4)
    total, values = terms(
        {"prediction": (prediction, target), "named": {"prediction": prediction, "target": target}}
    )
    assert values["pixels"].item() == pytest.approx(9.0) and values["sparse"].item() == pytest.approx(3.0)
    assert total.item() == pytest.approx(2.0 * 9.0 + 0.5 * 3.0)
    assert "unused" not in values and "unused" not in terms.terms


def test_weighted_terms_combine_vae_losses_with_their_own_inputs():
    terms = WeightedLossTerms(
        {
            "pixels": {"name": "mse", "weight": 1.0},
            "kl": {"name": "kl", "weight": 1e-6, "inputs": "posterior"},
            "dwt": {"name": "video_dwt", "weight": 1.0},
        }
    )
    video, mean, logvar = torch.randn(1, 3, 5, 8, 8), torch.randn(1, 4, 1, 2, 2), torch.zeros(1, 1, 1, 2, 2)
    total, values = terms({"prediction": (0.5 * video, video), "posterior": (mean, logvar)})
    assert set(values) == {"pixels", "kl", "dwt"} and values["kl"].item() > 0 and values["dwt"].item() > 0
    expected = values["pixels"].item() + 1e-6 * values["kl"].item() + values["dwt"].item()
    assert total.item() == pytest.approx(expected, rel=1e-5)


def test_weighted_terms_errors_name_the_problem():
    with pytest.raises(ValueError, match="names no term"):
        WeightedLossTerms({})
    with pytest.raises(ValueError, match="must have keys name, weight"):
        WeightedLossTerms({"pixels": {"weight": 1.0}})
    with pytest.raises(LookupError, match="unknown loss 'nope'. Valid names: .*mse"):
        WeightedLossTerms({"pixels": {"name": "nope"}})
    terms = WeightedLossTerms({"pixels": {"name": "mse", "weight": 1.0}})
    with pytest.raises(KeyError, match=r"loss term\(s\) \{'pixels': 'prediction'\} need inputs"):
        terms({})
