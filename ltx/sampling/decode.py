"""Latents -> pixels with the Video-VAE's denoising decoder, the release's way (paper Sec. 3.1)."""

from __future__ import annotations

import torch
from torch import nn

from ltx.sampling.euler import _parameter_dtype, _randn


@torch.no_grad()
def decode_latents(vae: nn.Module, latents: torch.Tensor, decode_timestep: float = 0.05,
                   renoise_scale: float = 0.025, generator: torch.Generator | None = None,
                   chunk_frames: int | None = None) -> torch.Tensor:
    """Normalised DiT latents `(B, C, F', H', W')` -> video `(B, 3, 1 + 8(F'-1), 32H', 32W')` in [-1, 1].

    Denormalise (``vae.denormalize_latents``), re-noise ``z <- (1 - s) z + s eps`` with
    ``s = renoise_scale`` and decode at ``decode_timestep``: the denoising decoder removes the noise
    and the DiT's residual artefacts together (LTX-Video paper Sec. 3.1; release: s = 0.025, t = 0.05,
    as diffusers ``LTXPipeline`` with ``decode_noise_scale=0.025, decode_timestep=0.05``). A VAE without
    timestep conditioning cannot denoise, so its latents are decoded clean (timestep None, no
    re-noising) whatever the two settings say. ``generator`` draws the re-noising and the decoder's
    injected noise; ``chunk_frames`` bounds memory (``VideoAutoencoder.decode``). Output is float32,
    clamped to [-1, 1].
    """
    if latents.ndim != 5:
        raise ValueError(f"latents must be (B, C, F', H', W'), got {tuple(latents.shape)}")
    if not 0.0 <= decode_timestep <= 1.0 or not 0.0 <= renoise_scale <= 1.0:
        raise ValueError(f"decode_timestep and renoise_scale must be in [0, 1], got {decode_timestep!r} "
                         f"and {renoise_scale!r}")
    z = vae.denormalize_latents(latents.float())  # (B, C, F', H', W') raw latents
    timestep: float | None = None
    if vae.config.timestep_conditioning:
        timestep = decode_timestep
        if renoise_scale > 0.0:
            z = (1.0 - renoise_scale) * z + renoise_scale * _randn(z.shape, generator, z.device)
    video = vae.decode(z.to(_parameter_dtype(vae, z.dtype)), timestep, generator, chunk_frames)
    return video.float().clamp(-1.0, 1.0)  # (B, 3, F, H, W)
