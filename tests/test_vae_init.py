"""The VAE's training initialisations: what each scheme sets, that the architecture is unchanged, and that
the ``shortcut`` start is what it claims (identity blocks, strided identity, shortcut-only upsampling)."""

from __future__ import annotations

import pytest
import torch

from ltx.models.vae import VideoAutoencoder, vae_config
from ltx.models.vae.layers import ResBlock3d, depth_to_space
from ltx.registry import VAE_INITS, RegistryError
from ltx.training.vae_init import initialize_vae


def small_vae(**overrides) -> VideoAutoencoder:
    torch.manual_seed(0)
    return VideoAutoencoder(vae_config("tiny", **overrides))


def test_schemes_are_registered_and_a_wrong_name_lists_them():
    assert {"default", "shortcut"} <= set(VAE_INITS.names())
    with pytest.raises(RegistryError, match=r"unknown vae init 'zeros'\. Valid names: .*default.*shortcut"):
        initialize_vae(small_vae(), "zeros")


def test_shortcut_keeps_names_and_shapes_and_sets_the_logvar_bias():
    vae = small_vae()
    shapes = {name: tuple(p.shape) for name, p in vae.state_dict().items()}
    initialize_vae(vae, "shortcut", initial_logvar=-3.0)
    assert {name: tuple(p.shape) for name, p in vae.state_dict().items()} == shapes
    channels = vae.config.latent_channels
    head_bias = vae.encoder.conv_out.conv.bias
    assert head_bias[channels].item() == -3.0
    posterior = vae.encode(torch.rand(1, 3, 9, 64, 64) * 2 - 1)
    # the posterior std starts near exp(-3 / 2), whatever the means (uniform log-variance: one channel)
    assert posterior.std.mean().item() == pytest.approx(torch.exp(torch.tensor(-1.5)).item(), rel=0.5)


def test_shortcut_residual_blocks_start_as_identity():
    vae = small_vae()
    initialize_vae(vae, "shortcut")
    blocks = [m for m in vae.encoder.modules() if isinstance(m, ResBlock3d) and m.conv_shortcut is None]
    assert blocks
    x = torch.randn(2, blocks[0].conv1.conv.in_channels, 3, 8, 8)
    torch.testing.assert_close(blocks[0](x), x)


def test_shortcut_downsampler_is_a_strided_identity():
    vae = small_vae()
    initialize_vae(vae, "shortcut")
    downsampler = vae.encoder.down_blocks[0].downsamplers[0]
    x = torch.randn(1, downsampler.conv.in_channels, 5, 8, 8)
    # causal: output frame i reads input frame 2i (the kernel's newest frame), centre pixel of each 2x2 step
    torch.testing.assert_close(downsampler(x), x[:, :, ::2, ::2, ::2])


def test_shortcut_space_to_depth_downsampler_passes_only_its_shortcut():
    """v0.9.5 encoder: the downsampler's output is the group mean of the space-to-depth input."""
    torch.manual_seed(0)
    vae = VideoAutoencoder(vae_config("tiny-0.9.5"))
    initialize_vae(vae, "shortcut")
    downsampler = vae.encoder.down_blocks[2].downsamplers[0]  # spatio-temporal, 32 -> 64 channels
    x = torch.randn(1, 32, 5, 8, 8)
    padded = torch.cat([x[:, :, :1], x], dim=2)  # (1, 32, 6, 8, 8): the first frame repeated
    blocks = padded.unflatten(4, (4, 2)).unflatten(3, (4, 2)).unflatten(2, (3, 2))  # (1, 32, 3, 2, 4, 2, 4, 2)
    folded = blocks.permute(0, 1, 3, 5, 7, 2, 4, 6).flatten(1, 4)  # (1, 256, 3, 4, 4)
    torch.testing.assert_close(downsampler(x), folded.unflatten(1, (64, 4)).mean(dim=2))


def test_shortcut_upsampler_passes_only_the_depth_to_space_shortcut():
    vae = small_vae()
    initialize_vae(vae, "shortcut")
    upsampler = vae.decoder.up_blocks[0].upsamplers[0]
    x = torch.randn(1, upsampler.conv.conv.in_channels, 2, 2, 2)
    repeats = 8 // upsampler.upscale_factor
    expected = depth_to_space(x, (2, 2, 2)).repeat(1, repeats, 1, 1, 1)[:, :, 1:]
    torch.testing.assert_close(upsampler(x), expected)


def test_default_leaves_the_weights_alone_except_the_logvar_bias():
    vae = small_vae()
    before = {name: p.clone() for name, p in vae.state_dict().items()}
    initialize_vae(vae, "default", initial_logvar=-2.0)
    changed = [name for name, p in vae.state_dict().items() if not torch.equal(p, before[name])]
    assert changed == ["encoder.conv_out.conv.bias"]


def test_shortcut_adaptive_norms_start_as_identity():
    vae = small_vae()
    latents = torch.randn(1, vae.config.latent_channels, 2, 2, 2)
    with torch.no_grad():
        assert (vae.decode(latents, 0.0) - vae.decode(latents, 0.2)).abs().max() > 1e-4  # random AdaLN: t matters
        initialize_vae(vae, "shortcut")
        # every scale and shift is 0 for every t: the decoder starts without looking at t
        torch.testing.assert_close(vae.decode(latents, 0.0), vae.decode(latents, 0.2))
