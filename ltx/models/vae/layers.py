"""Video-VAE layers: causal 3D convolution, PixelNorm, ResBlock with AdaLN and noise injection,
depth-to-space upsampling, and the 4x4 patchify (LTX-Video paper, Sec. 3.1; release v0.9.1)."""

from __future__ import annotations

import torch
from torch import nn


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``x / sqrt(mean_c(x^2) + eps)`` over the channel axis of `(B, C, F, H, W)`."""
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + eps)


class CausalConv3d(nn.Module):
    """3D convolution padded in time by repeating edge frames, zero-padded in space.

    Causal (encoder): the first frame is repeated ``k - 1`` times in front, so output frame ``i``
    sees input frames ``<= i`` only. Non-causal (decoder): first and last frames repeated ``(k-1)/2``
    times each side.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int | tuple[int, int, int] = 1,
                 causal: bool = True):
        super().__init__()
        self.kernel_size, self.causal = kernel_size, causal
        stride = stride if isinstance(stride, tuple) else (stride,) * 3
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride,
                              padding=(0, kernel_size // 2, kernel_size // 2))

    def pad_time(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, C, F, H, W)` -> `(B, C, F + k - 1, H, W)` with edge frames repeated."""
        if self.kernel_size == 1:
            return x
        if self.causal:
            front = x[:, :, :1].expand(-1, -1, self.kernel_size - 1, -1, -1)
            return torch.cat([front, x], dim=2)
        side = (self.kernel_size - 1) // 2
        front = x[:, :, :1].expand(-1, -1, side, -1, -1)
        back = x[:, :, -1:].expand(-1, -1, side, -1, -1)
        return torch.cat([front, x, back], dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad_time(x))


class ResBlock3d(nn.Module):
    """PixelNorm -> [AdaLN] -> SiLU -> conv -> [noise] -> PixelNorm -> [AdaLN] -> SiLU -> dropout -> conv
    -> [noise], plus a (LayerNorm + 1x1x1 conv) shortcut when the channel count changes.

    AdaLN (timestep conditioning): the block adds its learned `(4, C)` table to the embedding from
    its stage and applies ``h * (1 + scale) + shift`` twice. Noise injection (StyleGAN-like): one
    standard-normal `(H, W)` map times a learned per-channel scale initialised to zero.
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, dropout: float = 0.0, eps: float = 1e-6,
                 causal: bool = True, inject_noise: bool = False, timestep_conditioning: bool = False):
        super().__init__()
        out_channels = out_channels or in_channels
        self.conv1 = CausalConv3d(in_channels, out_channels, 3, causal=causal)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3, causal=causal)
        self.act = nn.SiLU()
        self.norm3 = self.conv_shortcut = None
        if in_channels != out_channels:
            self.norm3 = nn.LayerNorm(in_channels, eps=eps, elementwise_affine=True)
            self.conv_shortcut = CausalConv3d(in_channels, out_channels, 1, causal=causal)
        self.per_channel_scale1 = self.per_channel_scale2 = None
        if inject_noise:
            self.per_channel_scale1 = nn.Parameter(torch.zeros(in_channels, 1, 1))
            self.per_channel_scale2 = nn.Parameter(torch.zeros(in_channels, 1, 1))
        self.scale_shift_table = None
        if timestep_conditioning:
            self.scale_shift_table = nn.Parameter(torch.randn(4, in_channels) / in_channels**0.5)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        h = pixel_norm(x)
        if self.scale_shift_table is not None:
            if embedding is None:
                raise ValueError("this block is timestep-conditioned: pass the timestep embedding")
            modulation = embedding.unflatten(1, (4, -1)) + self.scale_shift_table[None, ..., None, None, None]
            shift1, scale1, shift2, scale2 = modulation.unbind(dim=1)  # each (B, C, 1, 1, 1)
            h = h * (1 + scale1) + shift1
        h = self.conv1(self.act(h))
        h = self._add_noise(h, self.per_channel_scale1, generator)
        h = pixel_norm(h)
        if self.scale_shift_table is not None:
            h = h * (1 + scale2) + shift2
        h = self.conv2(self.dropout(self.act(h)))
        h = self._add_noise(h, self.per_channel_scale2, generator)
        shortcut = x
        if self.norm3 is not None:
            shortcut = self.norm3(shortcut.movedim(1, -1)).movedim(-1, 1)
            shortcut = self.conv_shortcut(shortcut)
        return h + shortcut

    @staticmethod
    def _add_noise(h: torch.Tensor, scale: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
        if scale is None:
            return h
        noise = torch.randn(h.shape[-2:], generator=generator, device=h.device, dtype=h.dtype)  # (H, W)
        return h + (noise[None] * scale)[None, :, None]  # (1, C, 1, H, W)


def depth_to_space(x: torch.Tensor, stride: tuple[int, int, int]) -> torch.Tensor:
    """`(B, C*st*sh*sw, F, H, W)` -> `(B, C, F*st, H*sh, W*sw)`."""
    batch, _, frames, height, width = x.shape
    st, sh, sw = stride
    x = x.reshape(batch, -1, st, sh, sw, frames, height, width)  # (B, C, st, sh, sw, F, H, W)
    x = x.permute(0, 1, 5, 2, 6, 3, 7, 4)  # (B, C, F, st, H, sh, W, sw)
    return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)  # (B, C, F*st, H*sh, W*sw)


class DepthToSpaceUpsampler(nn.Module):
    """Conv to ``8 C / factor`` channels, 3D depth-to-space (2, 2, 2), drop the first frame.

    Dropping the first output frame turns ``f`` frames into ``2f - 1``: 1 + k latent frames become
    1 + 2k, and three of these give 1 + 8k. With ``residual``, the input rearranged the same way and
    repeated over channels is added (the release's residual upsampler).
    """

    def __init__(self, in_channels: int, stride: tuple[int, int, int] = (2, 2, 2), causal: bool = True,
                 residual: bool = False, upscale_factor: int = 1):
        super().__init__()
        self.stride, self.residual, self.upscale_factor = stride, residual, upscale_factor
        volume = stride[0] * stride[1] * stride[2]
        self.conv = CausalConv3d(in_channels, in_channels * volume // upscale_factor, 3, causal=causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        drop = self.stride[0] - 1
        out = depth_to_space(self.conv(x), self.stride)[:, :, drop:]  # (B, C', 2F-1, 2H, 2W)
        if self.residual:
            repeats = self.stride[0] * self.stride[1] * self.stride[2] // self.upscale_factor
            shortcut = depth_to_space(x, self.stride).repeat(1, repeats, 1, 1, 1)[:, :, drop:]
            out = out + shortcut
        return out


def patchify(video: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Space-to-depth `(B, C, F, H, W)` -> `(B, C*p*p, F, H/p, W/p)` in the release's channel order
    (channel, width offset, height offset)."""
    batch, channels, frames, height, width = video.shape
    p = patch_size
    x = video.reshape(batch, channels, frames, height // p, p, width // p, p)  # (B, C, F, H', ph, W', pw)
    x = x.permute(0, 1, 6, 4, 2, 3, 5)  # (B, C, pw, ph, F, H', W')
    return x.flatten(1, 3)  # (B, C*p*p, F, H', W')


def unpatchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Inverse of ``patchify``: `(B, C*p*p, F, H', W')` -> `(B, C, F, H'*p, W'*p)`."""
    batch, _, frames, height, width = x.shape
    p = patch_size
    x = x.reshape(batch, -1, p, p, frames, height, width)  # (B, C, pw, ph, F, H', W')
    x = x.permute(0, 1, 4, 5, 3, 6, 2)  # (B, C, F, H', ph, W', pw)
    return x.reshape(batch, x.shape[1], frames, height * p, width * p)  # (B, C, F, H, W)
