"""Rectified flow, every registered timestep sampler, conditioning masks and text dropout."""

from __future__ import annotations

import pytest
import torch

from ltx.diffusion import (
    ConditioningConfig,
    ShiftedLogitNormalTimestepSampler,
    apply_conditioning,
    drop_text,
    expand_timesteps,
    interpolate,
    sample_conditioning_frames,
    token_count_shift,
    velocity_target,
)
from ltx.registry import TIMESTEP_SAMPLERS, RegistryError

LATENT_SHAPE = (3, 4, 5, 2, 3)  # (B, C, F, H, W)


def latents_and_noise(shape=LATENT_SHAPE, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)


# Rectified flow -------------------------------------------------------------------------------------


def test_interpolation_endpoints_and_midpoint():
    latents, noise = latents_and_noise()
    batch = latents.shape[0]
    assert torch.equal(interpolate(latents, noise, torch.zeros(batch)), latents)
    assert torch.equal(interpolate(latents, noise, torch.ones(batch)), noise)
    torch.testing.assert_close(interpolate(latents, noise, torch.full((batch,), 0.5)), (latents + noise) / 2)


def test_interpolation_per_sample_timesteps_and_low_precision():
    latents, noise = latents_and_noise()
    t = torch.tensor([0.0, 0.25, 1.0])
    mixed = interpolate(latents, noise, t)
    for index, value in enumerate(t.tolist()):
        torch.testing.assert_close(mixed[index], (1 - value) * latents[index] + value * noise[index])
    low = interpolate(latents.bfloat16(), noise.bfloat16(), t)
    assert low.dtype == torch.bfloat16 and torch.equal(low[2], noise[2].bfloat16())


def test_velocity_target_is_the_path_derivative():
    latents, noise = latents_and_noise()
    velocity = velocity_target(latents, noise)
    torch.testing.assert_close(velocity, noise - latents)
    t0, t1 = torch.full((3,), 0.3), torch.full((3,), 0.7)
    step = (interpolate(latents, noise, t1) - interpolate(latents, noise, t0)) / 0.4
    torch.testing.assert_close(step, velocity, rtol=1e-4, atol=1e-4)


def test_per_token_timesteps():
    latents, noise = latents_and_noise()
    batch, _, frames, height, width = latents.shape
    per_sample = torch.tensor([0.1, 0.5, 0.9])
    expanded = expand_timesteps(per_sample, latents.shape)
    assert expanded.shape == (batch, frames, height, width)
    assert torch.equal(expanded[:, 2, 1, 0], per_sample)
    torch.testing.assert_close(interpolate(latents, noise, expanded), interpolate(latents, noise, per_sample))

    per_token = torch.rand(batch, frames, height, width, generator=torch.Generator().manual_seed(1))
    assert expand_timesteps(per_token, latents.shape) is per_token
    mixed = interpolate(latents, noise, per_token)
    expected = (1 - per_token[:, None]) * latents + per_token[:, None] * noise
    torch.testing.assert_close(mixed, expected)


def test_flow_shape_errors_are_clear():
    latents, noise = latents_and_noise()
    with pytest.raises(ValueError, match=r"per sample \(B,\) = \(3,\) or per token"):
        interpolate(latents, noise, torch.zeros(4))
    with pytest.raises(ValueError, match="noise must have the latents' shape"):
        velocity_target(latents, noise[:, :2])
    with pytest.raises(ValueError, match=r"\(B, C, F, H, W\)"):
        interpolate(latents[0], noise[0], torch.zeros(4))


# Timestep samplers ------------------------------------------------------------------------------------


def test_builtin_samplers_are_registered():
    assert {"uniform", "logit_normal", "shifted_logit_normal"} <= set(TIMESTEP_SAMPLERS.names())
    with pytest.raises(RegistryError, match="Valid names: .*shifted_logit_normal"):
        TIMESTEP_SAMPLERS.get("log_normal")


