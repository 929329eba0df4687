"""Rectified-flow training: noising, velocity targets, timestep samplers and conditioning masks."""

from ltx.diffusion.conditioning import (
    ConditioningConfig,
    apply_conditioning,
    drop_text,
    sample_conditioning_frames,
)
from ltx.diffusion.flow import expand_timesteps, interpolate, velocity_target
from ltx.diffusion.timesteps import (
    LogitNormalTimestepSampler,
    ShiftedLogitNormalTimestepSampler,
    UniformTimestepSampler,
    token_count_shift,
)

__all__ = [
    "ConditioningConfig",
    "LogitNormalTimestepSampler",
    "ShiftedLogitNormalTimestepSampler",
    "UniformTimestepSampler",
    "apply_conditioning",
    "drop_text",
    "expand_timesteps",
    "interpolate",
    "sample_conditioning_frames",
    "token_count_shift",
    "velocity_target",
]
