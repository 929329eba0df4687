"""Rotary position embeddings over three axes with registered frequency spacings (paper Fig. 8).

Layout as released: for each frequency the (t, h, w) angles are interleaved, each repeated for a
pair of channels; leftover channels (dim mod 6) are padded at the front with cos = 1, sin = 0; the
rotation acts on the full hidden Q/K before the head split, pairs ``(x0, x1) -> (-x1, x0)``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ltx.registry import ROPE_SPACINGS


@ROPE_SPACINGS.register("exponential")
def exponential_spacing(count: int, theta: float) -> torch.Tensor:
    """``theta ** linspace(0, 1, count) * pi / 2``: frequencies from pi/2 up (the paper's best)."""
    return theta ** torch.linspace(0.0, 1.0, count, dtype=torch.float32) * (math.pi / 2)


@ROPE_SPACINGS.register("inverse_exponential")
def inverse_exponential_spacing(count: int, theta: float) -> torch.Tensor:
    """``theta ** (-k / count)``: the usual RoPE frequencies, from 1 down."""
    return theta ** (-torch.arange(count, dtype=torch.float32) / count)


def rope_frequencies(spacing: str, dim: int, theta: float) -> torch.Tensor:
    """The ``dim // 6`` frequencies per axis of the registered ``spacing``."""
    if dim < 6:
        raise ValueError(f"RoPE over three axes needs a hidden size >= 6, got {dim}")
    return ROPE_SPACINGS.get(spacing)(dim // 6, theta).float()


def rotary_embedding(coordinates: torch.Tensor, frequencies: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(B, N, 3)` coordinates -> cos, sin `(B, N, dim)` in the release's layout."""
    angles = coordinates.float().unsqueeze(-1) * frequencies.to(coordinates.device)  # (B, N, 3, K)
    angles = angles.transpose(-1, -2).flatten(2)  # (B, N, K * 3): (t, h, w) interleaved per frequency
    cos = angles.cos().repeat_interleave(2, dim=-1)  # (B, N, 6K)
    sin = angles.sin().repeat_interleave(2, dim=-1)
    padding = dim - cos.shape[-1]
    if padding:
        cos = torch.cat([torch.ones_like(cos[..., :padding]), cos], dim=-1)  # (B, N, dim)
        sin = torch.cat([torch.zeros_like(sin[..., :padding]), sin], dim=-1)
    return cos, sin


def apply_rotary_embedding(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs of `(B, N, D)` by the angles in cos / sin `(B, N, D)` (computed in fp32)."""
    real, imaginary = x.unflatten(-1, (-1, 2)).unbind(-1)  # (B, N, D/2) each
    rotated = torch.stack([-imaginary, real], dim=-1).flatten(-2)  # (B, N, D)
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)


class RotaryPhases(NamedTuple):
    """The rotation of each channel pair, `(B, N, D/2)`: cos and sin, and (outside torch.compile) the
    same as unit complex numbers. Computed once per forward and shared by every block."""

    cos: torch.Tensor
    sin: torch.Tensor
    complex: torch.Tensor | None


def rotary_phases(cos: torch.Tensor, sin: torch.Tensor) -> RotaryPhases:
    """`(B, N, D)` cos / sin (values repeated per pair) -> ``RotaryPhases``."""
    cos, sin = cos[..., ::2].float().contiguous(), sin[..., ::2].float().contiguous()
    return RotaryPhases(cos, sin, None if torch.compiler.is_compiling() else torch.complex(cos, sin))


def apply_rotary_phases(x: torch.Tensor, phases: RotaryPhases) -> torch.Tensor:
    """``apply_rotary_embedding`` with fewer passes over memory: channel pairs ``(x0, x1)`` of `(B, N, D)`
    are complex numbers ``x0 + i x1`` times the phases. Eager: one complex multiplication; under
    torch.compile (inductor generates no complex code) the real form, which it fuses into one kernel."""
    pairs = x.float().unflatten(-1, (-1, 2))  # (B, N, D/2, 2)
    if phases.complex is None or torch.compiler.is_compiling():
        real, imaginary = pairs.unbind(-1)
        rotated = torch.stack([real * phases.cos - imaginary * phases.sin,
                               real * phases.sin + imaginary * phases.cos], dim=-1)
    else:
        rotated = torch.view_as_real(torch.view_as_complex(pairs.contiguous()) * phases.complex)
    return rotated.flatten(-2).to(x.dtype)  # (B, N, D)
