"""Element-wise reconstruction losses with an optional mask (e.g. conditioning tokens left out)."""

from __future__ import annotations

import torch
from torch import nn

from ltx.registry import LOSSES


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` over the positions where ``mask`` is true (broadcast to ``values``).

    An all-false mask gives 0 (with gradient), not NaN, so a batch made only of conditioning tokens
    does not poison training.
    """
    if mask is None:
        return values.mean()
    weights = mask.to(values.dtype).expand_as(values)
    return (values * weights).sum() / weights.sum().clamp_min(1.0)


@LOSSES.register("mse")
class MSELoss(nn.Module):
    """Mean squared error, optionally masked."""

    def forward(self, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return masked_mean((prediction - target).pow(2), mask)


@LOSSES.register("l1")
class L1Loss(nn.Module):
    """Mean absolute error, optionally masked."""

    def forward(self, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return masked_mean((prediction - target).abs(), mask)
