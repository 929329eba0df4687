"""Every registered conditioning mode, in training (own timestep, no loss) and in sampling (kept fixed)."""

from __future__ import annotations

import pytest
import torch

from ltx.diffusion.conditioning import ConditioningConfig, apply_conditioning
from ltx.diffusion.conditioning_modes import draw_conditioning_mask
from ltx.registry import CONDITIONING_MODES, RegistryError
from ltx.sampling import EulerFlowSampler, FrameConditioning

GRID = (4, 6, 8)  # latent (F, H, W)
MODES = CONDITIONING_MODES.names()


def test_the_trainers_modes_are_registered():
    assert {"first_frame", "prefix", "suffix", "keyframes", "first_last", "spatial_mask", "outpaint"} <= set(MODES)
    with pytest.raises(RegistryError, match="unknown conditioning mode 'inpaint'. Valid names: .*spatial_mask"):
        ConditioningConfig(modes={"inpaint": 0.1})
    with pytest.raises(ValueError, match=r"modes\['suffix'\] probability must be in \[0, 1\]"):
        ConditioningConfig(modes={"suffix": 1.5})


@pytest.mark.parametrize("name", MODES)
def test_mode_masks_are_deterministic_and_never_everything(name):
    masks = CONDITIONING_MODES.get(name)(64, GRID, torch.Generator().manual_seed(0))
    assert masks.shape == (64, *GRID) and masks.dtype == torch.bool
    again = CONDITIONING_MODES.get(name)(64, GRID, torch.Generator().manual_seed(0))
    assert torch.equal(masks, again)
    assert masks.flatten(1).any(dim=1).all()  # every sample gets something given
    assert not masks.flatten(1).all(dim=1).any()  # and something to generate


@pytest.mark.parametrize("name", MODES)
def test_mode_tokens_get_their_own_timestep_and_leave_the_loss(name):
    generator = torch.Generator().manual_seed(1)
    mask = draw_conditioning_mask(8, GRID, {name: 1.0}, generator)  # (B, F, H, W)
    latents, noise = torch.randn(8, 16, *GRID), torch.randn(8, 16, *GRID)
    noisy, timesteps, loss_mask = apply_conditioning(latents, noise, torch.full((8,), 0.7), mask)
    assert torch.all(timesteps[mask] == 0.0) and torch.all(timesteps[~mask] == 0.7)
    assert torch.equal(loss_mask[:, 0], ~mask)
    given = mask.unsqueeze(1).expand_as(latents)
    assert torch.equal(noisy[given], latents[given])  # clean at t = 0
    torch.testing.assert_close(noisy[~given], (0.3 * latents + 0.7 * noise)[~given])


@pytest.mark.parametrize("name", MODES)
def test_mode_tokens_stay_fixed_during_sampling(name):
    mask = draw_conditioning_mask(2, GRID, {name: 1.0}, torch.Generator().manual_seed(2))
    noise, clean, target = torch.randn(2, 16, *GRID), torch.randn(2, 16, *GRID), torch.randn(2, 16, *GRID)
    seen = []

    def model(latents, timestep, text, text_mask, fps):
        seen.append((latents.clone(), timestep.clone()))
        return latents - target

    result = EulerFlowSampler().sample(model, noise, torch.randn(2, 3, 8), None, 24.0, num_steps=4, guidance_scale=1.0,
                                       conditioning=FrameConditioning(clean, mask, noise_scale=0.0))
    given = mask.unsqueeze(1).expand_as(noise)
    for latents, timestep in seen:
        assert torch.all(timestep[mask] == 0.0) and torch.all(timestep[~mask] > 0.0)
        assert torch.equal(latents[given], clean[given])  # the given tokens never move
    assert torch.equal(result[given], clean[given])
    assert not torch.allclose(result[~given], clean[~given])


def test_modes_combine_per_sample_with_their_probabilities():
    generator = torch.Generator().manual_seed(3)
    modes = {"first_frame": 0.5, "outpaint": {"probability": 0.5, "min_side": 0.5, "max_side": 0.5}}
    mask = draw_conditioning_mask(4000, GRID, modes, generator)
    first = mask[:, 0].flatten(1).all(dim=1)  # (B,) the whole first frame is given only by first_frame
    box = mask[:, 1, 2:4, 2:6].flatten(1).all(dim=1)  # the centred half-size box on frame 1: outpaint
    assert torch.equal(mask[:, 1].flatten(1).sum(dim=1)[box], torch.full((int(box.sum()),), 8))  # nothing else
    for observed, expected in ((first, 0.5), (box, 0.5), (first & box, 0.25)):
        assert abs(observed.float().mean().item() - expected) < 0.03
    assert not draw_conditioning_mask(16, (1, 6, 8), {"first_frame": 1.0}).any()  # an image: nothing left to learn


def test_spatial_masks_are_rectangles_or_ellipses_of_the_requested_area():
    masks = CONDITIONING_MODES.get("spatial_mask")(500, (2, 32, 32), torch.Generator().manual_seed(4),
                                                   min_area=0.2, max_area=0.3, all_frames_probability=1.0)
    area = masks[:, 0].float().mean(dim=(1, 2))  # (B,)
    assert area.min() > 0.1 and area.max() < 0.35  # ellipses cover pi/4 of their box
    assert torch.equal(masks[:, 0], masks[:, 1])  # over all frames