@pytest.mark.parametrize("name", TIMESTEP_SAMPLERS.names())
def test_every_sampler_shape_range_determinism_and_spread(name):
    sampler = TIMESTEP_SAMPLERS.build(name)
    draws = sampler.sample(20_000, 2048, generator=torch.Generator().manual_seed(0))
    assert draws.shape == (20_000,) and draws.is_floating_point()
    assert draws.min() >= 0.0 and draws.max() <= 1.0
    again = sampler.sample(20_000, 2048, generator=torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)
    other = sampler.sample(20_000, 2048, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(draws, other)
    # Rough distribution: spread over the interval, not collapsed onto one value or one end.
    assert 0.05 < draws.mean() < 0.95 and draws.std() > 0.1
    assert (draws < 0.5).any() and (draws > 0.5).any()
    assert sampler.sample(0, 2048).shape == (0,)
    assert sampler.sample(4, 2048, device="cpu").device.type == "cpu"


def test_uniform_and_logit_normal_match_their_distributions():
    generator = torch.Generator().manual_seed(0)
    uniform = TIMESTEP_SAMPLERS.build("uniform").sample(40_000, 1, generator=generator)
    quantiles = torch.quantile(uniform, torch.tensor([0.1, 0.5, 0.9]))
    torch.testing.assert_close(quantiles, torch.tensor([0.1, 0.5, 0.9]), atol=0.01, rtol=0)
    logit_normal = TIMESTEP_SAMPLERS.build("logit_normal", mean=1.0, std=0.5).sample(40_000, 1, generator=generator)
    logits = torch.logit(logit_normal)
    assert abs(logits.mean().item() - 1.0) < 0.02 and abs(logits.std().item() - 0.5) < 0.02


def test_token_count_shift_matches_the_reference_line():
    assert token_count_shift(1024) == pytest.approx(0.95)
    assert token_count_shift(4096) == pytest.approx(2.05)
    assert token_count_shift(2560) == pytest.approx(1.5)
    assert token_count_shift(6144) == pytest.approx(0.95 + 5120 * 1.1 / 3072)  # extrapolated, not clamped
    assert token_count_shift(100, min_tokens=0, max_tokens=100, min_shift=0.0, max_shift=3.0) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="must differ"):
        token_count_shift(10, min_tokens=5, max_tokens=5)


def test_shifted_logit_normal_more_tokens_more_noise():
    sampler = ShiftedLogitNormalTimestepSampler(uniform_probability=0.0)
    medians = [
        sampler.sample(20_000, tokens, generator=torch.Generator().manual_seed(0)).median().item()
        for tokens in (256, 1024, 4096, 8192)
    ]
    assert medians == sorted(medians) and medians[-1] - medians[0] > 0.1


def test_shifted_logit_normal_uniform_fraction():
    # The same seed draws the same normals, uniforms and coins: samples differ exactly where the coin
    # chose the uniform alternative.
    plain = ShiftedLogitNormalTimestepSampler(uniform_probability=0.0)
    mixed = ShiftedLogitNormalTimestepSampler()  # release default: 0.1
    a = plain.sample(40_000, 4096, generator=torch.Generator().manual_seed(3))
    b = mixed.sample(40_000, 4096, generator=torch.Generator().manual_seed(3))
    assert abs((a != b).float().mean().item() - 0.1) < 0.01
    everything_uniform = ShiftedLogitNormalTimestepSampler(uniform_probability=1.0)
    draws = everything_uniform.sample(40_000, 8192, generator=torch.Generator().manual_seed(3))
    assert abs(draws.mean().item() - 0.5) < 0.01 and abs((draws < 0.25).float().mean().item() - 0.25) < 0.01


def test_shifted_logit_normal_tails_reach_both_ends():
    sampler = ShiftedLogitNormalTimestepSampler(uniform_probability=0.0)
    for tokens in (1024, 4096):
        draws = sampler.sample(20_000, tokens, generator=torch.Generator().manual_seed(0))
        assert draws.min() < 0.01 and draws.max() > 0.99
        assert (draws == 1.0).any()  # the top 0.1% is clamped to exactly 1
    reflected = ShiftedLogitNormalTimestepSampler(uniform_probability=0.0, reflect_below=1e-3)
    assert reflected.sample(20_000, 1024, generator=torch.Generator().manual_seed(0)).min() >= 1e-3


def test_shifted_logit_normal_configuration_is_validated():
    with pytest.raises(ValueError, match="uniform_probability"):
        ShiftedLogitNormalTimestepSampler(uniform_probability=1.5)
    with pytest.raises(ValueError, match="lower_percentile < upper_percentile"):
        ShiftedLogitNormalTimestepSampler(lower_percentile=0.9, upper_percentile=0.1)
    with pytest.raises(ValueError, match="must differ"):
        ShiftedLogitNormalTimestepSampler(min_tokens=10, max_tokens=10)
    with pytest.raises(ValueError, match="num_tokens"):
        ShiftedLogitNormalTimestepSampler().sample(2, 0)
    with pytest.raises(ValueError, match="batch_size"):
        TIMESTEP_SAMPLERS.build("uniform").sample(-1, 10)
    with pytest.raises(TypeError):
        TIMESTEP_SAMPLERS.build("uniform", mean=0.0)


