"""The ``motion`` stage: score motion with optical flow (OpenCV DIS or Farneback), reject static clips."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from data_pipeline.clips import Clip, Rejection
from data_pipeline.frames import at_rate, clip_crop, read_frames
from ltx.data.video_io import VideoDecodeError
from ltx.registry import CURATION_STAGES

# cv2.calcOpticalFlowFarneback settings of video2dataset's optical-flow subsampler
FARNEBACK = {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5, "poly_sigma": 1.2,
             "flags": 0}
DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
METHODS = ("dis", "farneback")
DIS_MIN_SCORE = 0.00019  # measured on the demo sources: see MotionStage


@CURATION_STAGES.register("motion")
class MotionStage:
    """Store ``motion_score`` (mean optical-flow magnitude / frame diagonal) and reject by it.

    Frames are sampled at ``rate`` fps inside the clip's crop, scaled (down, or up for small sources) so
    the longer side is ``max_side`` and turned to grayscale; optical flow runs between consecutive
    samples. The score is the mean flow magnitude over all pixels and pairs divided by the frame
    diagonal: the fraction of the diagonal a pixel moves, on average, between two samples (1/``rate`` s
    apart). One working size makes it independent of the resolution.

    ``method="dis"`` (default) is OpenCV's DIS optical flow at its ``ultrafast`` preset, about 1 ms per
    pair at 256x192 on one core; ``method="farneback"`` is Farneback flow with video2dataset's settings,
    about 27 ms per pair (curating the demo sources took 13.5 s with it, 5.9 s of that in flow). The two
    scores differ in scale, so each has its own ``min_score``.

    Measured per clip on the demo sources (``data_pipeline.demo``, after the scenes and letterbox
    stages), DIS then Farneback: the slowest movers ``blue_triangle_dots`` 0.00036 / 0.00020,
    ``green_square_checks`` 0.00043 / 0.00026 and ``orange_triangle_30fps`` 0.00055 / 0.00038; faster
    ones such as ``red_circle_stripes`` 0.0019 / 0.0016 and ``white_square_diagonal`` 0.0035 / 0.0050;
    ``nearly_static_yellow_triangle`` (2% of the width in 2.7 s) 0.00010 / 0.00008 and
    ``static_green_circle`` 0.0 / 0.0. The default ``min_score`` is the geometric mean of the nearly
    static clip and the slowest mover: 0.00019 for DIS (3.6x between them), 0.00013 for Farneback (2.6x).

    Large motion saturates the score and then lowers it (a smooth pan of 10 px per sample scores more
    than faster pans, random noise or a cut every frame), so no upper bound separates jitter from fast
    pans and ``max_score`` is off by default.

    Args:
        rate: sampling rate in frames per second; default 8 (at 2 fps, DATA.md's rate, the demo shapes
            jump 25-30 px between samples, the flow loses them and the slowest score like the drift).
        max_side: the longer side of the flowed frames in pixels; default 256.
        method: ``"dis"`` or ``"farneback"``.
        dis_preset: ``"ultrafast"`` (default), ``"fast"`` or ``"medium"``.
        dis_finest_scale: the pyramid level DIS stops at; default 1 (half the working size). The preset's
            own level 2 is 2x faster but separates the nearly static demo clip from the slowest mover by
            only 1.7x in score, against 3.6x at level 1.
        min_score: clips scoring below are rejected (``too_static``); default None: the measured default
            of the method (see above).
        max_score: clips scoring above are rejected (``too_much_motion``); default None (no upper bound,
            see above); set it for footage whose statistics are known.

    Clips with fewer than 2 frames (images) pass through unscored. Rejection reasons: ``unreadable``,
    ``too_static``, ``too_much_motion``.
    """

    name = "motion"
    DEFAULT_MIN_SCORE = {"dis": DIS_MIN_SCORE, "farneback": 0.00013}

    def __init__(self, rate: float = 8.0, max_side: int = 256, method: str = "dis", dis_preset: str = "ultrafast",
                 dis_finest_scale: int = 1, min_score: float | None = None, max_score: float | None = None):
        if method not in METHODS:
            raise ValueError(f"unknown optical-flow method {method!r}; valid: {', '.join(METHODS)}")
        if dis_preset not in DIS_PRESETS:
            raise ValueError(f"unknown DIS preset {dis_preset!r}; valid: {', '.join(DIS_PRESETS)}")
        self.rate = rate
        self.max_side = max_side
        self.method = method
        self.dis_preset = dis_preset
        self.dis_finest_scale = dis_finest_scale
        self.min_score = self.DEFAULT_MIN_SCORE[method] if min_score is None else min_score
        self.max_score = max_score

    def __call__(self, clip: Clip) -> list[Clip | Rejection]:
        if clip.num_frames < 2:
            return [clip]
        try:
            frames = read_frames(clip.source, at_rate(clip, self.rate), crop=clip_crop(clip),
                                 max_side=self.max_side, gray=True)  # (N, H, W) uint8
        except VideoDecodeError as error:
            return [Rejection(clip.key, self.name, "unreadable", str(error))]
        score = motion_score(_to_working_size(frames, self.max_side), self.flow_function())
        scored = clip.replace(motion_score=score)
        if score < self.min_score:
            detail = f"motion {score:.5f} < min_score {self.min_score}"
            return [Rejection(clip.key, self.name, "too_static", detail)]
        if self.max_score is not None and score > self.max_score:
            detail = f"motion {score:.5f} > max_score {self.max_score}"
            return [Rejection(clip.key, self.name, "too_much_motion", detail)]
        return [scored]

    def flow_function(self) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """``flow(previous, current) -> (H, W, 2)`` float32 for `(H, W)` uint8 frames."""
        if self.method == "farneback":
            return lambda previous, current: cv2.calcOpticalFlowFarneback(previous, current, None, **FARNEBACK)
        dis = cv2.DISOpticalFlow_create(DIS_PRESETS[self.dis_preset])
        dis.setFinestScale(self.dis_finest_scale)
        return lambda previous, current: dis.calc(previous, current, None)


def motion_score(frames: np.ndarray, flow: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> float:
    """Mean flow magnitude between consecutive `(N, H, W)` uint8 frames over the frame diagonal."""
    if len(frames) < 2:
        return 0.0
    magnitudes = []
    for previous, current in zip(frames[:-1], frames[1:]):
        vectors = flow(previous, current)  # (H, W, 2)
        magnitudes.append(float(cv2.magnitude(vectors[..., 0], vectors[..., 1]).mean()))
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
