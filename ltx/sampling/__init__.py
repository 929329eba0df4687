"""Inference: the release's timestep schedule, the Euler flow sampler (guidance, frame conditioning)
and decoding with the denoising decoder. Samplers are registered in ``ltx.registry.SAMPLERS``."""

from ltx.sampling.decode import decode_latents
from ltx.sampling.euler import (
    EulerFlowSampler,
    FrameConditioning,
    image_conditioning,
    last_image_conditioning,
    merge_conditionings,
    region_conditioning,
)
from ltx.sampling.schedule import flow_timesteps, token_count_shift

__all__ = [
    "EulerFlowSampler",
    "FrameConditioning",
    "decode_latents",
    "flow_timesteps",
    "image_conditioning",
    "last_image_conditioning",
    "merge_conditionings",
    "region_conditioning",
    "token_count_shift",
]
