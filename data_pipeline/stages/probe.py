"""The ``probe`` stage: open a source file, read its first video stream's facts, reject unusable ones."""

from __future__ import annotations

from pathlib import Path

import av
from PIL import Image

from data_pipeline.clips import Clip, Rejection
from ltx.data.video_io import VideoInfo
from ltx.registry import CURATION_STAGES

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")  # the image files frames.read_frames reads
DECODE_ERRORS = (av.error.FFmpegError, OSError, ValueError, IndexError, EOFError,
                 Image.DecompressionBombError)


class ProbeError(Exception):
    """A source that cannot become a clip, with the stable rejection reason."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


@CURATION_STAGES.register("probe")
class ProbeStage:
    """Turn a source clip (only ``source`` set) into a clip spanning the whole source, or reject it.

    Fills ``info`` (fps, num_frames, width, height, codec, rotation) and sets ``end_frame = num_frames``.

    Args:
        min_frames: videos with fewer frames are rejected (``too_few_frames``). Default 2, the fewest that
            hold any motion; a 1-frame video is an image in disguise. Images are exempt.
        max_pixels: sources with ``width * height`` above this are rejected (``too_large``) before any
            decoding. Default 4096 * 4096 (past 4K DCI; more would only be downscaled at a high cost).
        count_frames: count frames by decoding even when the container states a count (exact, slower).
            Frames are always counted by decoding when the container does not say (mkv, webm, ...).
        images: accept still images (``.png .jpg .jpeg .webp .bmp``) as 1-frame clips with
            ``fps = 0.0`` (``VideoInfo.fps`` is a float; the shard schema writes ``fps: null`` for
            images). ``False`` rejects them (``image``).

    Rejection reasons: ``unreadable`` (missing, zero-byte, truncated or not media), ``no_video_stream``
    (audio-only), ``zero_frames``, ``too_few_frames``, ``too_large``, ``no_frame_rate``, ``image``.

    The fps of a variable-frame-rate video is its average rate (frames / duration, as ffprobe's
    ``avg_frame_rate``). ``info.rotation`` is the display-matrix rotation in degrees counter-clockwise
    (PyAV's ``VideoFrame.rotation``) in 0..359; width and height are the coded (unrotated) size and
    frames decode unrotated, so the encode stage must apply the rotation.
    """

    name = "probe"

    def __init__(self, min_frames: int = 2, max_pixels: int = 4096 * 4096, count_frames: bool = False,
                 images: bool = True):
        self.min_frames = min_frames
        self.max_pixels = max_pixels
        self.count_frames = count_frames
        self.images = images

    def __call__(self, clip: Clip) -> list[Clip | Rejection]:
        path = Path(clip.source)
        try:
            if path.suffix.lower() in IMAGE_SUFFIXES:
                info = self._probe_image(path)
            else:
                info = self._probe_video(path)
        except ProbeError as error:
            return [Rejection(clip.source, self.name, error.reason, str(error))]
        except DECODE_ERRORS as error:
            return [Rejection(clip.source, self.name, "unreadable", f"{type(error).__name__}: {error}")]
        return [clip.replace(info=info, start_frame=0, end_frame=info.num_frames)]

    def _check_size(self, width: int, height: int) -> None:
        if width <= 0 or height <= 0:
            raise ProbeError("unreadable", f"frame size {width}x{height}")
        if width * height > self.max_pixels:
            raise ProbeError("too_large", f"{width}x{height} is over max_pixels={self.max_pixels}")

    def _probe_image(self, path: Path) -> VideoInfo:
        if not self.images:
            raise ProbeError("image", f"{path.suffix} images are not accepted (images=False)")
        with Image.open(path) as image:
            self._check_size(image.width, image.height)
            image.load()  # a truncated image fails here, not in a later stage
            return VideoInfo(0.0, 1, image.width, image.height, (image.format or "image").lower(), 0)

    def _probe_video(self, path: Path) -> VideoInfo:
        with av.open(str(path)) as container:
            if not container.streams.video:
                kinds = ", ".join(stream.type for stream in container.streams) or "none"
                raise ProbeError("no_video_stream", f"streams: {kinds}")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            self._check_size(width, height)
            frames = container.decode(stream)
            first = next(frames, None)
            if first is None:
                raise ProbeError("zero_frames", "no frame decodes")
            rotation = int(first.rotation or 0) % 360
            num_frames = stream.frames
            if self.count_frames or not num_frames:
                num_frames = 1 + sum(1 for _ in frames)
            fps = _average_fps(stream, num_frames)
        if num_frames < self.min_frames:
            raise ProbeError("too_few_frames", f"{num_frames} frame(s) < min_frames={self.min_frames}")
        if fps <= 0:
            raise ProbeError("no_frame_rate", "the stream states no frame rate and no duration")
        return VideoInfo(fps, num_frames, width, height, stream.codec_context.name, rotation)


def _average_fps(stream: av.video.stream.VideoStream, num_frames: int) -> float:
    """The stream's average rate; else frames / duration; else the guessed rate; else 0."""
    if stream.average_rate:
        return float(stream.average_rate)
    if stream.duration and stream.time_base:
        return num_frames / float(stream.duration * stream.time_base)
    return float(stream.guessed_rate or 0)
