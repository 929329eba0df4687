"""Position schemes and RoPE spacings: every registered entry, and the properties the paper relies on."""

from __future__ import annotations

import pytest
import torch

from ltx.positional import (
    LatentGrid,
    apply_rotary_embedding,
    rope_frequencies,
    rotary_embedding,
    token_coordinates,
)
from ltx.registry import POSITION_SCHEMES, ROPE_SPACINGS, RegistryError

GRID = LatentGrid(3, 4, 5)


@pytest.mark.parametrize("scheme", POSITION_SCHEMES.names())
def test_every_scheme_gives_finite_distinct_coordinates(scheme):
    coordinates = token_coordinates(scheme, GRID, fps=torch.tensor([24.0, 12.0]), batch_size=2)
    assert coordinates.shape == (2, GRID.num_tokens, 3) and torch.isfinite(coordinates).all()
    assert torch.unique(coordinates[0], dim=0).shape[0] == GRID.num_tokens  # every token has its own position
    # tokens are in (f, h, w) row-major order: moving one column changes only the width coordinate
    step = coordinates[0, 1] - coordinates[0, 0]
    assert step[0] == 0 and step[1] == 0 and step[2] > 0


@pytest.mark.parametrize("spacing", ROPE_SPACINGS.names())
def test_every_spacing_gives_positive_distinct_frequencies(spacing):
    frequencies = rope_frequencies(spacing, dim=64, theta=10_000.0)
    assert frequencies.shape == (10,) and (frequencies > 0).all()
    assert torch.unique(frequencies).numel() == 10


def test_spacings_match_their_definitions():
    exponential = rope_frequencies("exponential", 60, 10_000.0)
    assert exponential[0] == pytest.approx(torch.pi / 2) and exponential[-1] == pytest.approx(10_000 * torch.pi / 2)
    inverse = rope_frequencies("inverse_exponential", 60, 10_000.0)
    assert inverse[0] == 1.0 and inverse[-1] == pytest.approx(10_000 ** (-9 / 10))


@pytest.mark.parametrize("spacing", ROPE_SPACINGS.names())
@pytest.mark.parametrize("dim", [60, 64])
def test_rope_scores_depend_only_on_position_offsets(spacing, dim):
    generator = torch.Generator().manual_seed(0)
    query, key = torch.randn(2, 1, 1, dim, generator=generator)
    frequencies = rope_frequencies(spacing, dim, 10_000.0)

    def score(query_position, key_position):
        cos_q, sin_q = rotary_embedding(torch.tensor([[query_position]]), frequencies, dim)
        cos_k, sin_k = rotary_embedding(torch.tensor([[key_position]]), frequencies, dim)
        return (apply_rotary_embedding(query, cos_q, sin_q) * apply_rotary_embedding(key, cos_k, sin_k)).sum()

    base = score([0.10, -0.30, 0.20], [0.05, 0.10, -0.40])
    shift = torch.tensor([0.37, -0.21, 0.11]).tolist()
    shifted = score([0.10 + shift[0], -0.30 + shift[1], 0.20 + shift[2]], [0.05 + shift[0], 0.10 + shift[1], -0.40 + shift[2]])
    assert shifted.item() == pytest.approx(base.item(), rel=1e-3, abs=1e-3)
    assert abs(score([0.5, 0.0, 0.0], [0.0, 0.0, 0.0]).item() - base.item()) > 1e-3  # but offsets matter


def test_rope_rotation_preserves_norm_and_pads_leftover_channels():
    dim = 64  # 64 mod 6 = 4 leftover channels stay unrotated
    cos, sin = rotary_embedding(torch.rand(1, 7, 3), rope_frequencies("exponential", dim, 10_000.0), dim)
    assert torch.all(cos[..., :4] == 1) and torch.all(sin[..., :4] == 0)
    x = torch.randn(1, 7, dim)
    torch.testing.assert_close(apply_rotary_embedding(x, cos, sin).norm(dim=-1), x.norm(dim=-1))


def extent(coordinates: torch.Tensor) -> torch.Tensor:
    return coordinates[0].max(dim=0).values - coordinates[0].min(dim=0).values  # (3,)


def test_relative_fractional_spans_grow_with_the_video_fractional_do_not():
    small, large = LatentGrid(3, 4, 4), LatentGrid(5, 8, 8)  # 2x the extent on every axis (f: 2 -> 4 steps)
    relative_small = extent(token_coordinates("relative_fractional", small, 24.0))
    relative_large = extent(token_coordinates("relative_fractional", large, 24.0))
    assert torch.allclose(relative_large[1:], relative_small[1:] * (7 / 3))  # 8 rows span 7 steps, 4 rows 3
    assert torch.allclose(relative_large[0], relative_small[0] * 2)
    fractional_small = extent(token_coordinates("fractional", small, 24.0))
    fractional_large = extent(token_coordinates("fractional", large, 24.0))
    assert torch.allclose(fractional_small, fractional_large) and torch.allclose(fractional_small, torch.full((3,), 2.0))


def test_relative_fractional_time_is_in_seconds():
    at_24 = token_coordinates("relative_fractional", LatentGrid(2, 1, 1), 24.0)
    at_12 = token_coordinates("relative_fractional", LatentGrid(2, 1, 1), 12.0)
    # one latent frame = 8 frames = 1/3 s at 24 fps, 2/3 s at 12 fps; 20 s map to the full range 2
    assert (at_24[0, 1, 0] - at_24[0, 0, 0]).item() == pytest.approx(2 * (8 / 24) / 20)
    assert (at_12[0, 1, 0] - at_12[0, 0, 0]).item() == pytest.approx(2 * (8 / 12) / 20)


def test_unknown_names_and_bad_fps_fail_listing_valid_names():
    with pytest.raises(RegistryError, match="Valid names: absolute, fractional, relative_fractional"):
        token_coordinates("learned", GRID, 24.0)
    with pytest.raises(RegistryError, match="Valid names: exponential, inverse_exponential"):
        rope_frequencies("linear", 64, 10_000.0)
    with pytest.raises(ValueError, match="fps must be positive"):
        token_coordinates("relative_fractional", GRID, 0.0)


def test_rotary_phases_rotate_like_the_release_formula_in_both_forms():
    from ltx.positional.rope import RotaryPhases, apply_rotary_phases, rotary_phases

    generator = torch.Generator().manual_seed(0)
    coordinates = torch.rand(2, 10, 3, generator=generator) * 5
    cos, sin = rotary_embedding(coordinates, rope_frequencies("exponential", 64, 10000.0), 64)
    x = torch.randn(2, 10, 64, generator=generator)
    expected = apply_rotary_embedding(x, cos, sin)
    phases = rotary_phases(cos, sin)
    assert phases.complex is not None
    torch.testing.assert_close(apply_rotary_phases(x, phases), expected)  # complex multiplication
    real_only = RotaryPhases(phases.cos, phases.sin, None)  # the form torch.compile traces
    torch.testing.assert_close(apply_rotary_phases(x, real_only), expected)
