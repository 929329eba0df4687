"""Inference: schedule parity with diffusers, every registered sampler, Euler exactness, guidance,
frame conditioning, image-to-video end to end and decoding with the denoising decoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.ltx.pipeline_ltx import calculate_shift

from ltx.models.dit import VideoTransformer, dit_config
from ltx.models.vae import VideoAutoencoder, vae_config
from ltx.registry import SAMPLERS
from ltx.sampling import (
    EulerFlowSampler,
    FrameConditioning,
    decode_latents,
    flow_timesteps,
    image_conditioning,
    token_count_shift,
)

LTX_SCHEDULER = dict(use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05, base_image_seq_len=1024,
                     max_image_seq_len=4096, shift_terminal=0.1)  # the LTX-Video v0.9.1 scheduler config
SHAPE = (2, 128, 3, 2, 2)  # (B, C, F, H, W) tiny latents: 12 tokens per sample


class CountingModel:
    """Wraps a velocity model, counting calls and recording what each call sees."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def __call__(self, latents, timestep, text, text_mask, fps):
        self.calls.append({"latents": latents.clone(), "timestep": timestep.clone(), "text": text.clone()})
        return self.model(latents, timestep, text, text_mask, fps)


def tiny_transformer() -> VideoTransformer:
    """The tiny DiT with its zero-initialised projections randomised, so its velocity is not 0."""
    torch.manual_seed(0)
    model = VideoTransformer(dit_config("tiny")).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and not module.weight.any():
            torch.nn.init.normal_(module.weight, std=0.2)
    return model


def text_inputs(batch: int = 2, length: int = 5, value: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    text = torch.randn(batch, length, 32) if value is None else torch.full((batch, length, 32), value)
    return text, torch.ones(batch, length, dtype=torch.bool)


# ----------------------------------------------------------------------------- schedule


@pytest.mark.parametrize("num_tokens", [256, 1024, 3000, 6144])
def test_token_count_shift_matches_diffusers(num_tokens):
    assert token_count_shift(num_tokens) == pytest.approx(calculate_shift(num_tokens, 1024, 4096, 0.95, 2.05))


@pytest.mark.parametrize("num_steps", [2, 8, 20, 40])
@pytest.mark.parametrize("num_tokens", [256, 1024, 6144])
def test_flow_timesteps_match_diffusers_scheduler(num_steps, num_tokens):
    scheduler = FlowMatchEulerDiscreteScheduler(**LTX_SCHEDULER)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / num_steps, num_steps),
                            mu=calculate_shift(num_tokens, 1024, 4096, 0.95, 2.05))  # as LTXPipeline does
    ours = flow_timesteps(num_steps, num_tokens)
    assert ours.shape == (num_steps + 1,)
    torch.testing.assert_close(ours, scheduler.sigmas.float(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("num_steps", [2, 30, 50])
def test_unshifted_schedule_matches_the_v095_scheduler(num_steps):
    """v0.9.5 / v0.9.7: FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=False) (diffusers' conversion
    script) = our schedule_shift 0.0, schedule_terminal 0.0 (conf/model/dit/ltx-video-2b-0.9.5.yaml)."""
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=False)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / num_steps, num_steps), mu=calculate_shift(6144, 1024, 4096, 0.95, 2.05))
    torch.testing.assert_close(flow_timesteps(num_steps, 6144, terminal=0.0, shift=0.0), scheduler.sigmas.float(),
                               atol=1e-6, rtol=0)


