"""KL divergence of the VAE posterior from the standard normal prior, with uniform log-variance support."""

from __future__ import annotations

import torch
from torch import nn

from ltx.registry import LOSSES


def gaussian_kl_elements(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Element-wise ``KL(N(mean, exp(logvar)) || N(0, 1)) = 0.5 * (mean^2 + exp(logvar) - 1 - logvar)``.

    ``logvar`` may have one channel (``C == 1``): the LTX-Video encoder predicts a single log-variance
    shared by every latent channel ("uniform log-variance", arXiv 2501.00103 sec. 3.1), which is
    broadcast over ``mean``'s channels here. Computed in float32 so bf16 latents do not lose the
    small differences that make the KL. Returns ``mean``'s shape.
    """
    if mean.ndim != logvar.ndim or logvar.shape[1] not in (1, mean.shape[1]):
        raise ValueError(
            f"logvar must have mean's shape {tuple(mean.shape)} or one channel; got {tuple(logvar.shape)}"
        )
    mean, logvar = mean.float(), logvar.float().expand_as(mean)  # (B, C, F, H, W) both
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)


@LOSSES.register("kl")
class KLLoss(nn.Module):
    """KL of a diagonal Gaussian posterior from N(0, I): summed over channels, averaged over B, F, H, W.

    Summing over channels and averaging over batch and positions makes the value the KL of one latent
    "pixel" (a C-dimensional Gaussian), so its loss weight does not change with resolution, clip
    length or batch size. With uniform log-variance (``logvar`` is one channel, or one channel
    repeated C times) the formula is unchanged: the variance is simply the same for every channel.
    """

    def forward(self, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        kl = gaussian_kl_elements(mean, logvar)  # (B, C, F, H, W)
        return kl.sum(dim=1).mean()

    def per_channel(self, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Mean KL of each latent channel, shape ``(C,)``; its sum equals ``forward(mean, logvar)``."""
        kl = gaussian_kl_elements(mean, logvar)  # (B, C, F, H, W)
        return kl.transpose(0, 1).flatten(1).mean(dim=1)  # (C, B*F*H*W) -> (C,)
