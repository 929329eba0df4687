"""Decoding frames of a clip for the curation stages: evenly spaced picks, frames at a rate, small
grayscale frames for optical flow, crops applied."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
from PIL import Image

from data_pipeline.clips import Clip
from ltx.data.video_io import VideoDecodeError


def evenly_spaced(clip: Clip, count: int) -> list[int]:
    """``count`` source-frame indices spread over the clip (fractions 0.5/count, 1.5/count, ...)."""
    if clip.num_frames <= 0:
        raise ValueError(f"clip {clip.key} has no frames")
    count = max(1, min(count, clip.num_frames))
    return sorted({clip.start_frame + int((i + 0.5) * clip.num_frames / count) for i in range(count)})


def at_rate(clip: Clip, rate: float) -> list[int]:
    """Source-frame indices sampling the clip at about ``rate`` frames per second (at least two)."""
    fps = clip.info.fps if clip.info and clip.info.fps else 24.0
    step = max(1, round(fps / rate))
    indices = list(range(clip.start_frame, clip.end_frame, step))
    if len(indices) < 2 and clip.num_frames >= 2:
        indices = [clip.start_frame, clip.end_frame - 1]
    return indices


def read_frames(path: str | Path, indices: Sequence[int], crop: tuple[int, int, int, int] | None = None,
                max_side: int | None = None, gray: bool = False) -> np.ndarray:
    """Frames at sorted ``indices`` of a video file (or the image itself for image files), cropped to
    ``(x, y, w, h)``, shrunk so the longer side is at most ``max_side``: `(N, H, W, 3)` or `(N, H, W)`
    uint8 with ``gray``. Raises VideoDecodeError when a frame cannot be read."""
    path = Path(path)
    wanted = sorted(set(indices))
    frames: dict[int, np.ndarray] = {}
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".bmp"):
        with Image.open(path) as image:
            frames = {0: np.asarray(image.convert("RGB"))}
    else:
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for index, frame in enumerate(container.decode(stream)):
                    if index in wanted:
                        frames[index] = frame.to_ndarray(format="rgb24")
                    if index >= wanted[-1]:
                        break
        except (av.error.FFmpegError, IndexError) as error:
            raise VideoDecodeError(f"cannot decode {path}: {error}") from error
    missing = [i for i in wanted if i not in frames]
    if missing:
        raise VideoDecodeError(f"{path} has no frame(s) {missing[:5]}")
    return np.stack([_prepare(frames[i], crop, max_side, gray) for i in indices])


def _prepare(frame: np.ndarray, crop: tuple[int, int, int, int] | None, max_side: int | None, gray: bool) -> np.ndarray:
    if crop is not None:
        x, y, w, h = crop
        frame = frame[y : y + h, x : x + w]
    image = Image.fromarray(frame)
    if max_side and max(image.size) > max_side:
        scale = max_side / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR)
    if gray:
        image = image.convert("L")
    return np.asarray(image)


def clip_crop(clip: Clip) -> tuple[int, int, int, int] | None:
    return None if clip.crop is None else (clip.crop.x, clip.crop.y, clip.crop.w, clip.crop.h)
