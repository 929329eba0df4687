"""A worked ``ltx-train`` plugin: importing this module registers two entries.

* ``linear`` in the "rope spacing" registry (select with ``model.dit.rope_spacing=linear``);
* ``log_cosh`` in the "loss" registry (select with ``loss.terms.reconstruction.name=log_cosh``).

``ltx-train`` imports it through the entry point ``example = "ltx_example_plugin"`` of the group
``ltx.plugins`` (see ``pyproject.toml``) on the first registry lookup; nothing here is imported by
``ltx`` itself.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ltx.losses.reconstruction import masked_mean
from ltx.registry import LOSSES, ROPE_SPACINGS

__all__ = ["LogCoshLoss", "linear_spacing", "log_cosh"]


@ROPE_SPACINGS.register("linear")
def linear_spacing(count: int, theta: float) -> torch.Tensor:
    """``linspace(1, theta, count) * pi / 2``: evenly spaced frequencies from pi/2 to theta * pi/2.

    The same endpoints as the built-in ``exponential`` spacing (``theta ** linspace(0, 1, count) * pi / 2``)
    but with a constant step ``(theta - 1) * pi / 2 / (count - 1)`` instead of a constant ratio, so most
    frequencies are high. ``count == 1`` gives ``[pi / 2]``.

    Returns:
        `(count,)` float32 frequencies, increasing.
    """
    if count < 1:
        raise ValueError(f"the linear RoPE spacing needs count >= 1 frequencies, got {count}")
    return torch.linspace(1.0, float(theta), count, dtype=torch.float32) * (math.pi / 2)


def log_cosh(residual: torch.Tensor) -> torch.Tensor:
    """Element-wise ``log(cosh(residual))`` without overflow: ``|r| + softplus(-2 |r|) - log 2``.

    Shapes: any -> the same shape.
    """
    magnitude = residual.abs()
    return magnitude + F.softplus(-2.0 * magnitude) - math.log(2.0)


@LOSSES.register("log_cosh")
class LogCoshLoss(nn.Module):
    """Log-cosh loss ``scale * log(cosh((prediction - target) / scale))``, optionally masked.

    A smooth robust loss: about ``r**2 / (2 * scale)`` for residuals ``|r| << scale`` (like MSE) and
    ``|r| - scale * log 2`` for ``|r| >> scale`` (like L1), so outliers pull less than under MSE while the
    gradient stays smooth at 0. The mean is ``masked_mean``'s: per sample over the positions where
    ``mask`` is true, then over the batch.

    Args:
        scale: where the loss turns from quadratic to linear (> 0); ``+loss.terms.reconstruction.kwargs.scale=...``.
    """

    def __init__(self, scale: float = 1.0):
        super().__init__()
        if scale <= 0:
            raise ValueError(f"log_cosh needs scale > 0, got {scale}")
        self.scale = float(scale)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """`(B, ...)` prediction and target, optional boolean mask broadcasting to them -> scalar loss."""
        values = self.scale * log_cosh((prediction - target).float() / self.scale)  # (B, ...)
        return masked_mean(values, mask)