def test_flow_timesteps_shape_of_the_schedule():
    schedule = flow_timesteps(20, 6144)
    assert schedule[0] == 1.0 and schedule[-1] == 0.0
    assert schedule[-2].item() == pytest.approx(0.1, abs=1e-6)  # stretched to the terminal
    assert torch.all(schedule[1:] < schedule[:-1])
    assert torch.equal(flow_timesteps(1, 6144), torch.tensor([1.0, 0.0]))
    unshifted = flow_timesteps(4, 6144, terminal=None, shift=0.0)  # mu = 0: e^0 / (e^0 + 1/t - 1) = t
    torch.testing.assert_close(unshifted, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    with pytest.raises(ValueError, match="num_steps"):
        flow_timesteps(0, 100)


# ----------------------------------------------------------------------------- every registered sampler


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_registered_sampler_runs_deterministically(name):
    sampler = SAMPLERS.build(name)
    model = CountingModel(tiny_transformer())
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    text, mask = text_inputs()
    negative, negative_mask = text_inputs(batch=1, value=0.0)
    conditioning = FrameConditioning(torch.randn(SHAPE), torch.tensor([[True, False, False], [True, False, True]]))

    def run() -> torch.Tensor:
        return sampler.sample(model, noise, text, mask, 24.0, num_steps=4, guidance_scale=3.0,
                              negative_text=negative, negative_text_mask=negative_mask,
                              conditioning=conditioning, generator=torch.Generator().manual_seed(1))

    first = run()
    assert len(model.calls) == 4
    second = run()
    assert first.shape == noise.shape and first.dtype == noise.dtype
    assert torch.isfinite(first).all()
    assert torch.equal(first, second)
    unconditioned = ~conditioning.token_mask(first.device).unsqueeze(1).expand(SHAPE)
    assert not torch.allclose(first[unconditioned], noise[unconditioned])  # the model moved them


def test_sampler_registry_entry():
    assert isinstance(SAMPLERS.build("euler"), EulerFlowSampler)
    assert "Euler" in SAMPLERS.describe("euler")


# ----------------------------------------------------------------------------- Euler


def test_euler_lands_exactly_on_the_target_of_a_straight_path():
    """A model whose velocity is the true ``eps - z0`` for a fixed z0: Euler is exact on straight paths,
    and every intermediate state is ``(1 - t) z0 + t eps``."""
    noise, target = torch.randn(SHAPE), torch.randn(SHAPE)
    model = CountingModel(lambda latents, timestep, text, mask, fps: noise - target)
    text, mask = text_inputs()
    result = EulerFlowSampler().sample(model, noise, text, mask, 24.0, num_steps=6, guidance_scale=1.0)
    torch.testing.assert_close(result, target, atol=1e-5, rtol=0)
    schedule = flow_timesteps(6, 12)
    for call, t in zip(model.calls, schedule[:-1]):
        torch.testing.assert_close(call["timestep"], torch.full((2,), t.item()))
        torch.testing.assert_close(call["latents"], (1 - t) * target + t * noise, atol=1e-5, rtol=0)


def test_euler_with_the_exact_flow_field_and_custom_timesteps():
    """The velocity field ``(z - z0) / t`` of straight paths into z0 is integrated exactly too."""
    noise, target = torch.randn(SHAPE), torch.randn(SHAPE)

    def field(latents, timestep, text, mask, fps):
        return (latents - target) / timestep.view(-1, 1, 1, 1, 1)

    text, mask = text_inputs()
    result = EulerFlowSampler().sample(field, noise, text, mask, 24.0, num_steps=3, guidance_scale=1.0,
                                       timesteps=[1.0, 0.6, 0.2, 0.0])
    torch.testing.assert_close(result, target, atol=1e-5, rtol=0)


def test_classifier_free_guidance_batches_both_passes():
    """Fake model: velocity = the first text feature, 1 for the prompt and -2 for the empty prompt, so one
    Euler step from 1 to 0 gives ``noise - (v_u + s (v_c - v_u))``."""
    noise = torch.randn(SHAPE)
    model = CountingModel(lambda latents, timestep, text, mask, fps:
                          text[:, 0, 0].view(-1, 1, 1, 1, 1).expand_as(latents))
    text, mask = text_inputs(value=1.0)
    negative, negative_mask = text_inputs(batch=1, value=-2.0)
    result = EulerFlowSampler().sample(model, noise, text, mask, 24.0, num_steps=1, guidance_scale=4.0,
                                       negative_text=negative[0], negative_text_mask=negative_mask[0],
                                       timesteps=[1.0, 0.0])
    torch.testing.assert_close(result, noise - (-2.0 + 4.0 * (1.0 - -2.0)))
    (call,) = model.calls
    assert call["latents"].shape[0] == 4 and torch.equal(call["text"][:2], negative.expand(2, -1, -1))
    model.calls.clear()
    plain = EulerFlowSampler().sample(model, noise, text, mask, 24.0, num_steps=1, guidance_scale=1.0,
                                      timesteps=[1.0, 0.0])
    torch.testing.assert_close(plain, noise - 1.0)
    assert model.calls[0]["latents"].shape[0] == 2


# ----------------------------------------------------------------------------- conditioning


def test_conditioning_tokens_are_clean_at_timestep_zero_and_stay_fixed():
    noise, clean, target = torch.randn(SHAPE), torch.randn(SHAPE), torch.randn(SHAPE)
    frames = torch.tensor([[True, False, False], [True, False, True]])  # image-to-video; keyframes
    conditioning = FrameConditioning(clean, frames, noise_scale=0.15)
    model = CountingModel(lambda latents, timestep, text, mask, fps: latents - target)
    text, mask = text_inputs()
    result = EulerFlowSampler().sample(model, noise, text, mask, 24.0, num_steps=5, guidance_scale=1.0,
                                       conditioning=conditioning, generator=torch.Generator().manual_seed(0))
    tokens = frames[:, :, None, None].expand(2, 3, 2, 2)  # (B, F, H, W)
    latent_tokens = tokens.unsqueeze(1).expand(SHAPE)  # (B, C, F, H, W)
    schedule = flow_timesteps(5, 12).tolist()
    for call, t in zip(model.calls, schedule):
        assert call["timestep"].shape == (2, 3, 2, 2)
        assert torch.all(call["timestep"][tokens] == 0.0)
        assert torch.allclose(call["timestep"][~tokens], torch.tensor(t))
        deviation = (call["latents"] - clean)[latent_tokens] / (0.15 * t**2)  # the release's eps
        assert 0.7 < deviation.std().item() < 1.3
    torch.testing.assert_close(model.calls[0]["latents"][~latent_tokens], noise[~latent_tokens])
    assert torch.equal(result[latent_tokens], clean[latent_tokens])  # exactly clean at t = 0
    assert not torch.allclose(result[~latent_tokens], noise[~latent_tokens])

    exact = FrameConditioning(clean, frames, noise_scale=0.0)
    model.calls.clear()
    EulerFlowSampler().sample(model, noise, text, mask, 24.0, num_steps=3, guidance_scale=1.0, conditioning=exact)
    assert all(torch.equal(call["latents"][latent_tokens], clean[latent_tokens]) for call in model.calls)


@pytest.fixture(scope="module")
def causal_vae() -> VideoAutoencoder:
    """The tiny VAE with a causal decoder: decoded frame 0 then depends on latent frame 0 only."""
    torch.manual_seed(0)
    vae = VideoAutoencoder(vae_config("tiny", decoder_causal=True)).eval()
    vae.set_latent_statistics(torch.randn(128) * 0.1, torch.rand(128) + 0.5)
    return vae


def test_image_to_video_first_frame_is_the_vae_reconstruction_of_the_image(causal_vae):
    """A random VAE does not reproduce the image itself, so compare with what it can do: with a causal
    decoder, decoded frame 0 sees latent frame 0 only, so if conditioning keeps that frame exactly at the
    image's latents whatever the (random) DiT predicts, frame 0 of the video equals the VAE's own
    reconstruction of the image (same decoder noise from the same seed)."""
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    conditioning = image_conditioning(causal_vae, image, latent_frames=2)
    assert conditioning.frames.tolist() == [[True, False]]
    expected_latents = causal_vae.normalize_latents(causal_vae.encode(image.unsqueeze(2)).mean)
    torch.testing.assert_close(conditioning.latents[:, :, :1], expected_latents)
    torch.testing.assert_close(image_conditioning(causal_vae, image.unsqueeze(2), 2).latents, conditioning.latents)

    noise = torch.randn(1, 128, 2, 1, 1, generator=torch.Generator().manual_seed(1))
    text, mask = text_inputs(batch=1)
    latents = EulerFlowSampler().sample(tiny_transformer(), noise, text, mask, 24.0, num_steps=3,
                                        guidance_scale=1.0, conditioning=conditioning,
                                        generator=torch.Generator().manual_seed(2))
    video = decode_latents(causal_vae, latents, renoise_scale=0.0, generator=torch.Generator().manual_seed(3))
    reconstruction = decode_latents(causal_vae, conditioning.latents[:, :, :1], renoise_scale=0.0,
                                    generator=torch.Generator().manual_seed(3))
    assert video.shape == (1, 3, 9, 32, 32) and reconstruction.shape == (1, 3, 1, 32, 32)
    torch.testing.assert_close(video[:, :, :1], reconstruction, atol=1e-4, rtol=0)
    assert not torch.allclose(video[:, :, 1:], reconstruction.expand(-1, -1, 8, -1, -1), atol=1e-2)


# ----------------------------------------------------------------------------- decoding


def spy_on_decode(vae: VideoAutoencoder, monkeypatch) -> list[dict]:
    calls, decode = [], vae.decode

    def spy(latents, timestep=None, generator=None, chunk_frames=None):
        calls.append({"latents": latents.clone(), "timestep": timestep})
        return decode(latents, timestep, generator, chunk_frames)

    monkeypatch.setattr(vae, "decode", spy)
    return calls


def test_decode_latents_renoises_and_decodes_at_the_decode_timestep(causal_vae, monkeypatch):
    calls = spy_on_decode(causal_vae, monkeypatch)
    latents = torch.randn(1, 128, 1, 1, 1)
    video = decode_latents(causal_vae, latents, generator=torch.Generator().manual_seed(0))
    raw = causal_vae.denormalize_latents(latents)
    eps = torch.randn(raw.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(calls[0]["latents"], 0.975 * raw + 0.025 * eps)
    assert calls[0]["timestep"] == 0.05
    assert video.shape == (1, 3, 1, 32, 32) and video.abs().max() <= 1.0

    decode_latents(causal_vae, latents, decode_timestep=0.0, renoise_scale=0.0)
    torch.testing.assert_close(calls[1]["latents"], raw)
    assert calls[1]["timestep"] == 0.0


def test_decode_latents_without_timestep_conditioning_decodes_clean(monkeypatch):
    torch.manual_seed(0)
    vae = VideoAutoencoder(vae_config("tiny", timestep_conditioning=False)).eval()
    calls = spy_on_decode(vae, monkeypatch)
    latents = torch.randn(1, 128, 1, 1, 1)
    decode_latents(vae, latents, decode_timestep=0.05, renoise_scale=0.025)
    assert calls[0]["timestep"] is None
    torch.testing.assert_close(calls[0]["latents"], vae.denormalize_latents(latents))


# ----------------------------------------------------------------------------- errors


def test_clear_errors(causal_vae):
    sampler, model = EulerFlowSampler(), lambda latents, *rest: torch.zeros_like(latents)
    noise = torch.randn(SHAPE)
    text, mask = text_inputs()
    with pytest.raises(ValueError, match="needs negative_text.*empty prompt"):
        sampler.sample(model, noise, text, mask, 24.0, num_steps=2, guidance_scale=3.0)
    with pytest.raises(ValueError, match="negative_text must be"):
        sampler.sample(model, noise, text, mask, 24.0, num_steps=2, negative_text=torch.zeros(1, 7, 32))
    with pytest.raises(ValueError, match="guidance_scale must be >= 1"):
        sampler.sample(model, noise, text, mask, 24.0, num_steps=2, guidance_scale=0.5)
    with pytest.raises(ValueError, match="noise must be"):
        sampler.sample(model, noise[0], text, mask, 24.0, num_steps=2, guidance_scale=1.0)
    with pytest.raises(ValueError, match="text must be"):
        sampler.sample(model, noise, text[:1], mask[:1], 24.0, num_steps=2, guidance_scale=1.0)
    with pytest.raises(ValueError, match="text_mask must be"):
        sampler.sample(model, noise, text, mask[:, :3], 24.0, num_steps=2, guidance_scale=1.0)
    with pytest.raises(ValueError, match="num_steps \\+ 1"):
        sampler.sample(model, noise, text, mask, 24.0, num_steps=2, guidance_scale=1.0, timesteps=[1.0, 0.0])
    with pytest.raises(ValueError, match="decrease strictly"):
        sampler.sample(model, noise, text, mask, 24.0, num_steps=2, guidance_scale=1.0, timesteps=[0.0, 0.5, 1.0])
    wrong_shape = FrameConditioning(torch.randn(2, 128, 2, 2, 2), torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="must have the noise's shape"):
        sampler.sample(model, noise, text, mask, 24.0, num_steps=2, guidance_scale=1.0, conditioning=wrong_shape)
    with pytest.raises(ValueError, match="bool tensor"):
        FrameConditioning(noise, torch.ones(2, 3))
    with pytest.raises(ValueError, match="in \\[-1, 1\\]"):
        image_conditioning(causal_vae, torch.full((1, 3, 32, 32), 255.0), latent_frames=3)
    with pytest.raises(ValueError, match="latents must be"):
        decode_latents(causal_vae, torch.randn(16, 1, 1, 1))
