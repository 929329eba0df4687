"""Text-to-video samples from a DiT, its frozen VAE and text encoder: used for the periodic samples
of training and by the sample command."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch
from torchvision.utils import make_grid

from ltx.data.video_io import encode_mp4
from ltx.models.dit import VideoTransformer
from ltx.models.vae import VideoAutoencoder
from ltx.registry import SAMPLERS
from ltx.sampling import FrameConditioning, decode_latents, flow_timesteps
from ltx.shapes import SPATIAL_COMPRESSION, TEMPORAL_COMPRESSION, check_video_shape
from ltx.text.encoders import TextEncoder
from ltx.training.previews import to_uint8_frames


@dataclass(frozen=True)
class SampleSettings:
    """What to generate and how (the release's inference defaults where it has them)."""

    frames: int = 17
    height: int = 128
    width: int = 128
    fps: float = 24.0
    num_steps: int = 20
    guidance_scale: float = 3.0
    sampler: str = "euler"
    decode_timestep: float = 0.05
    renoise_scale: float = 0.025
    seed: int = 0
    schedule_shift: float | None = None  # mu of the time shift; None: the token-count shift (0.9.1); 0.0: none (0.9.5+)
    schedule_terminal: float | None = 0.1  # where the stretched schedule's last step lands; None: no stretch (0.9.5+)

    def with_inference_defaults(self, defaults: dict | None, **given: object) -> SampleSettings:
        """These settings with a model's per-version ``inference`` defaults (``model.dit.inference``) for
        every field not in ``given`` or given as None (e.g. unset on the command line)."""
        values = dict(defaults or {})
        values.update({key: value for key, value in given.items() if value is not None})
        unknown = set(values) - _SETTING_NAMES
        if unknown:
            raise ValueError(f"unknown sample settings {sorted(unknown)}; valid: {', '.join(sorted(_SETTING_NAMES))}")
        return replace(self, **values)


_SETTING_NAMES = {field.name for field in fields(SampleSettings)}


@torch.no_grad()
def generate(transformer: VideoTransformer, vae: VideoAutoencoder, text_encoder: TextEncoder, prompts: list[str],
             settings: SampleSettings, negative_prompt: str = "",
             conditioning: FrameConditioning | None = None, return_latents: bool = False,
             reference: torch.Tensor | None = None) -> torch.Tensor:
    """Videos `(B, 3, F, H, W)` in [-1, 1] for ``prompts`` (or the sampled normalised latents); ``reference``:
    normalised latents of a reference video (IC-LoRA), see ``EulerFlowSampler.sample``."""
    check_video_shape(settings.frames, settings.height, settings.width, what="sample size")
    device = next(transformer.parameters()).device
    generator = torch.Generator().manual_seed(settings.seed)
    shape = (len(prompts), transformer.config.in_channels, 1 + (settings.frames - 1) // TEMPORAL_COMPRESSION,
             settings.height // SPATIAL_COMPRESSION, settings.width // SPATIAL_COMPRESSION)
    noise = torch.randn(shape, generator=generator).to(device)
    text, mask = text_encoder.encode(prompts)
    negative, negative_mask = text_encoder.encode([negative_prompt] * len(prompts))
    schedule = flow_timesteps(settings.num_steps, shape[2] * shape[3] * shape[4], settings.schedule_terminal,
                              settings.schedule_shift)  # (num_steps + 1,)
    latents = SAMPLERS.build(settings.sampler).sample(
        transformer, noise, text.to(device), mask.to(device), settings.fps, settings.num_steps,
        guidance_scale=settings.guidance_scale, negative_text=negative.to(device),
        negative_text_mask=negative_mask.to(device), conditioning=conditioning, generator=generator,
        timesteps=schedule, **({} if reference is None else {"reference": reference.to(device)}))
    if return_latents:
        return latents
    return decode_latents(vae, latents, settings.decode_timestep, settings.renoise_scale, generator=generator)


def write_video(video: torch.Tensor, path: Path, fps: float) -> Path:
    """`(3, F, H, W)` in [-1, 1] -> H.264 mp4."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_mp4(list(to_uint8_frames(video)), fps=fps))
    return path


def sample_grid(videos: torch.Tensor, max_frames: int = 4) -> torch.Tensor:
    """`(B, 3, F, H, W)` -> a `(3, H', W')` image in [0, 1]: one row of evenly spaced frames per video."""
    frames = videos.shape[2]
    picks = torch.linspace(0, frames - 1, min(frames, max_frames)).round().long()
    tiles = [(video[:, index].float().clamp(-1, 1) + 1) / 2 for video in videos for index in picks]
    return make_grid(tiles, nrow=len(picks), padding=2)
