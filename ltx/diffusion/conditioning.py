"""Per-token-timestep conditioning with loss masking, and text dropout for classifier-free guidance.

Paper (arXiv 2501.00103, image-to-video): the tokens of a conditioning frame get their own small
timestep (0 by default), so the model sees them (nearly) clean, and they are left out of the loss.
The same mechanism gives video extension (condition on leading frames) and keyframe conditioning
(condition on any frames). Here a "frame" is a latent frame; latent frame 0 is the first video frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ltx.diffusion.flow import expand_timesteps, interpolate
from ltx.registry import CONDITIONING_MODES


@dataclass(frozen=True)
class ConditioningConfig:
    """How often a training sample gets conditioning frames, which ones, and their timestep.

    Each sample gets at most one mode, chosen with these probabilities (their sum is at most 1; the
    rest is plain text-to-video): the first latent frame (image-to-video; the official fine-tuner
    uses 0.1); the 1 to ``max_leading_frames`` leading latent frames (video extension); or a random
    non-empty set of latent frames (keyframes). All frames are never conditioning, and a 1-frame
    latent (an image) never is.
    """

    first_frame_probability: float = 0.1
    leading_frames_probability: float = 0.0
    max_leading_frames: int = 2
    keyframe_probability: float = 0.0
    conditioning_timestep: float = 0.0
    # Registered modes (ltx.diffusion.conditioning_modes) with a probability each (or {probability, options}),
    # drawn independently per sample and combined with the frame modes above.
    modes: Mapping[str, Any] | None = field(default_factory=dict)

    def __post_init__(self) -> None:
        probabilities = {
            "first_frame_probability": self.first_frame_probability,
            "leading_frames_probability": self.leading_frames_probability,
            "keyframe_probability": self.keyframe_probability,
        }
        for name, value in probabilities.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"ConditioningConfig.{name} must be in [0, 1], got {value!r}")
        total = sum(probabilities.values())
        if total > 1.0 + 1e-9:
            raise ValueError(
                "ConditioningConfig: first_frame_probability + leading_frames_probability + "
                f"keyframe_probability is {total:g}; each sample gets at most one mode, so the sum must "
                "be at most 1. Lower some of them."
            )
        if not isinstance(self.max_leading_frames, int) or self.max_leading_frames < 1:
            raise ValueError(
                f"ConditioningConfig.max_leading_frames must be an int >= 1, got {self.max_leading_frames!r}"
            )
        for name, setting in dict(self.modes or {}).items():
            CONDITIONING_MODES.get(name)  # an unknown name raises listing the valid ones
            probability = setting.get("probability", 0.0) if isinstance(setting, Mapping) else setting
            if not 0.0 <= float(probability) <= 1.0:
                raise ValueError(f"ConditioningConfig.modes[{name!r}] probability must be in [0, 1], got {probability!r}")
        if not 0.0 <= self.conditioning_timestep <= 1.0:
            raise ValueError(
                f"ConditioningConfig.conditioning_timestep must be in [0, 1], got {self.conditioning_timestep!r}"
            )


def sample_conditioning_frames(
    batch_size: int,
    latent_frames: int,
    config: ConditioningConfig,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Which latent frames condition each sample: a bool ``(B, F)``, see ``ConditioningConfig``.

    Draws happen on the generator's device (CPU when none), then move to ``device``.
    """
    if batch_size < 0 or latent_frames < 1:
        raise ValueError(f"need batch_size >= 0 and latent_frames >= 1, got {batch_size} and {latent_frames}")
    draw_device = generator.device if generator is not None else torch.device("cpu")
    frames = torch.zeros(batch_size, latent_frames, dtype=torch.bool, device=draw_device)  # (B, F)
    if latent_frames == 1:  # an image: nothing to condition on without conditioning everything
        return frames.to(device) if device is not None else frames
    mode_draw = torch.rand(batch_size, generator=generator, device=draw_device)  # (B,)
    count_draw = torch.rand(batch_size, generator=generator, device=draw_device)  # (B,)
    order_draw = torch.rand(batch_size, latent_frames, generator=generator, device=draw_device)  # (B, F)

    first_end = config.first_frame_probability
    leading_end = first_end + config.leading_frames_probability
    keyframe_end = leading_end + config.keyframe_probability
    first = mode_draw < first_end
    leading = (mode_draw >= first_end) & (mode_draw < leading_end)
    keyframes = (mode_draw >= leading_end) & (mode_draw < keyframe_end)

    index = torch.arange(latent_frames, device=draw_device)  # (F,)
    frames[:, 0] |= first
    most_leading = min(config.max_leading_frames, latent_frames - 1)
    leading_count = 1 + (count_draw * most_leading).long().clamp(max=most_leading - 1)  # (B,) in [1, most]
    frames |= leading[:, None] & (index[None, :] < leading_count[:, None])
    keyframe_count = 1 + (count_draw * (latent_frames - 1)).long().clamp(max=latent_frames - 2)  # [1, F-1]
    rank = order_draw.argsort(dim=1).argsort(dim=1)  # (B, F) a random permutation of 0..F-1 per sample
    frames |= keyframes[:, None] & (rank < keyframe_count[:, None])
    return frames.to(device) if device is not None else frames


