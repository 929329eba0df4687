"""Resolution buckets: (frames, height, width) shapes with similar token counts.

The VAE maps F = 1 + 8k frames and H, W multiples of 32 to a latent grid of
(1 + (F - 1) / 8, H / 32, W / 32) tokens; anything else cannot be encoded, so bucket shapes are
checked against that rule when a config is loaded. Images use the F = 1 buckets.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ltx.shapes import SPATIAL_COMPRESSION, TEMPORAL_COMPRESSION, check_video_shape

__all__ = ["Bucket", "check_video_shape", "choose_bucket", "fitting_buckets", "frames_available", "parse_buckets"]


@dataclass(frozen=True, order=True)
class Bucket:
    """A batch shape: ``frames`` of ``height`` x ``width`` pixels."""

    frames: int
    height: int
    width: int

    def __post_init__(self) -> None:
        check_video_shape(self.frames, self.height, self.width, what=f"bucket {self.as_tuple()}")

    @property
    def is_image(self) -> bool:
        return self.frames == 1

    @property
    def aspect_ratio(self) -> float:
        return self.width / self.height

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(F', H', W') of the latent grid."""
        return (
            1 + (self.frames - 1) // TEMPORAL_COMPRESSION,
            self.height // SPATIAL_COMPRESSION,
            self.width // SPATIAL_COMPRESSION,
        )

    @property
    def num_tokens(self) -> int:
        return math.prod(self.latent_shape)

    def as_tuple(self) -> tuple[int, int, int]:
        return (self.frames, self.height, self.width)

    def __str__(self) -> str:
        return f"{self.frames}x{self.height}x{self.width}"


def parse_buckets(specs: Iterable[Sequence[int]]) -> list[Bucket]:
    """Turn ``[[frames, height, width], ...]`` from a config into checked, de-duplicated buckets."""
    buckets: list[Bucket] = []
    for spec in specs:
        if len(spec) != 3:
            raise ValueError(f"a bucket is [frames, height, width], got {list(spec)!r}")
        bucket = Bucket(*(int(v) if isinstance(v, float) and v.is_integer() else v for v in spec))
        if bucket not in buckets:
            buckets.append(bucket)
    if not buckets:
        raise ValueError("at least one bucket [frames, height, width] is needed")
    return buckets


def frames_available(num_frames: int, fps: float | None, target_fps: float) -> tuple[int, float]:
    """How many frames a clip yields when sampled at ``target_fps``, and the source-frame step.

    Clips are never temporally upsampled: a clip slower than ``target_fps`` is read frame by frame.
    """
    step = max(1.0, (fps or target_fps) / target_fps)
    return 1 + int((num_frames - 1) // step), step


def fitting_buckets(buckets: Sequence[Bucket], num_frames: int, fps: float | None, target_fps: float) -> list[Bucket]:
    """Buckets a clip can fill: F = 1 buckets for images; video buckets short enough for videos."""
    if num_frames == 1:
        return [b for b in buckets if b.is_image]
    available, _ = frames_available(num_frames, fps, target_fps)
    return [b for b in buckets if not b.is_image and b.frames <= available]


def choose_bucket(
    candidates: Sequence[Bucket],
    width: int,
    height: int,
    rng: random.Random,
    aspect_tolerance: float = 0.15,
) -> Bucket | None:
    """Among ``candidates``, the ones whose aspect ratio is closest to ``width/height`` (in log space,
    within ``aspect_tolerance`` of the best), picked at random so clips spread over durations."""
    if not candidates:
        return None
    target = math.log(width / height)
    distances = [abs(math.log(b.aspect_ratio) - target) for b in candidates]
    best = min(distances)
    near = [b for b, d in zip(candidates, distances) if d <= best + aspect_tolerance]
    return rng.choice(near)
