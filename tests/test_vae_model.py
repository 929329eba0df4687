"""The Video-VAE: shapes, causality, options, chunked decode, and parity with diffusers' reference."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import AutoencoderKLLTXVideo

from ltx.interop.diffusers import export_vae, load_vae, vae_config_from_diffusers, vae_config_to_diffusers
from ltx.models.vae import VAEConfig, VideoAutoencoder, vae_config
from ltx.models.vae.layers import conv3d

# A second, non-default architecture: unconditioned decoder without noise, widening up blocks
# (exercising their shortcut ResBlocks), mixed residual upsamplers, deeper mid blocks.
ALTERNATIVE = dict(
    latent_channels=8, block_out_channels=(8, 16, 16, 32), layers_per_block=(1, 2, 1, 1, 2),
    decoder_block_out_channels=(16, 32, 64), decoder_layers_per_block=(1, 2, 1, 2),
    decoder_inject_noise=(False, False, False, False), upsample_residual=(False, True, False),
    upsample_factor=(1, 1, 1), timestep_conditioning=False,
)
# v0.9.5 encoders (space-to-depth stages): the preset at CPU size, and one with five stages in another
# order (one that does not downsample), an unconditioned decoder with noise injection.
ALTERNATIVE_095 = dict(
    block_out_channels=(8, 16, 32, 64, 64, 128), layers_per_block=(1, 2, 1, 1, 1, 2),
    downsample_type=("temporal", "spatial", "spatiotemporal", "spatial", "spatiotemporal"),
    down_block_types=("LTXVideo095DownBlock3D",) * 5, spatio_temporal_scaling=(True, True, True, False, True),
    decoder_layers_per_block=(2, 1, 1, 1), decoder_inject_noise=(True, False, True, True), noise_injection=True,
    timestep_conditioning=False,
)
CONFIGS = {"tiny": vae_config("tiny"), "alternative": vae_config("tiny", **ALTERNATIVE),
           "tiny-0.9.5": vae_config("tiny-0.9.5"), "alternative-0.9.5": vae_config("tiny-0.9.5", **ALTERNATIVE_095)}


def video(frames: int, height: int = 64, width: int = 64, batch: int = 1, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, frames, height, width, generator=generator) * 2 - 1


@pytest.fixture(scope="module")
def tiny_vae() -> VideoAutoencoder:
    torch.manual_seed(0)
    return VideoAutoencoder(vae_config("tiny")).eval()


@pytest.mark.parametrize(("frames", "height", "width"), [(1, 64, 64), (17, 64, 64), (25, 32, 96)])
def test_latent_and_output_shapes(tiny_vae, frames, height, width):
    with torch.no_grad():
        posterior = tiny_vae.encode(video(frames, height, width, batch=2))
        latent_frames = 1 + (frames - 1) // 8
        assert posterior.mean.shape == (2, 128, latent_frames, height // 32, width // 32)
        assert posterior.logvar.shape == posterior.mean.shape
        assert tiny_vae.decode(posterior.sample(), 0.05).shape == (2, 3, frames, height, width)


@pytest.mark.parametrize(("shape", "message"), [
    ((1, 3, 16, 64, 64), r"frames must be of the form 8k\+1"),
    ((1, 3, 17, 48, 64), "height must be a positive multiple of 32"),
    ((1, 3, 17, 64, 40), "width must be a positive multiple of 32"),
    ((1, 4, 17, 64, 64), r"video must be \(B, 3, F, H, W\)"),
])
def test_invalid_video_shapes_raise_naming_the_rule(tiny_vae, shape, message):
    with pytest.raises(ValueError, match=message):
        tiny_vae.encode(torch.zeros(shape))


def test_encoder_is_temporally_causal(tiny_vae):
    clip = video(17)
    with torch.no_grad():
        full = tiny_vae.encode(clip).mean  # (1, C, 3, 2, 2)
        first_frame_alone = tiny_vae.encode(clip[:, :, :1]).mean  # (1, C, 1, 2, 2)
        first_nine = tiny_vae.encode(clip[:, :, :9]).mean
    torch.testing.assert_close(first_frame_alone[:, :, 0], full[:, :, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(first_nine, full[:, :, :2], atol=1e-5, rtol=1e-5)


def test_uniform_and_per_channel_log_variance():
    torch.manual_seed(0)
    clip = video(9)
    with torch.no_grad():
        uniform = VideoAutoencoder(vae_config("tiny")).encode(clip).logvar
        per_channel = VideoAutoencoder(vae_config("tiny", uniform_logvar=False)).encode(clip).logvar
    assert torch.equal(uniform, uniform[:, :1].expand_as(uniform))
    assert not torch.allclose(per_channel, per_channel[:, :1].expand_as(per_channel))


def test_noise_injection_switch_and_zero_initialised_scales():
    with_noise = VideoAutoencoder(vae_config("tiny"))
    scales = [p for n, p in with_noise.named_parameters() if "per_channel_scale" in n]
    assert scales and all(torch.count_nonzero(p) == 0 for p in scales)
    without = VideoAutoencoder(vae_config("tiny", noise_injection=False))
    assert not [n for n, _ in without.named_parameters() if "per_channel_scale" in n]


def test_decoder_is_timestep_conditioned(tiny_vae):
    latents = torch.randn(1, 128, 2, 2, 2)
    with torch.no_grad():
        clean, noisy = tiny_vae.decode(latents, 0.0), tiny_vae.decode(latents, 0.2)
    assert (clean - noisy).abs().max() > 1e-3
    assert tiny_vae.decoder.timestep_scale_multiplier.item() == 1000.0
    unconditioned = VideoAutoencoder(vae_config("tiny", timestep_conditioning=False)).eval()
    with pytest.raises(ValueError, match="no timestep conditioning"):
        unconditioned.decode(latents, 0.1)


@pytest.mark.parametrize("chunk_frames", [1, 2, 3])
def test_chunked_decode_equals_full_decode(chunk_frames):
    torch.manual_seed(0)
    vae = VideoAutoencoder(vae_config("tiny")).eval()
    for name, parameter in vae.named_parameters():
        if "per_channel_scale" in name:
            parameter.data.normal_(0, 0.3)  # make the injected noise matter
    latents = torch.randn(1, 128, 20, 1, 1)
    with torch.no_grad():
        full = vae.decode(latents, 0.05, generator=torch.Generator().manual_seed(3))
        chunked = vae.decode(latents, 0.05, generator=torch.Generator().manual_seed(3), chunk_frames=chunk_frames)
    assert chunked.shape == full.shape == (1, 3, 1 + 8 * 19, 32, 32)
    torch.testing.assert_close(chunked, full, atol=1e-4, rtol=0)


def test_latent_normalisation_round_trip(tiny_vae):
    vae = VideoAutoencoder(vae_config("tiny"))
    mean, std = torch.randn(128), torch.rand(128) + 0.5
    vae.set_latent_statistics(mean, std)
    latents = torch.randn(2, 128, 3, 2, 2)
    normalized = vae.normalize_latents(latents)
    torch.testing.assert_close(normalized[:, 3], (latents[:, 3] - mean[3]) / std[3])
    torch.testing.assert_close(vae.denormalize_latents(normalized), latents)
    with pytest.raises(ValueError, match="must be positive"):
        vae.set_latent_statistics(mean, -std)
    assert set(vae.state_dict()) >= {"latents_mean", "latents_std"}


def test_preset_errors_list_valid_names():
    with pytest.raises(ValueError, match="valid: tiny, tiny-0.9.5, ltx-video-0.9.1, ltx-video-0.9.5"):
        vae_config("huge")
    with pytest.raises(ValueError, match="unknown VAE config field"):
        vae_config("tiny", latent_chanels=4)
    with pytest.raises(ValueError, match="compress 32x in space"):
        VAEConfig(spatio_temporal_scaling=(True, True, False, False))


def randomised_reference(config: VAEConfig, seed: int = 0) -> AutoencoderKLLTXVideo:
    torch.manual_seed(seed)
    reference = AutoencoderKLLTXVideo(**vae_config_to_diffusers(config)).eval()
    for name, parameter in reference.named_parameters():
        if "per_channel_scale" in name:
            parameter.data.normal_(0, 0.5)  # zero-initialised: randomise so noise injection is compared
    return reference


def outputs(model, clip: torch.Tensor, latents: torch.Tensor, timestep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder mean and decoder output, with the same injected noise (global RNG reseeded)."""
    with torch.no_grad():
        if isinstance(model, AutoencoderKLLTXVideo):
            mean = model.encode(clip).latent_dist.mean
            torch.manual_seed(123)
            decoded = model.decode(latents, temb=timestep if model.config.timestep_conditioning else None).sample
        else:
            mean = model.encode(clip).mean
            torch.manual_seed(123)
            decoded = model.decode(latents, timestep if model.config.timestep_conditioning else None)
    return mean, decoded


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_parity_with_diffusers(name):
    config = CONFIGS[name]
    reference = randomised_reference(config)
    ours = VideoAutoencoder(config).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    clip = video(17, 64, 96, batch=2, seed=1)
    latents = torch.randn(2, config.latent_channels, 3, 2, 3)
    timestep = torch.tensor([0.05, 0.15])
    ours_mean, ours_decoded = outputs(ours, clip, latents, timestep)
    ref_mean, ref_decoded = outputs(reference, clip, latents, timestep)
    torch.testing.assert_close(ours_mean, ref_mean, atol=1e-4, rtol=0)
    torch.testing.assert_close(ours_decoded, ref_decoded, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_export_loads_in_diffusers_and_back(name, tmp_path):
    torch.manual_seed(5)
    ours = VideoAutoencoder(CONFIGS[name]).eval()
    for parameter_name, parameter in ours.named_parameters():
        if "per_channel_scale" in parameter_name:
            parameter.data.normal_(0, 0.5)
    ours.set_latent_statistics(torch.randn(ours.config.latent_channels), torch.rand(ours.config.latent_channels) + 0.5)
    directory = export_vae(ours, tmp_path / "vae")
    assert json.loads((directory / "config.json").read_text())["_class_name"] == "AutoencoderKLLTXVideo"
    reference = AutoencoderKLLTXVideo.from_pretrained(directory).eval()
    torch.testing.assert_close(reference.latents_std, ours.latents_std)
    clip, latents = video(9, 32, 64, seed=2), torch.randn(1, ours.config.latent_channels, 2, 1, 2)
    timestep = torch.tensor([0.05])
    for a, b in zip(outputs(ours, clip, latents, timestep), outputs(reference, clip, latents, timestep)):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    reloaded = load_vae(directory).eval()
    assert reloaded.config == ours.config
    for a, b in zip(outputs(ours, clip, latents, timestep), outputs(reloaded, clip, latents, timestep)):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


# The release configs as diffusers' scripts/convert_ltx_to_diffusers.py writes them (get_vae_config).
RELEASE_CONFIGS = {
    "ltx-video-0.9.1": dict(
        block_out_channels=(128, 256, 512, 512), down_block_types=("LTXVideoDownBlock3D",) * 4,
        decoder_block_out_channels=(256, 512, 1024), layers_per_block=(4, 3, 3, 3, 4),
        decoder_layers_per_block=(5, 6, 7, 8), spatio_temporal_scaling=(True, True, True, False),
        decoder_spatio_temporal_scaling=(True, True, True), decoder_inject_noise=(True, True, True, False),
        downsample_type=("conv",) * 4, upsample_residual=(True, True, True), upsample_factor=(2, 2, 2),
        timestep_conditioning=True),
    "ltx-video-0.9.5": dict(
        block_out_channels=(128, 256, 512, 1024, 2048), down_block_types=("LTXVideo095DownBlock3D",) * 4,
        decoder_block_out_channels=(256, 512, 1024), layers_per_block=(4, 6, 6, 2, 2),
        decoder_layers_per_block=(5, 5, 5, 5), spatio_temporal_scaling=(True, True, True, True),
        decoder_spatio_temporal_scaling=(True, True, True), decoder_inject_noise=(False, False, False, False),
        downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
        upsample_residual=(True, True, True), upsample_factor=(2, 2, 2), timestep_conditioning=True,
        spatial_compression_ratio=32, temporal_compression_ratio=8),
}
# Encoder / decoder parameters in millions (0.9.1: ~180M / ~755M, paper and release; 0.9.5: ~694M / ~553M).
RELEASE_SIZES = {"ltx-video-0.9.1": ((150, 200), (700, 800)), "ltx-video-0.9.5": ((650, 750), (500, 600))}


@pytest.mark.parametrize("preset", sorted(RELEASE_CONFIGS))
def test_released_preset_matches_the_reference_architecture(preset):
    """Same parameter names and shapes as diffusers' VAE built from the conversion script's config: the
    released weights load by name; and our preset exports to that config."""
    config = vae_config(preset)
    exported = vae_config_to_diffusers(config)
    for name, value in RELEASE_CONFIGS[preset].items():
        assert (tuple(exported[name]) if isinstance(value, tuple) else exported[name]) == value, name
    assert vae_config_from_diffusers(RELEASE_CONFIGS[preset]) == config
    with torch.device("meta"):
        ours = VideoAutoencoder(config)
        reference = AutoencoderKLLTXVideo(**RELEASE_CONFIGS[preset])
    ours_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    reference_shapes = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert ours_shapes == reference_shapes
    encoder = sum(p.numel() for p in ours.encoder.parameters()) / 1e6
    decoder = sum(p.numel() for p in ours.decoder.parameters()) / 1e6
    (low, high), (decoder_low, decoder_high) = RELEASE_SIZES[preset]
    assert low < encoder < high and decoder_low < decoder < decoder_high, (encoder, decoder)


def test_loading_explains_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_vae(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKLLTXVideo",
                                                      "down_block_types": ["LTXVideoDownBlock3D", "Other"] * 2}))
    with pytest.raises(ValueError, match="unsupported encoder blocks"):
        load_vae(tmp_path)
    with pytest.raises(ValueError, match="spatial_compression_ratio=64 but its blocks compress 32x"):
        vae_config_from_diffusers({**RELEASE_CONFIGS["ltx-video-0.9.5"], "spatial_compression_ratio": 64})
    with pytest.raises(ValueError, match="block_out_channels needs 5 entries"):
        vae_config("tiny-0.9.5", block_out_channels=(8, 16, 32, 64))
    with pytest.raises(ValueError, match="can only widen in its downsampler"):
        vae_config("tiny-0.9.5", **{**ALTERNATIVE_095, "block_out_channels": (8, 16, 32, 64, 96, 128)})
    with pytest.raises(ValueError, match="downsample_type of LTXVideoDownBlock3D stages must be one of"):
        vae_config("tiny", downsample_type=("spatial",) * 4)
    with pytest.raises(ValueError, match="cannot be exported"):
        vae_config_to_diffusers(vae_config("tiny", uniform_logvar=False))
    assert vae_config_from_diffusers(vae_config_to_diffusers(CONFIGS["alternative"])) == CONFIGS["alternative"]


