"""Rectified flow: the straight path from clean latents to noise, and the velocity the model learns."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _check_latent_pair(latents: torch.Tensor, noise: torch.Tensor) -> None:
    if latents.ndim != 5:
        raise ValueError(f"latents must be (B, C, F, H, W), got shape {tuple(latents.shape)}")
    if noise.shape != latents.shape:
        raise ValueError(
            f"noise must have the latents' shape {tuple(latents.shape)}, got {tuple(noise.shape)}; "
            "draw it with torch.randn_like(latents)"
        )


def expand_timesteps(timestep: torch.Tensor, latent_shape: Sequence[int]) -> torch.Tensor:
    """Per-token timesteps ``(B, F, H, W)`` from per-sample ``(B,)`` ones (per-token ones pass through).

    Per-token timesteps are how conditioning tokens get their own noise level (paper, image-to-video).
    """
    if len(latent_shape) != 5:
        raise ValueError(f"latent_shape must be (B, C, F, H, W), got {tuple(latent_shape)}")
    batch, _, frames, height, width = (int(size) for size in latent_shape)
    token_shape = (batch, frames, height, width)
    if timestep.ndim == 1 and timestep.shape[0] == batch:
        return timestep.view(batch, 1, 1, 1).expand(token_shape).contiguous()  # (B, F, H, W)
    if tuple(timestep.shape) == token_shape:
        return timestep
    raise ValueError(
        f"timestep must be per sample (B,) = ({batch},) or per token (B, F, H, W) = {token_shape}, "
        f"got shape {tuple(timestep.shape)}"
    )


def interpolate(latents: torch.Tensor, noise: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
    """The noisy latents ``z_t = (1 - t) z0 + t eps`` of rectified flow (t = 0 clean, t = 1 pure noise).

    ``timestep`` is per sample ``(B,)`` or per token ``(B, F, H, W)``. The mix is computed in at least
    float32 (exact at both endpoints) and returned in the latents' dtype.
    """
    _check_latent_pair(latents, noise)
    token_timestep = expand_timesteps(timestep.to(latents.device), latents.shape)
    compute_dtype = torch.promote_types(latents.dtype, torch.float32)
    t = token_timestep.to(compute_dtype).unsqueeze(1)  # (B, 1, F, H, W)
    mixed = (1 - t) * latents.to(compute_dtype) + t * noise.to(compute_dtype)  # (B, C, F, H, W)
    return mixed.to(latents.dtype)


def velocity_target(latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The rectified-flow regression target ``v = eps - z0`` (the derivative of ``z_t`` in t)."""
    _check_latent_pair(latents, noise)
    return noise - latents
