"""How a Video-VAE trained from scratch starts: initialisations that are part of the training recipe,
not of the architecture (the released layers, names and shapes are unchanged; diffusers loads the result).

Why (measured in ``experiments/vae_recipe``): with PyTorch's default init the LTX VAE learns very slowly
at small scale. A stride-2 convolution without a shortcut in each encoder stage, residual branches
that add a random function of a PixelNormed input to every block's output, and upsamplers whose random
convolution is added to the depth-to-space shortcut all scramble the signal before any learning; the
decoder then spends hundreds of steps predicting blurred average colours. High-compression
autoencoders optimise much better with non-parametric shortcuts (Chen et al., "Deep Compression
Autoencoder", arXiv 2410.10733), which later LTX releases added to the encoder. ``shortcut`` gets
that behaviour from initialisation alone:

- every ResBlock's second convolution starts at zero, so each block starts as the identity
  (SkipInit / "zero-gamma", Goyal et al. 2017; DiT's adaLN-zero does the same for its blocks);
- every encoder stride-2 downsampler whose width does not change starts as a strided identity
  (the centre tap), so the encoder starts by subsampling rather than mixing channels at random; a
  v0.9.5 space-to-depth downsampler starts with its convolution at zero, so only its parameter-free
  shortcut (space-to-depth, then group means) carries the signal;
- every decoder upsampler's convolution starts at zero, so at first only the release's residual
  depth-to-space path carries the latents to pixels;
- every AdaLN of the timestep-conditioned decoder starts as the identity (adaLN-zero);
- the encoder's log-variance bias starts at ``initial_logvar`` (e.g. -4: posterior std 0.14), so
  posterior samples carry the means' information from step one instead of drowning it in std-1 noise
  (the posterior collapse the demo showed with the default 0).
"""

from __future__ import annotations

import torch
from torch import nn

from ltx.models.vae import VideoAutoencoder
from ltx.models.vae.layers import ResBlock3d, SpaceToDepthDownsampler
from ltx.registry import VAE_INITS


def set_initial_logvar(vae: VideoAutoencoder, initial_logvar: float | None) -> None:
    """Set the encoder head's log-variance bias(es) to ``initial_logvar`` (None: leave them)."""
    if initial_logvar is None:
        return
    head = vae.encoder.conv_out.conv
    channels = vae.config.latent_channels
    logvar_channels = slice(channels, channels + 1) if vae.config.uniform_logvar else slice(channels, 2 * channels)
    with torch.no_grad():
        head.bias[logvar_channels] = float(initial_logvar)


@VAE_INITS.register("default")
def default_init(vae: VideoAutoencoder, initial_logvar: float | None = None) -> None:
    """PyTorch's default layer initialisation (what the model is built with); optional log-variance bias."""
    set_initial_logvar(vae, initial_logvar)


@VAE_INITS.register("shortcut")
def shortcut_init(vae: VideoAutoencoder, initial_logvar: float | None = -4.0) -> None:
    """Identity residual blocks, strided-identity downsamplers, shortcut-only upsamplers, adaLN-zero
    (module docstring); ``experiments/vae_recipe`` measures the pieces one by one."""
    identity_residual_blocks(vae)
    strided_identity_downsamplers(vae)
    shortcut_only_upsamplers(vae)
    identity_adaptive_norms(vae)
    set_initial_logvar(vae, initial_logvar)


@torch.no_grad()
def identity_residual_blocks(vae: VideoAutoencoder) -> None:
    """Every ResBlock's second convolution at zero: each block starts as the identity."""
    for module in vae.modules():
        if isinstance(module, ResBlock3d):
            nn.init.zeros_(module.conv2.conv.weight)
            nn.init.zeros_(module.conv2.conv.bias)


@torch.no_grad()
def strided_identity_downsamplers(vae: VideoAutoencoder) -> None:
    """Every encoder stride-2 ``C -> C`` downsampler copies each channel from its kernel's last (newest)
    frame, centre pixel; a widening one keeps its default init (it has no identity). A space-to-depth
    downsampler (v0.9.5) gets a zero convolution: its shortcut alone passes the signal."""
    for block in vae.encoder.down_blocks:
        if block.downsamplers is None:
            continue
        if isinstance(block.downsamplers[0], SpaceToDepthDownsampler):
            nn.init.zeros_(block.downsamplers[0].conv.conv.weight)
            nn.init.zeros_(block.downsamplers[0].conv.conv.bias)
            continue
        conv = block.downsamplers[0].conv
        out_channels, in_channels, frames, height, width = conv.weight.shape
        if out_channels != in_channels:
            continue
        nn.init.zeros_(conv.weight)
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
        index = torch.arange(out_channels)
        conv.weight[index, index, frames - 1, height // 2, width // 2] = 1.0


@torch.no_grad()
def shortcut_only_upsamplers(vae: VideoAutoencoder) -> None:
    """Every decoder upsampler's convolution at zero: only the residual depth-to-space path carries signal."""
    for block in vae.decoder.up_blocks:
        if block.upsamplers is not None:
            nn.init.zeros_(block.upsamplers[0].conv.conv.weight)
            nn.init.zeros_(block.upsamplers[0].conv.conv.bias)


@torch.no_grad()
def identity_adaptive_norms(vae: VideoAutoencoder) -> None:
    """Timestep-conditioned decoder: every AdaLN starts as the identity (DiT's adaLN-zero): the learned
    scale-shift tables and the last layer of each timestep MLP start at zero, so ``h * (1 + scale) + shift``
    is ``h`` for every t until training says otherwise (at random they scale and shift each channel at
    random, and learning at small scale was measurably slower: experiments/vae_recipe)."""
    for module in vae.decoder.modules():
        table = getattr(module, "scale_shift_table", None)
        if isinstance(table, nn.Parameter):
            nn.init.zeros_(table)
        embedder = getattr(module, "time_embedder", None)
        if embedder is not None:
            nn.init.zeros_(embedder.timestep_embedder.linear_2.weight)
            nn.init.zeros_(embedder.timestep_embedder.linear_2.bias)


def initialize_vae(vae: VideoAutoencoder, scheme: str = "default", **kwargs: float | None) -> None:
    """Apply the registered initialisation ``scheme`` (``vae_training.init``) to a freshly built VAE."""
    VAE_INITS.get(scheme)(vae, **kwargs)


__all__ = ["default_init", "identity_adaptive_norms", "identity_residual_blocks", "initialize_vae", "set_initial_logvar",
           "shortcut_init", "shortcut_only_upsamplers", "strided_identity_downsamplers"]
