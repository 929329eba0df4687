"""Element-wise reconstruction losses with an optional mask (e.g. conditioning tokens left out)."""

from __future__ import annotations

import torch
from torch import nn

from ltx.registry import LOSSES


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The mean over samples (dim 0) of each sample's mean over the positions where ``mask`` is true
    (``mask`` broadcasts to ``values``); without a mask, the plain mean.

    Every sample weighs the same whatever its number of masked-out (e.g. conditioning) positions, so the
    loss of a global batch is the mean of the per-rank losses, as data parallelism assumes. A sample
    whose mask is all false contributes 0 (with gradient), not NaN.
    """
    if mask is None:
        return values.mean()
    weights = mask.to(values.dtype).expand_as(values)
    if values.ndim < 2:
        return (values * weights).sum() / weights.sum().clamp_min(1.0)
    per_sample = (values * weights).flatten(1).sum(1) / weights.flatten(1).sum(1).clamp_min(1.0)  # (B,)
    return per_sample.mean()


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
