"""Turning decoded media into training tensors: frame windows, resize + crop, pixel range."""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from ltx.data.buckets import Bucket, frames_available


def window_indices(num_frames: int, fps: float | None, target_fps: float, frames: int, rng: random.Random) -> list[int]:
    """Source-frame indices of a random ``frames``-long window sampled at ``target_fps``.

    Raises ValueError when the clip is too short for the window.
    """
    available, step = frames_available(num_frames, fps, target_fps)
    if frames > available:
        raise ValueError(f"clip of {num_frames} frames gives {available} at {target_fps} fps, {frames} needed")
    span = round((frames - 1) * step)
    start = rng.randint(0, num_frames - 1 - span)
    return [start + round(k * step) for k in range(frames)]


def effective_fps(fps: float | None, target_fps: float) -> float:
    """Frame rate of a window read with ``window_indices`` (the source rate when it is slower)."""
    return target_fps if fps is None else fps / max(1.0, fps / target_fps)


def resize_and_crop(frames: np.ndarray, bucket: Bucket, rng: random.Random | None) -> torch.Tensor:
    """`(F, h, w, 3) uint8` -> `(3, F, H, W)` float in [-1, 1] filling the bucket.

    Scales so the frames cover H x W (aspect kept, antialiased), then crops: at a random offset when
    ``rng`` is given, else centred.
    """
    video = torch.from_numpy(np.require(frames, requirements=["C", "W"])).permute(0, 3, 1, 2)  # (F, 3, h, w)
    height, width = video.shape[-2:]
    scale = max(bucket.height / height, bucket.width / width)
    resized = (max(bucket.height, math.ceil(height * scale)), max(bucket.width, math.ceil(width * scale)))
    if resized != (height, width):
        video = TF.resize(video, list(resized), antialias=True)  # (F, 3, H', W')
    top = _offset(resized[0] - bucket.height, rng)
    left = _offset(resized[1] - bucket.width, rng)
    video = video[..., top : top + bucket.height, left : left + bucket.width]  # (F, 3, H, W)
    video = video.permute(1, 0, 2, 3).float()  # (3, F, H, W)
    return video / 127.5 - 1.0


def _offset(slack: int, rng: random.Random | None) -> int:
    return slack // 2 if rng is None else rng.randint(0, slack)