# Conditioning ---------------------------------------------------------------------------------------


def test_conditioning_tokens_get_their_own_timestep_and_leave_the_loss():
    latents, noise = latents_and_noise()
    batch, _, frames, height, width = latents.shape
    timestep = torch.tensor([0.3, 0.6, 0.9])
    conditioning = torch.zeros(batch, frames, dtype=torch.bool)
    conditioning[0, 0] = True  # image-to-video
    conditioning[1, :2] = True  # video extension
    conditioning[2, [1, 4]] = True  # keyframes
    noisy, token_timesteps, loss_mask = apply_conditioning(latents, noise, timestep, conditioning, 0.0)

    assert noisy.shape == latents.shape and token_timesteps.shape == (batch, frames, height, width)
    assert loss_mask.shape == (batch, 1, frames, height, width) and loss_mask.dtype == torch.bool
    per_frame = conditioning[:, None, :, None, None].expand_as(latents)
    assert torch.equal(noisy[per_frame], latents[per_frame])  # conditioning tokens are clean at t = 0
    expected_other = interpolate(latents, noise, timestep)
    assert torch.equal(noisy[~per_frame], expected_other[~per_frame])
    assert torch.equal(token_timesteps[conditioning], torch.zeros(int(conditioning.sum()), height, width))
    assert torch.equal(token_timesteps[~conditioning], timestep[:, None].expand(batch, frames)[~conditioning]
                       [:, None, None].expand(-1, height, width))
    assert torch.equal(loss_mask[:, 0, :, 0, 0], ~conditioning)
    assert loss_mask.all(dim=(1, 3, 4)).eq(~conditioning).all()


def test_conditioning_with_a_small_timestep_adds_a_little_noise():
    latents, noise = latents_and_noise()
    conditioning = torch.zeros(3, 5, dtype=torch.bool)
    conditioning[:, 0] = True
    noisy, token_timesteps, _ = apply_conditioning(latents, noise, torch.full((3,), 0.8), conditioning, 0.05)
    torch.testing.assert_close(noisy[:, :, 0], 0.95 * latents[:, :, 0] + 0.05 * noise[:, :, 0])
    assert torch.allclose(token_timesteps[:, 0], torch.tensor(0.05))
    no_conditioning = torch.zeros(3, 5, dtype=torch.bool)
    noisy, _, loss_mask = apply_conditioning(latents, noise, torch.full((3,), 0.8), no_conditioning)
    assert torch.equal(noisy, interpolate(latents, noise, torch.full((3,), 0.8))) and loss_mask.all()


def test_apply_conditioning_rejects_bad_masks():
    latents, noise = latents_and_noise()
    with pytest.raises(ValueError, match=r"bool tensor \(B, F\) = \(3, 5\)"):
        apply_conditioning(latents, noise, torch.zeros(3), torch.zeros(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"bool tensor"):
        apply_conditioning(latents, noise, torch.zeros(3), torch.zeros(3, 5))


@pytest.mark.parametrize(
    "config, mode",
    [
        (ConditioningConfig(first_frame_probability=1.0), "first"),
        (ConditioningConfig(first_frame_probability=0.0, leading_frames_probability=1.0, max_leading_frames=3),
         "leading"),
        (ConditioningConfig(first_frame_probability=0.0, keyframe_probability=1.0), "keyframes"),
    ],
)
def test_each_conditioning_mode(config, mode):
    frames = sample_conditioning_frames(2_000, 6, config, generator=torch.Generator().manual_seed(0))
    assert frames.shape == (2_000, 6) and frames.dtype == torch.bool
    counts = frames.sum(dim=1)
    assert (counts >= 1).all() and (counts <= 5).all()  # every sample conditioned, never all frames
    if mode == "first":
        assert frames[:, 0].all() and not frames[:, 1:].any()
    elif mode == "leading":
        assert set(counts.tolist()) == {1, 2, 3}
        index = torch.arange(6)
        assert torch.equal(frames, index[None] < counts[:, None])  # a prefix
    else:
        assert set(counts.tolist()) == {1, 2, 3, 4, 5}
        assert frames.float().mean(dim=0).min() > 0.3  # any frame can be a keyframe, the last one too
        assert not torch.equal(frames, frames[0].expand_as(frames))


def test_conditioning_mode_frequencies_and_determinism():
    config = ConditioningConfig(first_frame_probability=0.2, leading_frames_probability=0.3, keyframe_probability=0.1)
    frames = sample_conditioning_frames(20_000, 4, config, generator=torch.Generator().manual_seed(0))
    assert torch.equal(frames, sample_conditioning_frames(20_000, 4, config, generator=torch.Generator().manual_seed(0)))
    conditioned = frames.any(dim=1).float().mean().item()
    assert abs(conditioned - 0.6) < 0.02
    assert not frames.all(dim=1).any()


def test_images_and_two_frame_latents():
    config = ConditioningConfig(first_frame_probability=0.5, leading_frames_probability=0.25, keyframe_probability=0.25)
    image = sample_conditioning_frames(500, 1, config, generator=torch.Generator().manual_seed(0))
    assert image.shape == (500, 1) and not image.any()
    two = sample_conditioning_frames(500, 2, config, generator=torch.Generator().manual_seed(0))
    assert (two.sum(dim=1) == 1).all()  # leading frames capped at F - 1 = 1; keyframes: 1 of 2 frames
    assert two[:, 1].any() and two[:, 0].float().mean() > 0.8  # frame 1 only as a keyframe
    assert sample_conditioning_frames(0, 5, config).shape == (0, 5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"first_frame_probability": 0.6, "leading_frames_probability": 0.3, "keyframe_probability": 0.2},
         "sum must be at most 1"),
        ({"first_frame_probability": -0.1}, r"first_frame_probability must be in \[0, 1\]"),
        ({"keyframe_probability": 1.5}, r"keyframe_probability must be in \[0, 1\]"),
        ({"max_leading_frames": 0}, "max_leading_frames must be an int >= 1"),
        ({"conditioning_timestep": 2.0}, r"conditioning_timestep must be in \[0, 1\]"),
    ],
)
def test_conditioning_config_is_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ConditioningConfig(**kwargs)


