"""Video-VAE decoder: timestep-conditioned ("denoising") decoder with depth-to-space upsampling and
multi-layer noise injection (paper Sec. 3.1-3.2; release v0.9.1)."""

from __future__ import annotations

import torch
from torch import nn

from ltx.models.common.embeddings import TimestepEmbedder
from ltx.models.vae.config import VAEConfig
from ltx.models.vae.layers import CausalConv3d, DepthToSpaceUpsampler, ResBlock3d, pixel_norm, unpatchify


class DecoderMidBlock(nn.Module):
    """ResBlocks at the widest width; with conditioning, its own timestep MLP to a `(4C)` embedding."""

    def __init__(self, channels: int, num_layers: int, eps: float, causal: bool, inject_noise: bool, conditioned: bool):
        super().__init__()
        self.time_embedder = TimestepEmbedder(4 * channels) if conditioned else None
        self.resnets = nn.ModuleList(
            ResBlock3d(channels, eps=eps, causal=causal, inject_noise=inject_noise, timestep_conditioning=conditioned)
            for _ in range(num_layers)
        )

    def forward(self, x: torch.Tensor, timestep: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
        embedding = _stage_embedding(self.time_embedder, timestep, x)
        for resnet in self.resnets:
            x = resnet(x, embedding, generator)
        return x


class UpBlock(nn.Module):
    """[ResBlock to a new width] -> depth-to-space upsampler -> ResBlocks, timestep-conditioned."""

    def __init__(self, in_channels: int, out_channels: int, num_layers: int, upsample: bool, eps: float, causal: bool,
                 inject_noise: bool, conditioned: bool, upsample_residual: bool, upscale_factor: int):
        super().__init__()
        self.time_embedder = TimestepEmbedder(4 * in_channels) if conditioned else None
        self.conv_in = None
        if in_channels != out_channels:
            self.conv_in = ResBlock3d(in_channels, out_channels, eps=eps, causal=causal, inject_noise=inject_noise,
                                      timestep_conditioning=conditioned)
        self.upsamplers = None
        if upsample:
            self.upsamplers = nn.ModuleList([DepthToSpaceUpsampler(out_channels * upscale_factor, (2, 2, 2), causal,
                                                                   upsample_residual, upscale_factor)])
        self.resnets = nn.ModuleList(
            ResBlock3d(out_channels, eps=eps, causal=causal, inject_noise=inject_noise, timestep_conditioning=conditioned)
            for _ in range(num_layers)
        )

    def forward(self, x: torch.Tensor, timestep: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
        if self.conv_in is not None:  # only in unconditioned decoders (VAEConfig checks)
            x = self.conv_in(x, None, generator)
        embedding = _stage_embedding(self.time_embedder, timestep, x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)  # (B, C, 2F - 1, 2H, 2W)
        for resnet in self.resnets:
            x = resnet(x, embedding, generator)
        return x


def _stage_embedding(embedder: TimestepEmbedder | None, timestep: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """`(B,)` scaled timesteps -> `(B, 4C, 1, 1, 1)` for the ResBlocks of one stage."""
    if embedder is None:
        return None
    return embedder(timestep, x.dtype).view(x.shape[0], -1, 1, 1, 1)


class Decoder(nn.Module):
    """`(B, C, F', H', W')` latents (+ timestep `t` in [0, 1]) -> `(B, 3, 1 + 8(F'-1), 32H', 32W')`.

    With timestep conditioning the decoder also denoises: it is trained on ``(1 - t) z + t eps`` and
    told ``t``; ``t`` is multiplied by a learnable scalar (initialised to 1000) before the sinusoid.
    """

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.patch_size = config.patch_size
        causal, eps = config.decoder_causal, config.resnet_norm_eps
        widths = tuple(reversed(config.decoder_block_out_channels))
        layers = tuple(reversed(config.decoder_layers_per_block))
        scaling = tuple(reversed(config.decoder_spatio_temporal_scaling))
        noise = tuple(reversed(config.decoder_inject_noise))
        if not config.noise_injection:
            noise = (False,) * len(noise)
        residual = tuple(reversed(config.upsample_residual))
        factors = tuple(reversed(config.upsample_factor))
        conditioned = config.timestep_conditioning
        self.conv_in = CausalConv3d(config.latent_channels, widths[0], 3, causal=causal)
        self.mid_block = DecoderMidBlock(widths[0], layers[0], eps, causal, noise[0], conditioned)
        self.up_blocks = nn.ModuleList()
        width = widths[0]
        for index, block_width in enumerate(widths):
            in_width, width = width // factors[index], block_width // factors[index]
            self.up_blocks.append(UpBlock(in_width, width, layers[index + 1], scaling[index], eps, causal,
                                          noise[index + 1], conditioned, residual[index], factors[index]))
        self.conv_act = nn.SiLU()
        self.conv_out = CausalConv3d(width, config.out_channels * config.patch_size**2, 3, causal=causal)
        self.timestep_scale_multiplier = self.time_embedder = self.scale_shift_table = None
        if conditioned:
            self.timestep_scale_multiplier = nn.Parameter(torch.tensor(1000.0))
            self.time_embedder = TimestepEmbedder(2 * width)
            self.scale_shift_table = nn.Parameter(torch.randn(2, width) / width**0.5)

    def forward(self, latents: torch.Tensor, timestep: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        if self.timestep_scale_multiplier is not None:
            if timestep is None:
                raise ValueError("this decoder is timestep-conditioned: pass timestep (B,) in [0, 1] (0 = clean)")
            timestep = timestep.to(latents.device).float().reshape(-1).expand(latents.shape[0])
            timestep = timestep * self.timestep_scale_multiplier  # (B,)
        x = self.conv_in(latents)  # (B, C_mid, F', H', W')
        x = self.mid_block(x, timestep, generator)
        for block in self.up_blocks:
            x = block(x, timestep, generator)  # (B, C, 2F - 1, 2H, 2W) per upsampling block
        x = pixel_norm(x)
        if self.time_embedder is not None:
            embedding = _stage_embedding(self.time_embedder, timestep, x).unflatten(1, (2, -1))  # (B, 2, C, 1, 1, 1)
            shift, scale = (embedding + self.scale_shift_table[None, ..., None, None, None]).unbind(dim=1)
            x = x * (1 + scale) + shift
        x = self.conv_act(x)
        # (B, 3 * p * p, F, H/p, W/p) -> unpatchified (B, 3, F, H, W), a few frames at a time at inference
        return self.conv_out.forward_in_time_chunks(x, finish=self._unpatchify)

    def _unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        return unpatchify(x, self.patch_size)
