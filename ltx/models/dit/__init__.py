"""The LTX video transformer (plain PyTorch)."""

from ltx.models.dit.config import PRESETS, DiTConfig, dit_config
from ltx.models.dit.transformer import VideoTransformer, patchify_latents, unpatchify_latents

__all__ = ["PRESETS", "DiTConfig", "VideoTransformer", "dit_config", "patchify_latents", "unpatchify_latents"]
