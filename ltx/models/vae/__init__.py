"""The LTX Video-VAE (plain PyTorch)."""

from ltx.models.vae.autoencoder import DiagonalGaussian, VideoAutoencoder
from ltx.models.vae.config import PRESETS, VAEConfig, vae_config

__all__ = ["PRESETS", "DiagonalGaussian", "VAEConfig", "VideoAutoencoder", "vae_config"]
