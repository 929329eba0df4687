"""Conditioning modes: which latent tokens a training sample is given clean (their own timestep, no loss).

Each mode in the "conditioning mode" registry draws a bool token mask ``(B, F, H, W)`` over the latent grid
from a generator; ``dit_training.conditioning.modes`` names modes with a probability each, drawn
independently per sample and combined (union), so one sample can get, say, its first frame and an
inpainting region. The modes of the Lightricks trainers (ltx-trainer's "flexible" strategy):

- ``first_frame``: latent frame 0 (image-to-video);
- ``prefix``: the first 1..``max_frames`` latent frames (video extension forwards);
- ``suffix``: the last 1..``max_frames`` latent frames (extension backwards);
- ``keyframes``: a random non-empty subset of the latent frames;
- ``first_last``: the first and the last latent frame (interpolation between two images);
- ``spatial_mask``: inpainting: a rectangle or ellipse of tokens covering ``min_area``..``max_area`` of the
  frame, over all latent frames or a random run of them, is given; the rest is generated;
- ``outpaint``: a centred box of ``min_side``..``max_side`` of each side is given, the border generated.

A mask never covers every token of a sample (there would be nothing to learn): such a draw is dropped for
that sample.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from ltx.registry import CONDITIONING_MODES

Grid = tuple[int, int, int]  # latent (F, H, W)


def _uniform(batch: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return torch.rand(batch, generator=generator, device=device)  # (B,)


def _frames_mask(frames: torch.Tensor, grid: Grid) -> torch.Tensor:
    """`(B, F)` -> `(B, F, H, W)`."""
    return frames[:, :, None, None].expand(-1, -1, grid[1], grid[2]).clone()


def _count(draw: torch.Tensor, most: int) -> torch.Tensor:
    """`(B,)` uniform draws -> integers in [1, most]."""
    return 1 + (draw * most).long().clamp(max=most - 1)


@CONDITIONING_MODES.register("first_frame")
def first_frame(batch: int, grid: Grid, generator: torch.Generator | None = None) -> torch.Tensor:
    device = generator.device if generator is not None else torch.device("cpu")
    frames = torch.zeros(batch, grid[0], dtype=torch.bool, device=device)
    frames[:, 0] = True
    return _frames_mask(frames, grid)


@CONDITIONING_MODES.register("prefix")
def prefix(batch: int, grid: Grid, generator: torch.Generator | None = None, max_frames: int = 2) -> torch.Tensor:
    device = generator.device if generator is not None else torch.device("cpu")
    count = _count(_uniform(batch, generator, device), max(1, min(max_frames, grid[0] - 1)))  # (B,)
    return _frames_mask(torch.arange(grid[0], device=device)[None] < count[:, None], grid)


@CONDITIONING_MODES.register("suffix")
def suffix(batch: int, grid: Grid, generator: torch.Generator | None = None, max_frames: int = 2) -> torch.Tensor:
    device = generator.device if generator is not None else torch.device("cpu")
    count = _count(_uniform(batch, generator, device), max(1, min(max_frames, grid[0] - 1)))  # (B,)
    return _frames_mask(torch.arange(grid[0], device=device)[None] >= grid[0] - count[:, None], grid)


@CONDITIONING_MODES.register("keyframes")
def keyframes(batch: int, grid: Grid, generator: torch.Generator | None = None) -> torch.Tensor:
    device = generator.device if generator is not None else torch.device("cpu")
    count = _count(_uniform(batch, generator, device), max(1, grid[0] - 1))  # (B,) in [1, F-1]
    rank = torch.rand(batch, grid[0], generator=generator, device=device).argsort(dim=1).argsort(dim=1)  # (B, F)
    return _frames_mask(rank < count[:, None], grid)


@CONDITIONING_MODES.register("first_last")
def first_last(batch: int, grid: Grid, generator: torch.Generator | None = None) -> torch.Tensor:
    device = generator.device if generator is not None else torch.device("cpu")
    frames = torch.zeros(batch, grid[0], dtype=torch.bool, device=device)
    frames[:, 0] = frames[:, -1] = True
    return _frames_mask(frames, grid)


def _rows_and_columns(grid: Grid, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token centres in [0, 1]: rows `(1, 1, H, 1)`, columns `(1, 1, 1, W)`."""
    rows = (torch.arange(grid[1], device=device) + 0.5) / grid[1]
    columns = (torch.arange(grid[2], device=device) + 0.5) / grid[2]
    return rows.view(1, 1, -1, 1), columns.view(1, 1, 1, -1)


