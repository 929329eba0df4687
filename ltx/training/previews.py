"""Reconstruction previews: original and reconstruction side by side, as mp4 and as a PNG grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger
from torchvision.utils import make_grid, save_image

from ltx.data.video_io import encode_mp4


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """`(3, F, H, W)` in [-1, 1] -> `(F, H, W, 3) uint8`."""
    pixels = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(1, 2, 3, 0).cpu().numpy()  # (F, H, W, 3)


def side_by_side(original: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """`(B, 3, F, H, W)` twice -> `(3, F, B*H, 2W)`: each row one sample, original left."""
    rows = torch.cat([original, reconstruction], dim=-1)  # (B, 3, F, H, 2W)
    return torch.cat(list(rows), dim=-2)  # (3, F, B*H, 2W)


def frame_grid(original: torch.Tensor, reconstruction: torch.Tensor, max_frames: int = 4) -> torch.Tensor:
    """A `(3, H', W')` grid in [0, 1]: per sample, evenly spaced frames of the original over the same
    frames of the reconstruction."""
    frames = original.shape[2]
    picks = torch.linspace(0, frames - 1, min(frames, max_frames)).round().long()
    tiles = []
    for sample_original, sample_reconstruction in zip(original, reconstruction):
        tiles += [sample_original[:, i] for i in picks] + [sample_reconstruction[:, i] for i in picks]
    return make_grid([(t.float().clamp(-1, 1) + 1) / 2 for t in tiles], nrow=len(picks), padding=2)


def write_previews(original: torch.Tensor, reconstruction: torch.Tensor, directory: Path, name: str,
                   fps: float = 24.0) -> tuple[Path, Path, torch.Tensor]:
    """Write ``name.mp4`` (side by side; a still for 1-frame clips) and ``name.png`` (frame grid)."""
    directory.mkdir(parents=True, exist_ok=True)
    movie = to_uint8_frames(side_by_side(original, reconstruction))  # (F, B*H, 2W, 3)
    mp4_path, png_path = directory / f"{name}.mp4", directory / f"{name}.png"
    mp4_path.write_bytes(encode_mp4(list(movie), fps=fps, preset="veryfast"))
    grid = frame_grid(original, reconstruction)
    save_image(grid, png_path)
    return mp4_path, png_path, grid


def log_image(loggers: list, tag: str, image: torch.Tensor, step: int) -> None:
    """Log a `(3, H, W)` image in [0, 1] to every logger that takes images (TensorBoard, W&B)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=tag, images=[image], step=step)
            continue
        experiment = getattr(logger, "experiment", None)
        if hasattr(experiment, "add_image"):
            experiment.add_image(tag, image, step)
