"""Sinusoidal timestep embeddings and the timestep MLP (PixArt-alpha style, as in LTX-Video)."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_embedding(timesteps: torch.Tensor, dim: int = 256, max_period: float = 10_000.0) -> torch.Tensor:
    """`(N,)` -> `(N, dim)`: ``[cos(t w_k), sin(t w_k)]`` with ``w_k = max_period^(-k / (dim/2))``.

    Cosines first, as in the released LTX-Video weights (diffusers ``flip_sin_to_cos=True``,
    ``downscale_freq_shift=0``).
    """
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    angles = timesteps.float()[:, None] * torch.exp(exponent)[None]  # (N, half)
    embedding = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)  # (N, 2 * half)
    if dim % 2:
        embedding = nn.functional.pad(embedding, (0, 1))
    return embedding


class TimestepMLP(nn.Module):
    """Linear -> SiLU -> Linear on a sinusoidal embedding (names match the release's weights)."""

    def __init__(self, in_channels: int, embedding_dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, embedding_dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(embedding_dim, embedding_dim)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(embedding)))


class TimestepEmbedder(nn.Module):
    """`t (N,)` -> `(N, embedding_dim)`: sinusoid(256) then an MLP (adaLN-single's timestep part)."""

    def __init__(self, embedding_dim: int, frequency_dim: int = 256):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.timestep_embedder = TimestepMLP(frequency_dim, embedding_dim)

    def forward(self, timesteps: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        frequencies = sinusoidal_embedding(timesteps, self.frequency_dim)  # (N, 256)
        return self.timestep_embedder(frequencies.to(dtype))  # (N, D)