def test_conditioning_config_is_frozen():
    with pytest.raises(AttributeError):
        ConditioningConfig().first_frame_probability = 0.5  # type: ignore[misc]


# Text dropout ---------------------------------------------------------------------------------------


def encoded_text(batch: int = 4_000, length: int = 6, dim: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(batch, length, dim, generator=generator) + 5.0
    mask = torch.arange(length)[None, :] < torch.randint(1, length + 1, (batch, 1), generator=generator)
    return embeddings, mask


def test_drop_text_defaults_to_zero_embeddings_and_an_empty_mask():
    embeddings, mask = encoded_text()
    new_embeddings, new_mask, dropped = drop_text(embeddings, mask, 0.1, generator=torch.Generator().manual_seed(1))
    assert dropped.shape == (4_000,) and dropped.dtype == torch.bool
    assert abs(dropped.float().mean().item() - 0.1) < 0.02
    assert torch.equal(new_embeddings[dropped], torch.zeros_like(embeddings[dropped]))
    assert not new_mask[dropped].any() and new_mask.dtype == mask.dtype
    assert torch.equal(new_embeddings[~dropped], embeddings[~dropped]) and torch.equal(new_mask[~dropped], mask[~dropped])


def test_drop_text_uses_the_given_null_text():
    embeddings, mask = encoded_text(batch=500)
    null_embeddings = torch.full((6, 3), -1.0)  # e.g. the encoded empty prompt
    null_mask = torch.tensor([True, False, False, False, False, False])
    new_embeddings, new_mask, dropped = drop_text(
        embeddings, mask, 0.5, torch.Generator().manual_seed(2), null_embeddings, null_mask
    )
    assert 150 < dropped.sum() < 350
    assert torch.equal(new_embeddings[dropped], null_embeddings.expand(int(dropped.sum()), 6, 3))
    assert torch.equal(new_mask[dropped], null_mask.expand(int(dropped.sum()), 6))
    assert torch.equal(new_embeddings[~dropped], embeddings[~dropped])
    all_dropped = drop_text(embeddings, mask, 1.0, None, null_embeddings[None], null_mask[None])
    assert all_dropped[2].all() and not drop_text(embeddings, mask, 0.0)[2].any()


def test_drop_text_rejects_bad_inputs():
    embeddings, mask = encoded_text(batch=4)
    with pytest.raises(ValueError, match=r"probability must be in \[0, 1\]"):
        drop_text(embeddings, mask, 1.5)
    with pytest.raises(ValueError, match="together"):
        drop_text(embeddings, mask, 0.1, null_embeddings=torch.zeros(6, 3))
    with pytest.raises(ValueError, match="Encode the null prompt with the same encoder"):
        drop_text(embeddings, mask, 0.1, null_embeddings=torch.zeros(7, 3), null_mask=torch.ones(7, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"embeddings must be \(B, L, D\)"):
        drop_text(embeddings, mask[:, :3], 0.1)
