"""The ``motion`` stage: score motion with Farneback optical flow, reject static and chaotic clips."""

from __future__ import annotations

import cv2
import numpy as np

from data_pipeline.clips import Clip, Rejection
from data_pipeline.frames import at_rate, clip_crop, read_frames
from ltx.data.video_io import VideoDecodeError
from ltx.registry import CURATION_STAGES

# cv2.calcOpticalFlowFarneback settings of video2dataset's optical-flow subsampler
FARNEBACK = {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5, "poly_sigma": 1.2,
             "flags": 0}


@CURATION_STAGES.register("motion")
class MotionStage:
    """Store ``motion_score`` (mean optical-flow magnitude / frame diagonal) and reject by it.

    Frames are sampled at ``rate`` fps inside the clip's crop, scaled (down, or up for small sources) so
    the longer side is ``max_side`` and turned to grayscale; Farneback flow runs between consecutive
    samples with video2dataset's settings. The score is the mean flow magnitude over all pixels and pairs
    divided by the frame diagonal: the fraction of the diagonal a pixel moves, on average, between two
    samples (1/``rate`` s apart). One working size makes it independent of the resolution (Farneback's
    fixed 15-pixel window saw the same content 1.7x faster at 160x120 than at 320x240 before).

    Measured on the demo sources (``data_pipeline.demo``) at the defaults: shapes crossing the frame score
    0.00021 (``blue_triangle_dots``) to 0.0173 (``cyan_square_wide``), e.g. ``green_square_checks``
    0.00027, ``orange_triangle_30fps`` 0.00039, ``red_circle_stripes`` 0.0016, ``white_square_diagonal``
    0.0052; ``nearly_static_yellow_triangle`` (2% of the width in 2.7 s) 0.00008 and
    ``static_green_circle`` 0.0. At 2 fps (DATA.md's rate) the shapes jump 25-30 px between samples,
    Farneback loses them, and the slowest ones (0.00028) score like the drift (0.00029): no threshold
    separates them, hence 8 fps (video2dataset's default is every frame). Large motion saturates the score
    and then lowers it: a smooth pan of 10 px per sample scores 0.03-0.04, faster pans 0.017-0.024,
    random noise 0.014 and a cut every frame 0.011, so no upper bound separates jitter from fast pans and
    ``max_score`` is off by default.

    Args:
        rate: sampling rate in frames per second; default 8 (see above).
        max_side: the longer side of the flowed frames in pixels; default 256.
        min_score: clips scoring below are rejected (``too_static``); default 0.00013, the geometric mean
            of the nearly static demo source (0.00008) and the slowest moving one (0.00021).
        max_score: clips scoring above are rejected (``too_much_motion``); default None (no upper bound,
            see above); set it for footage whose statistics are known.

    Clips with fewer than 2 frames (images) pass through unscored. Rejection reasons: ``unreadable``,
    ``too_static``, ``too_much_motion``.
    """

    name = "motion"

    def __init__(self, rate: float = 8.0, max_side: int = 256, min_score: float = 0.00013,
                 max_score: float | None = None):
        self.rate = rate
        self.max_side = max_side
        self.min_score = min_score
        self.max_score = max_score

    def __call__(self, clip: Clip) -> list[Clip | Rejection]:
        if clip.num_frames < 2:
            return [clip]
        try:
            frames = read_frames(clip.source, at_rate(clip, self.rate), crop=clip_crop(clip),
                                 max_side=self.max_side, gray=True)  # (N, H, W) uint8
        except VideoDecodeError as error:
            return [Rejection(clip.key, self.name, "unreadable", str(error))]
        score = motion_score(_to_working_size(frames, self.max_side))
        scored = clip.replace(motion_score=score)
        if score < self.min_score:
            detail = f"motion {score:.5f} < min_score {self.min_score}"
            return [Rejection(clip.key, self.name, "too_static", detail)]
        if self.max_score is not None and score > self.max_score:
            detail = f"motion {score:.5f} > max_score {self.max_score}"
            return [Rejection(clip.key, self.name, "too_much_motion", detail)]
        return [scored]


def motion_score(frames: np.ndarray) -> float:
    """Mean Farneback flow magnitude between consecutive `(N, H, W)` uint8 frames over the diagonal."""
    if len(frames) < 2:
        return 0.0
    magnitudes = []
    for previous, current in zip(frames[:-1], frames[1:]):
        flow = cv2.calcOpticalFlowFarneback(previous, current, None, **FARNEBACK)  # (H, W, 2)
        magnitudes.append(float(np.linalg.norm(flow, axis=-1).mean()))
    height, width = frames.shape[1:]
    return float(np.mean(magnitudes)) / float(np.hypot(height, width))


def _to_working_size(frames: np.ndarray, max_side: int) -> np.ndarray:
    """`(N, H, W)` frames scaled (up too) so the longer side is ``max_side``, keeping the aspect ratio."""
    height, width = frames.shape[1:]
    scale = max_side / max(height, width)
    if abs(scale - 1) < 1e-6:
        return frames
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.stack([cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR) for frame in frames])
