"""In-memory video encode / decode with PyAV (H.264 mp4), and PNG images with Pillow."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from types import ModuleType
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import av

# AVColorSpace values OpenCV's I420 conversions match (ITU-R BT.601; unspecified is treated as BT.601 by
# FFmpeg's swscale too), and AVColorRange values for limited ("MPEG", 16-235) range or unspecified.
BT601_COLORSPACES = (2, 5, 6)  # unspecified, BT470BG, SMPTE170M
LIMITED_RANGES = (0, 1)  # unspecified, MPEG


def _pyav() -> ModuleType:
    """PyAV, imported at first use: code that never touches a video file (training from latents, the GPU
    check in benchmarks/gpu_check.py) runs where PyAV is not installed."""
    import av

    return av


class VideoDecodeError(RuntimeError):
    """The bytes are not a decodable video, or hold fewer frames than were asked for."""


@dataclass(frozen=True)
class VideoInfo:
    """What a container says about its first video stream."""

    fps: float
    num_frames: int
    width: int
    height: int
    codec: str
    rotation: int


def is_bt601_i420(frame: av.VideoFrame) -> bool:
    """Whether OpenCV's I420 conversions match swscale for this frame: even-sized yuv420p in BT.601 (or
    untagged) limited range, what H.264 sources without colour tags decode to."""
    return (frame.format.name == "yuv420p" and frame.colorspace in BT601_COLORSPACES
            and frame.color_range in LIMITED_RANGES and frame.width % 2 == 0 and frame.height % 2 == 0)


def frame_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as `(H, W, 3) uint8` RGB.

    Even-sized yuv420p frames in BT.601 (or unspecified) limited range, which is what H.264 sources
    without colour tags decode to, convert with OpenCV's I420 conversion: the same BT.601 matrix as
    FFmpeg's swscale (pixels differ by at most 3 levels from chroma rounding), about 10x faster than
    PyAV's ``to_ndarray(format="rgb24")`` on this machine (0.2 against 2.2 ms for a 256x192 frame).
    Every other format, colour space (e.g. BT.709) or range goes through swscale.
    """
    if is_bt601_i420(frame):
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)  # (H * 3/2, W) planes -> (H, W, 3)
    return frame.to_ndarray(format="rgb24")


def rgb_to_frame(image: np.ndarray) -> av.VideoFrame:
    """An even-sized `(H, W, 3) uint8` RGB image as a yuv420p frame (BT.601 limited range, as swscale's
    default), converted with OpenCV: the encoder then needs no swscale conversion."""
    planes = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2YUV_I420)  # (H * 3/2, W)
    return _pyav().VideoFrame.from_ndarray(planes, format="yuv420p")


def encode_mp4(frames: Iterable[np.ndarray], fps: float, crf: int = 18, preset: str = "medium",
               threads: int = 1) -> bytes:
    """Encode RGB frames `(H, W, 3) uint8` as H.264 (yuv420p, BT.601 limited range) mp4 bytes.

    H and W must be even (yuv420p). ``threads`` > 1 uses x264's frame threading, which gives the same
    picture whatever the thread count (the container bytes differ: x264 writes its settings into the
    stream). Encodes are not guaranteed bit-for-bit repeatable: on a loaded machine about 1 in 10-40
    single-threaded encodes of the same frames differed by a byte, at most 4 levels on a few pixels.
    """

    def converted() -> Iterable[av.VideoFrame]:
        for frame in frames:
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise ValueError(f"frames must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}")
            if frame.shape[0] % 2 or frame.shape[1] % 2:
                raise ValueError(f"H.264 yuv420p needs even sizes, got {frame.shape[1]}x{frame.shape[0]}")
            yield rgb_to_frame(frame)

    return _encode_h264(converted(), fps, crf, preset, threads)


def encode_i420_mp4(planes: Iterable[np.ndarray], fps: float, crf: int = 18, preset: str = "medium",
                    threads: int = 1) -> bytes:
    """``encode_mp4`` for frames already in I420 (BT.601 limited range): `(H * 3/2, W) uint8` each, the
    Y plane over the U and V planes as OpenCV and PyAV lay them out; H and W even."""

    def wrapped() -> Iterable[av.VideoFrame]:
        for plane in planes:
            if plane.dtype != np.uint8 or plane.ndim != 2 or plane.shape[0] % 3 or plane.shape[1] % 2:
                raise ValueError(f"I420 frames must be (H * 3/2, W) uint8 with H and W even, got {plane.shape}")
            yield _pyav().VideoFrame.from_ndarray(np.ascontiguousarray(plane), format="yuv420p")

    return _encode_h264(wrapped(), fps, crf, preset, threads)


def _encode_h264(frames: Iterable[av.VideoFrame], fps: float, crf: int, preset: str, threads: int) -> bytes:
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    av = _pyav()
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = None
        for frame in frames:
            if stream is None:
                stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                stream.width, stream.height, stream.pix_fmt = frame.width, frame.height, "yuv420p"
                stream.options = {"crf": str(crf), "preset": preset}
                stream.codec_context.thread_count = threads
                stream.codec_context.thread_type = "FRAME"
            container.mux(stream.encode(frame))
        if stream is None:
            raise ValueError("cannot encode a video with no frames")
        container.mux(stream.encode(None))
    return buffer.getvalue()


def probe_video(data: bytes) -> VideoInfo:
    """Read fps, frame count (counted by decoding when the container does not say), size, codec."""
    av = _pyav()
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise VideoDecodeError("no video stream")
            stream = container.streams.video[0]
            num_frames = stream.frames or sum(1 for _ in container.decode(stream))
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            rotation = int(getattr(stream.codec_context, "rotation", 0) or 0)
            return VideoInfo(fps, num_frames, stream.width, stream.height, stream.codec_context.name, rotation)
    except av.error.FFmpegError as error:
        raise VideoDecodeError(f"cannot read video: {error}") from error


def decode_frames(data: bytes, indices: Sequence[int]) -> np.ndarray:
    """Decode the frames at sorted ``indices`` (repeats allowed) as `(len(indices), H, W, 3) uint8`."""
    if not indices:
        raise ValueError("no frame indices given")
    wanted = sorted(set(indices))
    last = wanted[-1]
    found: dict[int, np.ndarray] = {}
    av = _pyav()
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise VideoDecodeError("no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            wanted_set = set(wanted)
            for index, frame in enumerate(container.decode(stream)):
                if index in wanted_set:
                    found[index] = frame_to_rgb(frame)
                if index >= last:
                    break
    except av.error.FFmpegError as error:
        raise VideoDecodeError(f"cannot decode video: {error}") from error
    if len(found) != len(wanted):
        raise VideoDecodeError(f"video has {len(found) and max(found) + 1} frames, frame {last} was asked for")
    return np.stack([found[i] for i in indices])  # (F, H, W, 3)


def encode_png(image: np.ndarray) -> bytes:
    """Encode an `(H, W, 3) uint8` RGB image as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """Decode image bytes (PNG or anything Pillow reads) as `(H, W, 3) uint8` RGB."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as error:
        raise VideoDecodeError(f"cannot decode image: {error}") from error
