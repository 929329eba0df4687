"""Video-VAE encoder: 4x4 patchify, causal ResBlock stages with strided-conv (v0.9.1) or space-to-depth
(v0.9.5) downsampling, and a latent head with ONE shared log-variance channel (uniform log-variance,
paper Sec. 3.1)."""

from __future__ import annotations

import torch
from torch import nn

from ltx.models.vae.config import DOWNSAMPLE_AXES, VAEConfig
from ltx.models.vae.layers import CausalConv3d, ResBlock3d, SpaceToDepthDownsampler, patchify, pixel_norm


class DownBlock(nn.Module):
    """ResBlocks at one width, then an optional stride-2 causal conv, then a widening ResBlock."""

    def __init__(self, in_channels: int, out_channels: int, num_layers: int, downsample: bool, eps: float, causal: bool):
        super().__init__()
        self.resnets = nn.ModuleList(ResBlock3d(in_channels, eps=eps, causal=causal) for _ in range(num_layers))
        self.downsamplers = None
        if downsample:
            self.downsamplers = nn.ModuleList([CausalConv3d(in_channels, in_channels, 3, stride=2, causal=causal)])
        self.conv_out = ResBlock3d(in_channels, out_channels, eps=eps, causal=causal) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)  # (B, C, 1 + (F-1)/2, H/2, W/2)
        if self.conv_out is not None:
            x = self.conv_out(x)
        return x


class SpaceToDepthDownBlock(nn.Module):
    """v0.9.5 stage: ResBlocks at one width, then an optional space-to-depth downsampler that widens."""

    def __init__(self, in_channels: int, out_channels: int, num_layers: int, downsample_type: str | None, eps: float,
                 causal: bool):
        super().__init__()
        self.resnets = nn.ModuleList(ResBlock3d(in_channels, eps=eps, causal=causal) for _ in range(num_layers))
        self.downsamplers = None
        if downsample_type is not None:
            time, space = DOWNSAMPLE_AXES[downsample_type]
            stride = (2 if time else 1, 2 if space else 1, 2 if space else 1)
            self.downsamplers = nn.ModuleList([SpaceToDepthDownsampler(in_channels, out_channels, stride, causal)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)  # (B, C', F / st, H / sh, W / sw) after the front frame repeat
        return x


class EncoderMidBlock(nn.Module):
    """ResBlocks at the deepest width."""

    def __init__(self, channels: int, num_layers: int, eps: float, causal: bool):
        super().__init__()
        self.resnets = nn.ModuleList(ResBlock3d(channels, eps=eps, causal=causal) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        return x


class Encoder(nn.Module):
    """`(B, 3, F, H, W)` -> `(B, 2C, F', H', W')`: C means then C log-variances.

    With uniform log-variance the head predicts C + 1 channels and the last one is repeated over all
    C log-variance channels, so the KL term cannot favour some channels over others; otherwise it
    predicts 2C channels (per-channel log-variance, the ablation baseline).
    """

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.patch_size, self.uniform_logvar = config.patch_size, config.uniform_logvar
        self.latent_channels = config.latent_channels
        causal, eps = config.encoder_causal, config.resnet_norm_eps
        widths = config.block_out_channels
        self.conv_in = CausalConv3d(config.in_channels * config.patch_size**2, widths[0], 3, causal=causal)
        self.down_blocks = nn.ModuleList()
        for index, downsamples in enumerate(config.spatio_temporal_scaling):
            width, layers = widths[index], config.layers_per_block[index]
            next_width = widths[index + 1] if index + 1 < len(widths) else width
            if config.space_to_depth:
                kind = config.downsample_type[index] if downsamples else None
                self.down_blocks.append(SpaceToDepthDownBlock(width, next_width, layers, kind, eps, causal))
            else:
                self.down_blocks.append(DownBlock(width, next_width, layers, downsamples, eps, causal))
        self.mid_block = EncoderMidBlock(widths[-1], config.layers_per_block[-1], eps, causal)
        self.conv_act = nn.SiLU()
        head_channels = config.latent_channels + 1 if config.uniform_logvar else 2 * config.latent_channels
        self.conv_out = CausalConv3d(widths[-1], head_channels, 3, causal=causal)

    def _patchify(self, video: torch.Tensor) -> torch.Tensor:
        return patchify(video, self.patch_size)  # (B, 3 * p * p, F, H/p, W/p)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = self.conv_in.forward_in_time_chunks(video, prepare=self._patchify)  # (B, C0, F, H/4, W/4)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)  # (B, C_last, F', H', W')
        x = self.conv_out(self.conv_act(pixel_norm(x)))  # (B, C + 1 or 2C, F', H', W')
        if self.uniform_logvar:
            logvar = x[:, -1:].expand(-1, self.latent_channels - 1, -1, -1, -1)
            x = torch.cat([x, logvar], dim=1)  # (B, 2C, F', H', W')
        return x
