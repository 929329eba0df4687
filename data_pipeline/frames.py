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
from ltx.data.video_io import VideoDecodeError, frame_to_rgb, is_bt601_i420

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
    """The leading frames of one source file and the decode error that ended them early, if any (a
    truncated file keeps the frames before the damage).

    ``planar`` sources (BT.601 limited-range yuv420p, even-sized: what untagged H.264 decodes to) keep
    each frame as its I420 planes, `(H * 3/2, W) uint8`: half the memory of RGB, and the encoder, the
    scene detector and the optical flow take what they need from the planes without a full-size RGB
    conversion. Other sources keep `(H, W, 3) uint8` RGB frames. ``rgb(i)`` gives frame ``i`` in RGB.
    """

    frames: list[np.ndarray]
    planar: bool = False
    error: str | None = None

    def rgb(self, index: int) -> np.ndarray:
        frame = self.frames[index]
        return cv2.cvtColor(frame, cv2.COLOR_YUV2RGB_I420) if self.planar else frame  # (H, W, 3)


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
    planar: bool | None = None
    total = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if stream.frames and stream.width * stream.height * 3 // 2 * stream.frames > max_bytes:
                return None  # the container says it will not fit: do not decode for nothing
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                if planar is None:
                    planar = is_bt601_i420(frame)
                if not planar:
                    image = frame_to_rgb(frame)
                elif is_bt601_i420(frame):
                    image = frame.to_ndarray()  # (H * 3/2, W) I420 planes
                else:  # a frame tagged differently mid-stream: through RGB into the source's layout
                    image = cv2.cvtColor(frame_to_rgb(frame), cv2.COLOR_RGB2YUV_I420)
                total += image.nbytes
                if total > max_bytes:
                    return None
                frames.append(image)
    except (av.error.FFmpegError, IndexError) as error:
        if not frames:
            raise VideoDecodeError(f"cannot decode {path}: {error}") from error
        return DecodedSource(frames, bool(planar), f"{type(error).__name__}: {error}")
    return DecodedSource(frames, bool(planar))


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
        source = SOURCE_FRAMES.get(path)
        if source is None:
            frames = _stream_frames(path, wanted)
        else:
            if wanted[-1] >= len(source.frames):
                reason = f"cannot decode past frame {len(source.frames)}: {source.error}" if source.error else \
                    f"has no frame(s) {[i for i in wanted if i >= len(source.frames)][:5]}"
                raise VideoDecodeError(f"{path} {reason}")
            if gray and source.planar:  # shrink the planes first, convert small
                return np.stack([prepare_gray(source.frames[i], crop, max_side) for i in indices])
            frames = {i: source.rgb(i) for i in wanted}
    missing = [i for i in wanted if i not in frames]
    if missing:
        raise VideoDecodeError(f"{path} has no frame(s) {missing[:5]}")
    return np.stack([prepare_frame(frames[i], crop, max_side, gray) for i in indices])


def _stream_frames(path: Path, wanted: list[int]) -> dict[int, np.ndarray]:
    """The ``wanted`` RGB frames of a video, decoding from the start up to the last one."""
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
    size = shrunk_size(width, height, max_side)
    if size != (width, height):
        frame = cv2.resize(np.ascontiguousarray(frame), size, interpolation=cv2.INTER_AREA)
    if gray:
        frame = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    return frame


def shrunk_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """``(width, height)`` scaled so the longer side is at most ``max_side`` (as ``prepare_frame``)."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def split_i420(planes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(H * 3/2, W)` I420 planes -> Y `(H, W)`, U and V `(H/2, W/2)` (views)."""
    height, width = planes.shape[0] * 2 // 3, planes.shape[1]
    flat = planes.reshape(-1)
    quarter = height * width // 4
    luma = flat[: height * width].reshape(height, width)
    u = flat[height * width : height * width + quarter].reshape(height // 2, width // 2)
    v = flat[height * width + quarter :].reshape(height // 2, width // 2)
    return luma, u, v


def crop_resize_i420(planes: np.ndarray, crop: tuple[int, int, int, int] | None, size: tuple[int, int],
                     interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """I420 planes cropped to ``(x, y, w, h)`` (all even) and resized (area averaging by default) to an
    even ``(width, height)``, plane by plane: `(height * 3/2, width)`."""
    luma, u, v = split_i420(planes)
    if crop is not None:
        x, y, w, h = crop
        luma, u, v = luma[y : y + h, x : x + w], u[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2], \
            v[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2]
    width, height = size
    if (luma.shape[1], luma.shape[0]) != size:
        luma = cv2.resize(np.ascontiguousarray(luma), size, interpolation=interpolation)
        u = cv2.resize(np.ascontiguousarray(u), (width // 2, height // 2), interpolation=interpolation)
        v = cv2.resize(np.ascontiguousarray(v), (width // 2, height // 2), interpolation=interpolation)
    return np.concatenate([luma.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(height * 3 // 2, width)


def prepare_gray(planes: np.ndarray, crop: tuple[int, int, int, int] | None, max_side: int | None) -> np.ndarray:
    """``prepare_frame(rgb, crop, max_side, gray=True)`` from I420 planes, converting at the small size
    when the crop and the shrunk size allow it (even), else through the full-size RGB frame.

    Not the Y plane itself: grey from RGB differs from limited-range luma where colours clip, enough
    to move optical-flow scores by 10 % on the demo's saturated shapes."""
    height, width = planes.shape[0] * 2 // 3, planes.shape[1]
    crop_width, crop_height = (crop[2], crop[3]) if crop else (width, height)
    size = shrunk_size(crop_width, crop_height, max_side)
    if size[0] % 2 or size[1] % 2 or (crop is not None and any(value % 2 for value in crop)):
        return prepare_frame(cv2.cvtColor(planes, cv2.COLOR_YUV2RGB_I420), crop, max_side, gray=True)
    small = cv2.cvtColor(crop_resize_i420(planes, crop, size), cv2.COLOR_YUV2RGB_I420)  # (h, w, 3)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)


def clip_crop(clip: Clip) -> tuple[int, int, int, int] | None:
    return None if clip.crop is None else (clip.crop.x, clip.crop.y, clip.crop.w, clip.crop.h)