@pytest.mark.parametrize(("channels", "shape", "stride", "kernel"), [
    (16, (1, 16, 7, 8, 8), 1, 3), (8, (1, 8, 6, 10, 7), 1, 3), (8, (2, 8, 5, 16, 12), 2, 3), (4, (1, 4, 3, 6, 6), 1, 1),
    (8, (1, 8, 17, 160, 6), 1, 3)])  # the last is big enough for convolution_backward to pick oneDNN itself
def test_cpu_conv3d_matches_the_default_kernel_forward_and_backward(channels, shape, stride, kernel):
    conv = torch.nn.Conv3d(channels, 2 * channels, kernel, stride=stride, padding=(0, kernel // 2, kernel // 2))
    x = torch.randn(shape, requires_grad=True)
    expected = conv(x)
    expected.square().sum().backward()
    expected_grads = [x.grad.clone(), conv.weight.grad.clone(), conv.bias.grad.clone()]
    x.grad = conv.weight.grad = conv.bias.grad = None
    actual = conv3d(x, conv)
    actual.square().sum().backward()
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    for got, want in zip([x.grad, conv.weight.grad, conv.bias.grad], expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv3d(x, conv).dtype == torch.bfloat16  # autocast still casts: the default path


@pytest.mark.parametrize("wanted", ["input", "weight", "both"])
def test_cpu_conv3d_backward_runs_as_onednn_convolutions(wanted):
    """Where convolution_backward would pick slow_conv3d, the gradients are oneDNN convolutions
    (flipped weights for the input, input-gradient correlation for the weights) and match."""
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(12, 20, 3, padding=(0, 1, 1))
    x = torch.randn(1, 12, 6, 9, 7, requires_grad=wanted in ("input", "both"))
    conv.weight.requires_grad_(wanted in ("weight", "both"))
    grad = torch.randn(1, 20, 4, 9, 7)
    inputs = [t for t in (x, conv.weight, conv.bias) if t.requires_grad]
    expected = torch.autograd.grad(conv(x), inputs, grad)
    out = conv3d(x, conv)
    with torch.profiler.profile() as profiler:
        actual = torch.autograd.grad(out, inputs, grad)
    kernels = [event.key for event in profiler.events()]
    assert "aten::convolution_backward" not in kernels, kernels
    assert kernels.count("aten::mkldnn_convolution") == (2 if wanted == "both" else 1)
    for got, want in zip(actual, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_vae_convolutions_never_take_the_slow_cpu_kernel(tiny_vae):
    """Batch-1 video at the deep, small stages is where PyTorch would pick slow_conv3d."""
    with torch.no_grad(), torch.profiler.profile() as profiler:
        tiny_vae.decode(tiny_vae.encode(video(9, 64, 64)).mean, torch.tensor([0.05]))
    kernels = {event.key for event in profiler.key_averages()}
    assert "aten::mkldnn_convolution" in kernels
    assert not {name for name in kernels if "slow_conv3d" in name}, kernels


@pytest.mark.parametrize("name", ["tiny", "alternative", "causality_swapped"])
def test_inference_path_equals_the_autograd_path(name):
    """Without autograd, ResBlocks work in place and the first / last convs run a few frames at a
    time (fused with patchify / unpatchify): the same numbers as the plain path, inputs untouched."""
    config = CONFIGS.get(name) or vae_config("tiny", encoder_causal=False, decoder_causal=True)
    torch.manual_seed(0)
    model = VideoAutoencoder(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)  # non-zero noise scales and tables
    clip = video(17, 64, 96)
    original = clip.clone()
    timestep = torch.tensor([0.05]) if config.timestep_conditioning else None

    def encode_decode():
        latents = model.encode(clip).mean
        before = latents.clone()
        pixels = model.decode(latents, timestep, torch.Generator().manual_seed(3))
        assert torch.equal(latents, before)
        return latents, pixels

    with torch.no_grad():
        fast_latents, fast_pixels = encode_decode()
    with torch.enable_grad():
        plain_latents, plain_pixels = encode_decode()
    assert plain_pixels.requires_grad  # really the autograd path
    assert torch.equal(clip, original)
    torch.testing.assert_close(fast_latents, plain_latents.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast_pixels, plain_pixels.detach(), rtol=1e-5, atol=1e-5)


def test_inference_path_under_bf16_autocast_keeps_the_autograd_dtypes():
    """In-place updates happen only where they keep the dtype: under autocast a bf16 conv output plus
    an fp32 residual stays fp32, as on the autograd path, so both give the same numbers."""
    torch.manual_seed(0)
    model = VideoAutoencoder(vae_config("tiny")).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    clip, timestep = video(9, 64, 64), torch.tensor([0.05])
    outputs = []
    for grad in (False, True):
        with torch.set_grad_enabled(grad), torch.autocast("cpu", dtype=torch.bfloat16):
            torch.manual_seed(1)
            outputs.append(model.decode(model.encode(clip).mean, timestep))
    fast, plain = outputs
    assert fast.dtype == plain.dtype
    torch.testing.assert_close(fast, plain.detach(), rtol=0, atol=1e-6)