@CONDITIONING_MODES.register("spatial_mask")
def spatial_mask(batch: int, grid: Grid, generator: torch.Generator | None = None, min_area: float = 0.1,
                 max_area: float = 0.5, ellipse_probability: float = 0.5,
                 all_frames_probability: float = 0.5) -> torch.Tensor:
    """Inpainting: a random rectangle or ellipse (area ``min_area``..``max_area`` of the frame, aspect 1:2 to
    2:1, anywhere it fits) is the given region, over all latent frames or a random run of frames."""
    device = generator.device if generator is not None else torch.device("cpu")
    draws = torch.rand(batch, 8, generator=generator, device=device)  # (B, 8)
    area = min_area + (max_area - min_area) * draws[:, 0]
    aspect = torch.exp((draws[:, 1] * 2 - 1) * 0.6931)  # width / height in [1/2, 2]
    height = (area / aspect).sqrt().clamp(max=1.0)
    width = (area * aspect).sqrt().clamp(max=1.0)
    top, left = draws[:, 2] * (1 - height), draws[:, 3] * (1 - width)
    rows, columns = _rows_and_columns(grid, device)
    shape = lambda v: v.view(-1, 1, 1, 1)  # noqa: E731  (B,) -> (B, 1, 1, 1)
    inside_rows = (rows >= shape(top)) & (rows < shape(top + height))
    inside_columns = (columns >= shape(left)) & (columns < shape(left + width))
    box = inside_rows & inside_columns  # (B, 1, H, W)
    centre_row, centre_column = shape(top + height / 2), shape(left + width / 2)
    ellipse = ((rows - centre_row) / shape(height / 2)) ** 2 + ((columns - centre_column) / shape(width / 2)) ** 2 <= 1
    region = torch.where(shape(draws[:, 4] < ellipse_probability), ellipse, box)  # (B, 1, H, W)
    start = (draws[:, 5] * grid[0]).long().clamp(max=grid[0] - 1)
    length = _count(draws[:, 6], grid[0])
    index = torch.arange(grid[0], device=device)[None]  # (1, F)
    run = (index >= start[:, None]) & (index < (start + length)[:, None])  # (B, F)
    frames = torch.where((draws[:, 7] < all_frames_probability)[:, None], torch.ones_like(run), run)
    return region & frames[:, :, None, None]  # (B, F, H, W)


@CONDITIONING_MODES.register("outpaint")
def outpaint(batch: int, grid: Grid, generator: torch.Generator | None = None, min_side: float = 0.4,
             max_side: float = 0.8) -> torch.Tensor:
    """Outpainting: a centred box of ``min_side``..``max_side`` of the frame's height and width is given on
    every latent frame; the border around it is generated."""
    device = generator.device if generator is not None else torch.device("cpu")
    draws = torch.rand(batch, 2, generator=generator, device=device)
    height = (min_side + (max_side - min_side) * draws[:, 0]).view(-1, 1, 1, 1)
    width = (min_side + (max_side - min_side) * draws[:, 1]).view(-1, 1, 1, 1)
    rows, columns = _rows_and_columns(grid, device)
    box = ((rows - 0.5).abs() < height / 2) & ((columns - 0.5).abs() < width / 2)  # (B, 1, H, W)
    return box.expand(batch, grid[0], grid[1], grid[2]).clone()


def draw_conditioning_mask(batch: int, grid: Grid, modes: Mapping[str, float | Mapping],
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """The union of the ``modes`` drawn for each sample: `(B, F, H, W)` bool. ``modes`` maps a registered name
    to its probability, or to ``{probability: p, **options}`` for the mode's options; a sample whose union
    would cover every token gets no conditioning."""
    device = generator.device if generator is not None else torch.device("cpu")
    mask = torch.zeros(batch, *grid, dtype=torch.bool, device=device)  # (B, F, H, W)
    for name, setting in modes.items():
        options = dict(setting) if isinstance(setting, Mapping) else {"probability": setting}
        probability = float(options.pop("probability", 0.0))
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"conditioning mode {name!r}: probability must be in [0, 1], got {probability!r}")
        mode: Callable[..., torch.Tensor] = CONDITIONING_MODES.get(name)
        chosen = torch.rand(batch, generator=generator, device=device) < probability  # (B,)
        drawn = mode(batch, grid, generator, **options)  # (B, F, H, W), drawn for every sample: stable streams
        mask |= drawn & chosen[:, None, None, None]
    everything = mask.flatten(1).all(dim=1)  # (B,)
    return mask & ~everything[:, None, None, None]


__all__ = ["draw_conditioning_mask", "first_frame", "first_last", "keyframes", "outpaint", "prefix",
           "spatial_mask", "suffix"]
