"""Position schemes compared in the paper (Fig. 7): absolute, fractional, relative-fractional.

Every scheme maps the integer latent grid index ``(f, h, w)`` of each token to three real coordinates;
RoPE then turns coordinates into rotations (``angle = frequency * coordinate``), so schemes and
spacings combine freely.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ltx.registry import POSITION_SCHEMES
from ltx.shapes import SPATIAL_COMPRESSION, TEMPORAL_COMPRESSION


@dataclass(frozen=True)
class LatentGrid:
    """A latent video of ``frames`` x ``height`` x ``width`` tokens."""

    frames: int
    height: int
    width: int

    @property
    def num_tokens(self) -> int:
        return self.frames * self.height * self.width


def latent_grid_indices(grid: LatentGrid, device: torch.device | None = None) -> torch.Tensor:
    """`(N, 3)` float indices (f, h, w) of every token, in row-major (f, h, w) token order."""
    axes = [torch.arange(n, dtype=torch.float32, device=device) for n in (grid.frames, grid.height, grid.width)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)  # (N, 3)


@POSITION_SCHEMES.register("absolute")
def absolute_positions(indices: torch.Tensor, grid: LatentGrid, fps: torch.Tensor, **_: object) -> torch.Tensor:
    """Integer token indices: the same token offset means the same thing at any size or frame rate."""
    return indices.unsqueeze(0).expand(fps.shape[0], -1, -1)  # (B, N, 3)


@POSITION_SCHEMES.register("fractional")
def fractional_positions(indices: torch.Tensor, grid: LatentGrid, fps: torch.Tensor, **_: object) -> torch.Tensor:
    """Each axis divided by the sample's own extent, mapped to [-1, 1]: every video spans the same range
    whatever its size or duration."""
    extents = torch.tensor([max(n - 1, 1) for n in (grid.frames, grid.height, grid.width)],
                           dtype=indices.dtype, device=indices.device)
    coordinates = 2 * indices / extents - 1  # (N, 3)
    return coordinates.unsqueeze(0).expand(fps.shape[0], -1, -1)  # (B, N, 3)


@POSITION_SCHEMES.register("relative_fractional")
def relative_fractional_positions(indices: torch.Tensor, grid: LatentGrid, fps: torch.Tensor,
                                  max_extent: tuple[float, float, float] = (20.0, 2048.0, 2048.0),
                                  **_: object) -> torch.Tensor:
    """Real units (seconds, pixels) divided by a fixed maximum extent, mapped with ``2p - 1`` (the
    paper's best and the release's): a 2x larger video spans a 2x larger range; fps enters time."""
    units = torch.stack([
        TEMPORAL_COMPRESSION / fps.to(indices.dtype),  # seconds per latent frame
        torch.full_like(fps, SPATIAL_COMPRESSION, dtype=indices.dtype),  # pixels per latent row
        torch.full_like(fps, SPATIAL_COMPRESSION, dtype=indices.dtype),  # pixels per latent column
    ], dim=-1)  # (B, 3)
    maximum = torch.tensor(max_extent, dtype=indices.dtype, device=indices.device)
    fraction = indices.unsqueeze(0) * units[:, None, :] / maximum  # (B, N, 3), in [0, 1] up to the maxima
    return fraction * 2 - 1


def token_coordinates(scheme: str, grid: LatentGrid, fps: torch.Tensor | float, batch_size: int = 1,
                      device: torch.device | None = None, **kwargs: object) -> torch.Tensor:
    """`(B, N, 3)` coordinates of every token of ``grid`` under the registered position ``scheme``."""
    fps = torch.as_tensor(fps, dtype=torch.float32, device=device).reshape(-1).expand(batch_size)
    if not torch.all(fps > 0):
        raise ValueError(f"fps must be positive, got {fps.tolist()}")
    indices = latent_grid_indices(grid, device)
    return POSITION_SCHEMES.get(scheme)(indices, grid, fps, **kwargs)