def apply_conditioning(
    latents: torch.Tensor,
    noise: torch.Tensor,
    timestep: torch.Tensor,
    conditioning_frames: torch.Tensor,
    conditioning_timestep: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise ``latents (B, C, F, H, W)`` with per-token timesteps, conditioning frames at their own t.

    Returns ``(noisy_latents (B, C, F, H, W), token_timesteps (B, F, H, W), loss_mask (B, 1, F, H, W))``:
    tokens of conditioning frames get ``conditioning_timestep`` (with 0 their noisy latents are the
    clean latents) and are false in the loss mask; every other token gets its sample's ``timestep``
    (per sample ``(B,)`` or per token ``(B, F, H, W)``).
    """
    if latents.ndim != 5:
        raise ValueError(f"latents must be (B, C, F, H, W), got shape {tuple(latents.shape)}")
    batch, _, frames, height, width = latents.shape
    if conditioning_frames.dtype != torch.bool or tuple(conditioning_frames.shape) not in (
            (batch, frames), (batch, frames, height, width)):
        raise ValueError(
            f"conditioning_frames must be a bool tensor (B, F) = ({batch}, {frames}) or per token (B, F, H, W) = "
            f"({batch}, {frames}, {height}, {width}), got {conditioning_frames.dtype} "
            f"{tuple(conditioning_frames.shape)}; see sample_conditioning_frames / draw_conditioning_mask"
        )
    if not 0.0 <= conditioning_timestep <= 1.0:
        raise ValueError(f"conditioning_timestep must be in [0, 1], got {conditioning_timestep!r}")
    sample_timesteps = expand_timesteps(timestep.to(latents.device), latents.shape)  # (B, F, H, W)
    if not sample_timesteps.is_floating_point():
        sample_timesteps = sample_timesteps.float()
    conditioning = conditioning_frames.to(latents.device)
    if conditioning.ndim == 2:
        conditioning = conditioning[:, :, None, None]  # (B, F, 1, 1)
    conditioning = conditioning.expand(batch, frames, height, width)  # (B, F, H, W)
    token_timesteps = torch.where(
        conditioning, sample_timesteps.new_tensor(conditioning_timestep), sample_timesteps
    )  # (B, F, H, W)
    noisy_latents = interpolate(latents, noise, token_timesteps)
    loss_mask = (~conditioning).unsqueeze(1).contiguous()  # (B, 1, F, H, W)
    return noisy_latents, token_timesteps, loss_mask


def drop_text(
    embeddings: torch.Tensor,
    mask: torch.Tensor,
    probability: float,
    generator: torch.Generator | None = None,
    null_embeddings: torch.Tensor | None = None,
    null_mask: torch.Tensor | None = None,
    dropped: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Replace each sample's text by the null text with ``probability``, for classifier-free guidance.
    ``dropped`` `(B,)` bool: flags drawn by the caller (then ``probability`` and ``generator`` are unused).

    ``embeddings (B, L, D)`` and ``mask (B, L)`` are the encoded prompts; returns the new embeddings,
    the new mask (the input mask's dtype) and the dropped flags ``(B,)`` bool.

    The null text: pass ``null_embeddings`` ``(L, D)``/``(1, L, D)``/``(B, L, D)`` with ``null_mask``,
    ideally the encoded empty prompt, which is exactly the unconditional input the release uses at
    inference (negative prompt ""). Without them, dropped samples get zero embeddings and an all-false
    mask: literally no text. Then every cross-attention key of that sample is masked, which the model
    must handle (a finite additive bias such as the release's -10000 averages the zero values
    uniformly; a -inf bias would give NaNs).
    """
    if embeddings.ndim != 3 or mask.shape != embeddings.shape[:2]:
        raise ValueError(
            f"embeddings must be (B, L, D) and mask (B, L), got {tuple(embeddings.shape)} and {tuple(mask.shape)}"
        )
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {probability!r}")
    if (null_embeddings is None) != (null_mask is None):
        raise ValueError("pass null_embeddings and null_mask together (e.g. both from encoding the prompt ''), or neither")
    batch, length, dim = embeddings.shape
    if null_embeddings is None:
        null_embeddings = embeddings.new_zeros(1, length, dim)
        null_mask = torch.zeros(1, length, dtype=mask.dtype, device=mask.device)
    null_embeddings = null_embeddings.unsqueeze(0) if null_embeddings.ndim == 2 else null_embeddings  # (1, L, D)
    null_mask = null_mask.unsqueeze(0) if null_mask.ndim == 1 else null_mask  # (1, L)
    if null_embeddings.shape[1:] != (length, dim) or null_embeddings.shape[0] not in (1, batch):
        raise ValueError(
            f"null_embeddings must be (L, D), (1, L, D) or (B, L, D) with L={length}, D={dim}, B={batch}; "
            f"got {tuple(null_embeddings.shape)}. Encode the null prompt with the same encoder and max_length."
        )
    if null_mask.shape[1:] != (length,) or null_mask.shape[0] not in (1, batch):
        raise ValueError(f"null_mask must be (L,), (1, L) or (B, L) with L={length}, got {tuple(null_mask.shape)}")

    if dropped is None:
        draw_device = generator.device if generator is not None else torch.device("cpu")
        dropped = torch.rand(batch, generator=generator, device=draw_device) < probability  # (B,)
    elif dropped.shape != (batch,) or dropped.dtype != torch.bool:
        raise ValueError(f"dropped must be ({batch},) bool, got {tuple(dropped.shape)} {dropped.dtype}")
    dropped = dropped.to(embeddings.device)
    null_embeddings = null_embeddings.to(device=embeddings.device, dtype=embeddings.dtype)
    null_mask = null_mask.to(device=mask.device, dtype=mask.dtype)
    new_embeddings = torch.where(dropped[:, None, None], null_embeddings, embeddings)  # (B, L, D)
    new_mask = torch.where(dropped.to(mask.device)[:, None], null_mask, mask)  # (B, L)
    return new_embeddings, new_mask, dropped
