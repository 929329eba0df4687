"""The ``letterbox`` stage: find black bars (letterbox, pillarbox, both) and store the content crop."""

from __future__ import annotations

import numpy as np

from data_pipeline.clips import Clip, Rejection
from data_pipeline.frames import clip_crop, evenly_spaced, read_frames
from ltx.data.schema import CropBox
from ltx.data.video_io import VideoDecodeError
from ltx.registry import CURATION_STAGES


@CURATION_STAGES.register("letterbox")
class LetterboxCropStage:
    """Detect black bars on a few frames, store the median content box as ``crop`` (None when no bars).

    Per sampled frame, a row (column) is black when its mean luma is at most
    ``max(black_threshold, level + black_margin)``, where ``level`` is the frame's black level (the mean
    luma of its darkest edge line); the bars are the black rows (columns) running in from each edge. A
    frame whose darkest edge is above ``max_black_level`` has no bars. So full-range black (0) gets FFmpeg
    ``cropdetect``'s limit of 24, and limited-range black (16, as broadcast sources decode) gets 8 above
    it, the margin ``cropdetect``'s 24 leaves above limited-range black on the Y plane. Twenty-four above
    16 (limit 40) would cut dark content: a navy stripe of luma 38 beside 16-black bars was taken for a
    bar in testing. Frames that are black throughout (fades) are ignored. The clip's box is the median of
    the per-frame boxes, so one bright flash frame cannot undo the crop (``cropdetect`` grows its box over
    frames and loses it to one flash).

    Args:
        num_frames: frames sampled evenly over the clip; default 5.
        black_threshold: the luma (0-255) up to which a line is black; default 24 (FFmpeg ``cropdetect``'s
            ``limit``).
        black_margin: the least luma above the frame's black level still counted as black; default 8
            (``cropdetect``'s 24 minus limited-range black 16).
        max_black_level: the brightest level taken for black; default 20 (limited-range black 16 plus
            compression noise).
        round_to: the box's corner and size are shrunk to multiples of this; default 2, since H.264
            yuv420p needs even sizes (``cropdetect`` rounds to 16, which can cut real content).
        min_area_fraction: clips whose content area is a smaller fraction of the frame are rejected
            (``content_too_small``); default 0.5.

    The crop is in source pixels and is searched inside any crop the clip already has. Rejection
    reasons: ``no_frames``, ``unreadable``, ``all_black`` (every sampled frame is black),
    ``content_too_small``.
    """

    name = "letterbox"

    def __init__(self, num_frames: int = 5, black_threshold: float = 24.0, black_margin: float = 8.0,
                 max_black_level: float = 20.0, round_to: int = 2, min_area_fraction: float = 0.5):
        self.num_frames = num_frames
        self.black_threshold = black_threshold
        self.black_margin = black_margin
        self.max_black_level = max_black_level
        self.round_to = round_to
        self.min_area_fraction = min_area_fraction

    def __call__(self, clip: Clip) -> list[Clip | Rejection]:
        if clip.num_frames <= 0:
            return [Rejection(clip.key, self.name, "no_frames", f"range {clip.start_frame}-{clip.end_frame}")]
        try:
            # BT.601 luma of the RGB frames (OpenCV's grey: 0.299 R + 0.587 G + 0.114 B, rounded to uint8)
            luma = read_frames(clip.source, evenly_spaced(clip, self.num_frames), crop=clip_crop(clip), gray=True)
        except VideoDecodeError as error:
            return [Rejection(clip.key, self.name, "unreadable", str(error))]
        luma = luma.astype(np.float32)  # (N, H, W)
        boxes = [box for box in (self.frame_box(frame) for frame in luma) if box is not None]
        if not boxes:
            return [Rejection(clip.key, self.name, "all_black", f"{len(luma)} sampled frames are black")]
        height, width = luma.shape[1:]
        median = np.median(np.array(boxes), axis=0)
        x0, y0 = (int(np.ceil(v)) for v in median[:2])
        x1, y1 = (int(np.floor(v)) for v in median[2:])
        if (x0, y0, x1, y1) == (0, 0, width, height):
            return [clip]  # no bars
        step = self.round_to
        x0, y0 = -(-x0 // step) * step, -(-y0 // step) * step  # corners move inward to a multiple of step
        w, h = max(0, (x1 - x0) // step * step), max(0, (y1 - y0) // step * step)
        fraction = w * h / (width * height)
        if fraction < self.min_area_fraction:
            detail = f"content {w}x{h} at ({x0}, {y0}) is {fraction:.2f} of {width}x{height}"
            return [Rejection(clip.key, self.name, "content_too_small", detail)]
        offset_x, offset_y = (clip.crop.x, clip.crop.y) if clip.crop else (0, 0)
        return [clip.replace(crop=CropBox(offset_x + x0, offset_y + y0, w, h))]

    def frame_box(self, luma: np.ndarray) -> tuple[int, int, int, int] | None:
        """Content box ``(x0, y0, x1, y1)`` (end exclusive) of one `(H, W)` luma frame; None if all black."""
        edges = (luma[0].mean(), luma[-1].mean(), luma[:, 0].mean(), luma[:, -1].mean())
        height, width = luma.shape
        if min(edges) > self.max_black_level:
            return (0, 0, width, height)
        limit = max(self.black_threshold, min(edges) + self.black_margin)
        y0, y1 = _span(luma.mean(axis=1) > limit)
        if y1 <= y0:
            return None
        x0, x1 = _span(luma[y0:y1].mean(axis=0) > limit)  # columns inside the rows, for windowboxes
        if x1 <= x0:
            return None
        y0, y1 = _span(luma[:, x0:x1].mean(axis=1) > limit)  # rows again inside the columns
        return (x0, y0, x1, y1)


def _span(content: np.ndarray) -> tuple[int, int]:
    """First and one-past-last True index of a boolean line profile; (0, 0) when none."""
    indices = np.flatnonzero(content)
    return (int(indices[0]), int(indices[-1]) + 1) if len(indices) else (0, 0)
