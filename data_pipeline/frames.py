"""Decoding frames of a clip for the curation stages: evenly spaced picks, frames at a rate, small
grayscale frames for optical flow, crops applied.

Each source is decoded once per worker process: ``SOURCE_FRAMES`` keeps every frame of the most
recently read source in memory while they fit in its byte budget, and the stages (letterbox, motion,
aesthetic, caption, scene detection) and the clip encoder all take their frames from it. A source over
the budget is decoded again by each reader, up to the last frame it needs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

from data_pipeline.clips import Clip
from ltx.data.video_io import VideoDecodeError, frame_to_rgb

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
DEFAULT_CACHE_MEGABYTES = 1024


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


@dataclass
class DecodedSource:
    """The leading frames of one source file, `(H, W, 3) uint8` RGB each, and the decode error that
    ended them early, if any (a truncated file keeps the frames before the damage)."""

    frames: list[np.ndarray]
    error: str | None = None


@dataclass
class SourceFrameCache:
    """Every frame of the most recently read source, while they fit in ``max_bytes``.

    ``get(path)`` decodes the file on first use and returns None for a source over the budget (that
    answer is remembered too, so the readers fall back to decoding only what they need). A file is
    identified by path, size and modification time, so a rewritten file is decoded again.
    """

    max_bytes: int = DEFAULT_CACHE_MEGABYTES << 20
    _key: tuple | None = None
    _source: DecodedSource | None = None
    decodes: int = field(default=0, compare=False)  # full decodes so far (tests check sharing)

    def configure(self, megabytes: float) -> None:
        self.max_bytes = int(megabytes * (1 << 20))
        self.clear()

    def clear(self) -> None:
        self._key, self._source = None, None

    def get(self, path: str | Path) -> DecodedSource | None:
        if self.max_bytes <= 0:
            return None
        key = _file_key(path)
        if key != self._key:
            self.clear()  # release the previous source before decoding the next
            self._source = _decode_within(path, self.max_bytes)
            self._key = key
            self.decodes += 1
        return self._source


SOURCE_FRAMES = SourceFrameCache()


def _file_key(path: str | Path) -> tuple:
    try:
        stat = os.stat(path)
    except OSError as error:
        raise VideoDecodeError(f"cannot read {path}: {error}") from error
    return (str(path), stat.st_size, stat.st_mtime_ns)


def _decode_within(path: str | Path, max_bytes: int) -> DecodedSource | None:
    """All frames of a video file, or None as soon as they would take more than ``max_bytes``."""
    frames: list[np.ndarray] = []
    total = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if stream.frames and stream.width * stream.height * 3 * stream.frames > max_bytes:
                return None  # the container says it will not fit: do not decode for nothing
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                image = frame_to_rgb(frame)
                total += image.nbytes
                if total > max_bytes:
                    return None
                frames.append(image)
    except (av.error.FFmpegError, IndexError) as error:
        if not frames:
            raise VideoDecodeError(f"cannot decode {path}: {error}") from error
        return DecodedSource(frames, f"{type(error).__name__}: {error}")
    return DecodedSource(frames)


def read_frames(path: str | Path, indices: Sequence[int], crop: tuple[int, int, int, int] | None = None,
                max_side: int | None = None, gray: bool = False) -> np.ndarray:
    """Frames at sorted ``indices`` of a video file (or the image itself for image files), cropped to
    ``(x, y, w, h)``, shrunk so the longer side is at most ``max_side``: `(N, H, W, 3)` or `(N, H, W)`
    uint8 with ``gray``. Raises VideoDecodeError when a frame cannot be read."""
    path = Path(path)
    wanted = sorted(set(indices))
    if not wanted:
        raise ValueError(f"no frame indices given for {path}")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        with Image.open(path) as image:
            frames = {0: np.asarray(image.convert("RGB"))}
    else:
        frames = _video_frames(path, wanted)
    missing = [i for i in wanted if i not in frames]
    if missing:
        raise VideoDecodeError(f"{path} has no frame(s) {missing[:5]}")
    return np.stack([prepare_frame(frames[i], crop, max_side, gray) for i in indices])


def _video_frames(path: Path, wanted: list[int]) -> dict[int, np.ndarray]:
    """The ``wanted`` frames of a video, from the shared decode when the source fits in it."""
    source = SOURCE_FRAMES.get(path)
    if source is not None:
        if wanted[-1] >= len(source.frames) and source.error:
            raise VideoDecodeError(f"cannot decode {path} past frame {len(source.frames)}: {source.error}")
        return {i: source.frames[i] for i in wanted if i < len(source.frames)}
    frames: dict[int, np.ndarray] = {}
    wanted_set = set(wanted)
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                if index in wanted_set:
                    frames[index] = frame_to_rgb(frame)
                if index >= wanted[-1]:
                    break
    except (av.error.FFmpegError, IndexError) as error:
        raise VideoDecodeError(f"cannot decode {path}: {error}") from error
    return frames


def prepare_frame(frame: np.ndarray, crop: tuple[int, int, int, int] | None, max_side: int | None,
                  gray: bool) -> np.ndarray:
    """Crop ``(x, y, w, h)``, shrink (area averaging) so the longer side is at most ``max_side``, and
    optionally turn to BT.601 luma."""
    if crop is not None:
        x, y, w, h = crop
        frame = frame[y : y + h, x : x + w]
    height, width = frame.shape[:2]
    if max_side and max(height, width) > max_side:
        scale = max_side / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        frame = cv2.resize(np.ascontiguousarray(frame), size, interpolation=cv2.INTER_AREA)
    if gray:
        frame = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    return frame


def clip_crop(clip: Clip) -> tuple[int, int, int, int] | None:
    return None if clip.crop is None else (clip.crop.x, clip.crop.y, clip.crop.w, clip.crop.h)
