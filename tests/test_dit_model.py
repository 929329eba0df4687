"""The LTX transformer: shapes, per-token timesteps, input checks, and parity with diffusers."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import LTXVideoTransformer3DModel

from ltx.interop.diffusers import (
    export_transformer,
    load_transformer,
    transformer_config_from_diffusers,
    transformer_config_to_diffusers,
)
from ltx.models.dit import DiTConfig, VideoTransformer, dit_config
from ltx.models.dit.transformer import trim_text_padding
from ltx.positional.rope import rope_frequencies

# A second architecture: hidden 48 (a multiple of 6, so no unrotated channels), 3 blocks, 2 heads,
# no attention biases, a 40-d text encoder.
ALTERNATIVE = dict(in_channels=8, out_channels=8, num_attention_heads=2, attention_head_dim=24,
                   cross_attention_dim=48, num_layers=3, caption_channels=40, attention_bias=False,
                   attention_out_bias=False)
CONFIGS = {"tiny": dit_config("tiny"), "alternative": dit_config("tiny", **ALTERNATIVE)}


def inputs(config: DiTConfig, batch: int = 2, grid=(3, 4, 5), seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, config.in_channels, *grid, generator=generator)
    text = torch.randn(batch, 7, config.caption_channels, generator=generator)
    mask = torch.ones(batch, 7)
    mask[-1, 4:] = 0  # the last sample has a shorter prompt
    return latents, text, mask


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Zero-initialised layers would hide mistakes: give every parameter random values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model.eval()


def reference_velocity(reference, latents, timestep, text, mask, fps=24.0):
    """diffusers' call convention: tokens (B, N, C), t x 1000, the release's RoPE scale."""
    batch, _, frames, height, width = latents.shape
    tokens = latents.flatten(2).transpose(1, 2)
    if timestep.ndim == 4:
        timestep = timestep.flatten(1)
    out = reference(tokens, text, timestep * 1000, mask, num_frames=frames, height=height, width=width,
                    rope_interpolation_scale=(8 / fps, 32, 32)).sample
    return out.transpose(1, 2).unflatten(2, (frames, height, width))


def test_output_shape_and_identity_initialisation():
    model = VideoTransformer(dit_config("tiny")).eval()
    latents, text, mask = inputs(model.config)
    with torch.no_grad():
        out = model(latents, torch.tensor([0.2, 0.9]), text, mask)
    assert out.shape == latents.shape
    assert torch.count_nonzero(out) == 0  # the zero-initialised output projection


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_parity_with_diffusers(name):
    config = CONFIGS[name]
    reference = randomised(LTXVideoTransformer3DModel(**transformer_config_to_diffusers(config)))
    ours = VideoTransformer(config).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    latents, text, mask = inputs(config)
    timestep = torch.tensor([0.3, 0.85])
    with torch.no_grad():
        torch.testing.assert_close(ours(latents, timestep, text, mask, 24.0),
                                   reference_velocity(reference, latents, timestep, text, mask), atol=1e-4, rtol=0)
        per_token = torch.rand(2, 3, 4, 5)
        per_token[:, 0] = 0.0  # conditioning first frame
        torch.testing.assert_close(ours(latents, per_token, text, mask, 30.0),
                                   reference_velocity(reference, latents, per_token, text, mask, fps=30.0),
                                   atol=1e-4, rtol=0)
        padded_text = torch.cat([text, torch.randn(2, 5, text.shape[-1])], dim=1)  # trailing padding we trim
        padded_mask = torch.cat([mask, torch.zeros(2, 5)], dim=1)
        torch.testing.assert_close(ours(latents, timestep, padded_text, padded_mask, 24.0),
                                   reference_velocity(reference, latents, timestep, padded_text, padded_mask),
                                   atol=1e-4, rtol=0)


def test_per_token_timesteps_condition_tokens_separately():
    model = randomised(VideoTransformer(dit_config("tiny")))
    latents, text, mask = inputs(model.config)
    uniform = torch.full((2, 3, 4, 5), 0.7)
    first_frame_clean = uniform.clone()
    first_frame_clean[:, 0] = 0.0
    with torch.no_grad():
        same = model(latents, torch.tensor([0.7, 0.7]), text, mask)
        torch.testing.assert_close(model(latents, uniform, text, mask), same)
        assert not torch.allclose(model(latents, first_frame_clean, text, mask), same)


def test_text_mask_hides_padding_tokens():
    model = randomised(VideoTransformer(dit_config("tiny")))
    latents, text, mask = inputs(model.config)
    altered = text.clone()
    altered[-1, 4:] = 100.0  # only masked-out tokens of the last sample change
    with torch.no_grad():
        torch.testing.assert_close(model(latents, 0.5, altered, mask), model(latents, 0.5, text, mask))


def test_trailing_text_padding_is_trimmed_without_changing_the_output():
    model = randomised(VideoTransformer(dit_config("tiny")))
    latents, text, mask = inputs(model.config)
    padded_text = torch.cat([text, torch.randn(2, 9, text.shape[-1]) * 50], dim=1)  # (2, 16, D)
    padded_mask = torch.cat([mask, torch.zeros(2, 9)], dim=1)  # 9 columns of padding in every row
    trimmed_text, trimmed_mask = trim_text_padding(padded_text, padded_mask)
    assert trimmed_text.shape[1] == trimmed_mask.shape[1] == 7  # the longest caption
    torch.testing.assert_close(trimmed_text, text)
    with torch.no_grad():
        torch.testing.assert_close(model(latents, 0.4, padded_text, padded_mask), model(latents, 0.4, text, mask))
    empty_row = padded_mask.clone()
    empty_row[0] = 0  # a caption with no valid token attends uniformly to all L keys: nothing is trimmed
    kept_text, kept_mask = trim_text_padding(padded_text, empty_row)
    assert kept_text.shape[1] == kept_mask.shape[1] == 16


@pytest.mark.parametrize(("change", "message"), [
    ("text_dim", r"text must be \(B=2, L, 32\)"),
    ("mask", r"text_mask must be \(B, L\)"),
    ("latents", r"latents must be \(B, 128, F', H', W'\)"),
    ("timestep", "per-token timesteps must be"),
])
def test_invalid_inputs_raise_clear_errors(change, message):
    model = VideoTransformer(dit_config("tiny"))
    latents, text, mask = inputs(model.config)
    timestep = torch.tensor([0.5, 0.5])
    if change == "text_dim":
        text = torch.randn(2, 7, 48)
    elif change == "mask":
        mask = torch.ones(2, 6)
    elif change == "latents":
        latents = torch.randn(2, 8, 3, 4, 5)
    else:
        timestep = torch.rand(2, 3, 4, 4)
    with pytest.raises(ValueError, match=message):
        model(latents, timestep, text, mask)


def test_config_errors_and_presets():
    with pytest.raises(ValueError, match="valid: tiny, demo, ltx-video-2b-0.9.1"):
        dit_config("huge")
    with pytest.raises(ValueError, match="cross_attention_dim"):
        DiTConfig(cross_attention_dim=100)
    with pytest.raises(ValueError, match="only supports the release's"):
        transformer_config_to_diffusers(dit_config("tiny", positions="absolute"))


# diffusers' scripts/convert_ltx_to_diffusers.py, get_transformer_config (2B: 0.9.0-0.9.5; 13B: 0.9.7).
RELEASE_COMMON = dict(in_channels=128, out_channels=128, patch_size=1, patch_size_t=1, activation_fn="gelu-approximate",
                      qk_norm="rms_norm_across_heads", norm_elementwise_affine=False, norm_eps=1e-6,
                      caption_channels=4096, attention_bias=True, attention_out_bias=True)
RELEASE_CONFIGS = {
    "ltx-video-2b-0.9.1": dict(RELEASE_COMMON, num_attention_heads=32, attention_head_dim=64, cross_attention_dim=2048,
                               num_layers=28),
    "ltx-video-13b-0.9.7": dict(RELEASE_COMMON, num_attention_heads=32, attention_head_dim=128,
                                cross_attention_dim=4096, num_layers=48),
}
RELEASE_PARAMETERS = {"ltx-video-2b-0.9.1": 1.92e9, "ltx-video-13b-0.9.7": 13.04e9}


@pytest.mark.parametrize("preset", sorted(RELEASE_CONFIGS))
def test_released_preset_matches_the_reference_architecture(preset):
    config = dit_config(preset)
    assert transformer_config_to_diffusers(config) == RELEASE_CONFIGS[preset]
    with torch.device("meta"):
        ours = VideoTransformer(config)
        reference = LTXVideoTransformer3DModel(**RELEASE_CONFIGS[preset])
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert sum(p.numel() for p in ours.parameters()) == pytest.approx(RELEASE_PARAMETERS[preset], rel=0.01)


def test_parity_with_diffusers_at_the_13b_width():
    """One block of the 13B transformer at full width (32 heads x 128, 4096-d text) against diffusers. Both
    are built on the meta device and share one set of random weights (335M: building twice costs ~15 s)."""
    config = dit_config("ltx-video-13b-0.9.7", num_layers=1)
    with torch.device("meta"):
        reference = LTXVideoTransformer3DModel(**transformer_config_to_diffusers(config))
        ours = VideoTransformer(config)
    reference = reference.to_empty(device="cpu").eval()
    assert not list(reference.buffers())  # to_empty leaves nothing uninitialised but the parameters, filled here
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.normal_(0, 0.1)
    ours.load_state_dict(reference.state_dict(), strict=True, assign=True)
    ours.rope_frequencies = rope_frequencies(config.rope_spacing, config.hidden_size, config.rope_theta)
    latents, text, mask = inputs(config, grid=(2, 2, 3))
    timestep = torch.tensor([0.3, 0.85])
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(latents, timestep, text, mask, 24.0),
                                   reference_velocity(reference, latents, timestep, text, mask), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_export_loads_in_diffusers_and_back(name, tmp_path):
    ours = randomised(VideoTransformer(CONFIGS[name]), seed=3)
    directory = export_transformer(ours, tmp_path / "transformer")
    assert json.loads((directory / "config.json").read_text())["_class_name"] == "LTXVideoTransformer3DModel"
    reference = LTXVideoTransformer3DModel.from_pretrained(directory).eval()
    latents, text, mask = inputs(ours.config, seed=4)
    timestep = torch.tensor([0.1, 0.6])
    with torch.no_grad():
        expected = ours(latents, timestep, text, mask)
        torch.testing.assert_close(reference_velocity(reference, latents, timestep, text, mask), expected,
                                   atol=1e-4, rtol=0)
        reloaded = load_transformer(directory).eval()
        assert reloaded.config == ours.config
        torch.testing.assert_close(reloaded(latents, timestep, text, mask), expected, atol=0, rtol=0)
    assert transformer_config_from_diffusers(transformer_config_to_diffusers(ours.config)) == ours.config
