"""PatchGAN discriminators for the VAE's GAN loss: a 3D one over clips and a 2D one applied per frame."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as apply_spectral_norm

from ltx.registry import DISCRIMINATORS

DISCRIMINATOR_NORMS = ("group", "none")


def patchgan_layers(
    dims: int, in_channels: int, base_channels: int, num_layers: int, norm: str, spectral_norm: bool
) -> nn.Sequential:
    """The pix2pix "NLayerDiscriminator" stack (Isola et al., arXiv 1611.07004) in 2D or 3D.

    ``num_layers`` convolutions of stride 2 (kernel 4 in space, padding 1: sizes halve exactly;
    in 3D kernel 3 / stride 2 / padding 1 in time, so ``F -> ceil(F / 2)`` and one frame stays one
    frame), widths ``base_channels * min(2^n, 8)``, then a stride-1 convolution and a 1-channel
    logit convolution, both kernel 3 / padding 1 so they keep the size (pix2pix's kernel 4 shrinks
    it by one each time). LeakyReLU(0.2) everywhere; ``norm`` after every convolution but the first
    and last (GroupNorm rather than pix2pix's BatchNorm, so samples stay independent of their batch).
    """
    if norm not in DISCRIMINATOR_NORMS:
        raise ValueError(
            f"unknown discriminator norm {norm!r}. Valid norms: {', '.join(DISCRIMINATOR_NORMS)}."
        )
    if num_layers < 1:
        raise ValueError(f"num_layers must be at least 1; got {num_layers}")
    conv = nn.Conv3d if dims == 3 else nn.Conv2d
    down = {"kernel_size": (3, 4, 4) if dims == 3 else 4, "stride": 2, "padding": 1}
    keep = {"kernel_size": 3, "stride": 1, "padding": 1}
    widths = [in_channels] + [base_channels * min(2**n, 8) for n in range(num_layers + 1)]
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
        normed = index > 0 and norm != "none"
        layers.append(conv(width_in, width_out, bias=not normed, **(down if index < num_layers else keep)))
        if normed:
            layers.append(nn.GroupNorm(math.gcd(32, width_out), width_out))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
    layers.append(conv(widths[-1], 1, **keep))
    for layer in layers:
        if isinstance(layer, (nn.Conv2d, nn.Conv3d)):
            nn.init.normal_(layer.weight, 0.0, 0.02)  # pix2pix / VQGAN initialisation
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    if spectral_norm:
        layers = [
            apply_spectral_norm(layer) if isinstance(layer, (nn.Conv2d, nn.Conv3d)) else layer
            for layer in layers
        ]
    return nn.Sequential(*layers)


class PatchGAN(nn.Module):
    """A PatchGAN: a fully convolutional discriminator that outputs one logit per patch.

    Args:
        in_channels: input channels (3 for RGB; 6 for the reconstruction GAN, which sees pairs).
        base_channels: width of the first convolution (64 in pix2pix).
        num_layers: stride-2 convolutions; inputs must be at least ``2^num_layers`` pixels wide and high.
        norm: ``"group"`` (GroupNorm, default) or ``"none"``.
        spectral_norm: wrap every convolution in spectral normalisation (off by default; with it,
            ``norm="none"`` is the usual pairing).
    """

    dims = 3

    def __init__(
        self,
        in_channels: int,
        base_channels: int = 64,
        num_layers: int = 3,
        norm: str = "group",
        spectral_norm: bool = False,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.num_layers = num_layers
        self.layers = patchgan_layers(self.dims, in_channels, base_channels, num_layers, norm, spectral_norm)

    def _check(self, x: torch.Tensor) -> None:
        smallest = 2**self.num_layers
        if x.ndim not in (4, 5) or x.shape[1] != self.in_channels or min(x.shape[-2:]) < smallest:
            raise ValueError(
                f"{type(self).__name__}(in_channels={self.in_channels}, num_layers={self.num_layers}) takes "
                f"(B, {self.in_channels}, [F,] H, W) inputs with H, W >= {smallest}; got {tuple(x.shape)}"
            )


@DISCRIMINATORS.register("patchgan3d")
class PatchGAN3d(PatchGAN):
    """3D-convolution PatchGAN over clips ``(B, C, F, H, W)``; returns logits ``(B, 1, F', H', W')``.

    ``F' = ceil(F / 2^num_layers)``, ``H' = H / 2^num_layers``. Images ``(B, C, H, W)`` are treated as
    one-frame clips and get ``(B, 1, H', W')`` logits.
    """

    dims = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        if x.ndim == 4:
            return self.layers(x.unsqueeze(2)).squeeze(2)  # (B, C, 1, H, W) -> (B, 1, H', W')
        return self.layers(x)  # (B, 1, F', H', W')


@DISCRIMINATORS.register("patchgan2d")
class PatchGAN2d(PatchGAN):
    """2D PatchGAN applied to every frame independently; returns logits ``(B, 1, F, H', W')``.

    Frames are folded into the batch, so the discriminator never sees motion: the baseline against
    which ``patchgan3d`` is compared. Images ``(B, C, H, W)`` get ``(B, 1, H', W')`` logits.
    """

    dims = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        if x.ndim == 4:
            return self.layers(x)  # (B, 1, H', W')
        batch, channels, frames, height, width = x.shape
        frames_2d = x.transpose(1, 2).reshape(batch * frames, channels, height, width)  # (B*F, C, H, W)
        logits = self.layers(frames_2d)  # (B*F, 1, H', W')
        return logits.reshape(batch, frames, *logits.shape[1:]).transpose(1, 2)  # (B, 1, F, H', W')
