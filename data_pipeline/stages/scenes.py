"""The ``scenes`` stage: split a clip into shots with PySceneDetect, trim cuts, force-cut long shots."""

from __future__ import annotations

from fractions import Fraction

import cv2
import numpy as np
from scenedetect import (
    AdaptiveDetector,
    ContentDetector,
    FrameTimecode,
    SceneManager,
    VideoStream,
    open_video,
)
from scenedetect.detector import SceneDetector
from scenedetect.scene_manager import compute_downscale_factor

from data_pipeline.clips import Clip, Rejection
from data_pipeline.frames import SOURCE_FRAMES, DecodedSource, crop_resize_i420
from ltx.registry import CURATION_STAGES

DETECTORS = ("content", "adaptive")


@CURATION_STAGES.register("scenes")
class SceneSplitStage:
    """Split a probed clip at its hard cuts into one clip per shot (a single shot yields one clip).

    Args:
        detector: ``"content"`` (PySceneDetect ``ContentDetector``, the video2dataset and Panda-70M
            default) or ``"adaptive"`` (``AdaptiveDetector``, Open-Sora v1.3).
        threshold: ContentDetector threshold; default 27 (PySceneDetect, video2dataset).
        min_scene_len: the shortest shot the detector reports, in frames; default 15 (PySceneDetect).
        adaptive_threshold, min_content_val: AdaptiveDetector settings; defaults 2.0 and 10 (Open-Sora).
        trim_seconds: cut away this much on each side of every detected cut to drop transition frames
            (not at the clip's own start and end, nor at forced cuts). Default 0.1 s (2-3 frames at
            24-30 fps): covers the blended frames of a hard cut in compressed video without the 0.5 s
            cosmos-curate spends per cut, which would eat a third of a 1.5 s shot.
        trim_frames: trim in frames instead, overriding ``trim_seconds`` (0 keeps the exact cut).
        min_seconds: shots shorter than this after trimming are rejected (``too_short``), one Rejection
            per dropped shot. Default 1.0 s: LTX-Video trains on 8k+1 frames, and a second at 24 fps holds
            the 25-frame minimum worth learning motion from.
        max_seconds: shots longer than this are force-cut into ``split_seconds`` pieces (Panda-70M:
            every 5 s past 7 s); a last piece shorter than ``min_seconds`` joins the one before it.
            Defaults 7.0 and 5.0; ``max_seconds=None`` never force-cuts.
        backend: PySceneDetect video backend for sources over the shared frame cache's budget,
            ``"opencv"`` (default, fastest here) or ``"pyav"``. Sources that fit are not decoded
            again: their cached frames go through the same SceneManager and detector.

    Clips with fewer than 2 frames (images) pass through unchanged. Cut positions are searched only
    inside ``[start_frame, end_frame)``; every other field of the input clip is kept. Rejection
    reasons: ``not_probed`` (no ``info``), ``unreadable`` (PySceneDetect cannot decode), ``too_short``.
    """

    name = "scenes"

    def __init__(self, detector: str = "content", threshold: float = 27.0, min_scene_len: int = 15,
                 adaptive_threshold: float = 2.0, min_content_val: float = 10.0, trim_seconds: float = 0.1,
                 trim_frames: int | None = None, min_seconds: float = 1.0, max_seconds: float | None = 7.0,
                 split_seconds: float = 5.0, backend: str = "opencv"):
        if detector not in DETECTORS:
            raise ValueError(f"unknown scene detector {detector!r}; valid: {', '.join(DETECTORS)}")
        if max_seconds is not None and not 0 < split_seconds <= max_seconds:
            raise ValueError(f"split_seconds must be in (0, max_seconds], got {split_seconds}, {max_seconds}")
        self.detector = detector
        self.threshold = threshold
        self.min_scene_len = min_scene_len
        self.adaptive_threshold = adaptive_threshold
        self.min_content_val = min_content_val
        self.trim_seconds = trim_seconds
        self.trim_frames = trim_frames
        self.min_seconds = min_seconds
        self.max_seconds = max_seconds
        self.split_seconds = split_seconds
        self.backend = backend

    def __call__(self, clip: Clip) -> list[Clip | Rejection]:
        if clip.info is None:
            return [Rejection(clip.key, self.name, "not_probed", "run the probe stage first")]
        if clip.num_frames < 2:
            return [clip]
        try:
            cuts = self.detect_cuts(clip)
        except Exception as error:  # PySceneDetect and its backends raise many unrelated types
            return [Rejection(clip.key, self.name, "unreadable", f"{type(error).__name__}: {error}")]
        fps = clip.info.fps or 24.0
        trim = self.trim_frames if self.trim_frames is not None else round(self.trim_seconds * fps)
        bounds = [clip.start_frame, *cuts, clip.end_frame]
        outputs: list[Clip | Rejection] = []
        for index, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
            start += trim if index > 0 else 0
            end -= trim if index < len(bounds) - 2 else 0
            outputs.extend(self._pieces(clip, start, end, fps))
        return outputs

    def detect_cuts(self, clip: Clip) -> list[int]:
        """Source-frame indices where a new shot starts, strictly inside the clip, before trimming."""
        cached = SOURCE_FRAMES.get(clip.source)
        if cached is not None and cached.frames and not cached.error:
            video = FramesVideoStream(cached, clip.info.fps or 24.0, clip.source)
        else:
            video = open_video(clip.source, backend=self.backend)
        manager = SceneManager()
        manager.add_detector(self._make_detector())
        manager.detect_scenes(video, end_time=clip.end_frame)
        scenes = manager.get_scene_list(start_in_scene=True)  # one scene, not [], when there is no cut
        return sorted({s.frame_num for s, _ in scenes[1:] if clip.start_frame < s.frame_num < clip.end_frame})

    def _make_detector(self) -> SceneDetector:
        if self.detector == "adaptive":
            return HSVDifferenceAdaptiveDetector(adaptive_threshold=self.adaptive_threshold,
                                                 min_content_val=self.min_content_val,
                                                 min_scene_len=self.min_scene_len)
        return HSVDifferenceContentDetector(threshold=self.threshold, min_scene_len=self.min_scene_len)

    def _pieces(self, clip: Clip, start: int, end: int, fps: float) -> list[Clip | Rejection]:
        """The shot ``[start, end)`` as clips (force-cut when long), or a ``too_short`` rejection."""
        shot = clip.replace(start_frame=start, end_frame=max(start, end))
        min_frames = self.min_seconds * fps
        if shot.num_frames <= 0 or shot.num_frames < min_frames:
            seconds = max(0, end - start) / fps
            detail = f"frames {start}-{end}: {seconds:.2f} s < min_seconds={self.min_seconds}"
            return [Rejection(shot.key, self.name, "too_short", detail)]
        if self.max_seconds is None or shot.num_frames <= self.max_seconds * fps:
            return [shot]
        step = max(1, round(self.split_seconds * fps))
        starts = list(range(start, end, step))
        if len(starts) > 1 and end - starts[-1] < min_frames:
            starts.pop()  # the short tail joins the piece before it
        return [clip.replace(start_frame=a, end_frame=b) for a, b in zip(starts, [*starts[1:], end])]


class HSVDifferenceScore:
    """PySceneDetect's content score computed in three OpenCV calls, for ``ContentDetector`` and the
    ``AdaptiveDetector`` built on it (mixed in before the library class).

    The stock score splits the HSV frame into planes and takes, per plane, the mean of ``|a - b|``
    through int32 numpy arrays: about 0.5 ms a frame at 256x192, most of the scene stage.
    ``cv2.absdiff`` of two uint8 HSV frames is that same exact difference and ``cv2.sumElems`` the
    per-channel sums (exact in float64), so the score, and every cut, is identical (tested) at a
    quarter of the cost. Thresholds, the flash filter and the adaptive ratio stay the library's.
    Edge-weighted configurations and stats managers take the stock path.
    """

    _weights: ContentDetector.Components
    _previous_hsv: np.ndarray | None = None

    def _calculate_frame_score(self, timecode: FrameTimecode, frame_img: np.ndarray) -> float:
        if self._weights.delta_edges > 0.0 or self.stats_manager is not None:
            return super()._calculate_frame_score(timecode, frame_img)
        hsv = cv2.cvtColor(frame_img, cv2.COLOR_BGR2HSV)  # (H, W, 3) uint8
        previous, self._previous_hsv = self._previous_hsv, hsv
        if previous is None:
            return 0.0
        pixels = float(hsv.shape[0] * hsv.shape[1])
        hue, saturation, luma = (total / pixels for total in cv2.sumElems(cv2.absdiff(hsv, previous))[:3])
        components = ContentDetector.Components(delta_hue=hue, delta_sat=saturation, delta_lum=luma, delta_edges=0.0)
        weights = self._weights
        return sum(c * w for c, w in zip(components, weights, strict=True)) / sum(abs(w) for w in weights)


class HSVDifferenceContentDetector(HSVDifferenceScore, ContentDetector):
    """``ContentDetector`` with :class:`HSVDifferenceScore`."""


class HSVDifferenceAdaptiveDetector(HSVDifferenceScore, AdaptiveDetector):
    """``AdaptiveDetector`` with :class:`HSVDifferenceScore`."""


class FramesVideoStream(VideoStream):
    """Decoded RGB frames as a PySceneDetect video stream (BGR frames, positions by frame count, as
    its OpenCV capture adapter), so detection reuses the frames the other stages share.

    The frames come already shrunk the way SceneManager's automatic downscaling would (longer side to
    about 256 pixels, bilinear), and ``frame_size`` reports that size, so SceneManager finds nothing
    left to shrink and the detector sees the same pixels, without converting full-size frames to BGR.
    """

    BACKEND_NAME = "frames"

    def __init__(self, source: DecodedSource, fps: float, path: str = "frames"):
        self._source = source
        self._frames = source.frames  # RGB frames, or I420 planes when source.planar
        self._fps = Fraction(fps).limit_denominator(1001)
        self._path = path
        self._read = 0  # frames returned so far
        first = source.frames[0]
        height, width = (first.shape[0] * 2 // 3, first.shape[1]) if source.planar else first.shape[:2]
        factor = compute_downscale_factor(max(width, height))
        self._size = (width, height) if factor <= 1 else \
            (max(1, round(width / factor)), max(1, round(height / factor)))

    @property
    def path(self) -> str:
        return self._path

    @property
    def name(self) -> str:
        return self._path

    @property
    def is_seekable(self) -> bool:
        return True

    @property
    def frame_rate(self) -> Fraction:
        return self._fps

    @property
    def duration(self) -> FrameTimecode:
        return self.base_timecode + len(self._frames)

    @property
    def frame_size(self) -> tuple[int, int]:
        return self._size

    @property
    def aspect_ratio(self) -> float:
        return 1.0

    @property
    def position(self) -> FrameTimecode:
        """The last frame read (the first frame before any read)."""
        return self.base_timecode + max(0, self._read - 1)

    @property
    def position_ms(self) -> float:
        return max(0, self._read - 1) * 1000.0 / float(self._fps)

    @property
    def frame_number(self) -> int:
        return self._read

    def read(self, decode: bool = True) -> np.ndarray | bool:
        if self._read >= len(self._frames):
            return False
        index = self._read
        self._read += 1
        if not decode:
            return True
        width, height = self._size
        if self._source.planar and width % 2 == 0 and height % 2 == 0:  # shrink the planes, convert small
            planes = self._frames[index]
            if (planes.shape[1], planes.shape[0] * 2 // 3) != self._size:
                planes = crop_resize_i420(planes, None, self._size, cv2.INTER_LINEAR)  # SceneManager's default
            return cv2.cvtColor(planes, cv2.COLOR_YUV2BGR_I420)
        frame = self._source.rgb(index)
        if (frame.shape[1], frame.shape[0]) != self._size:
            frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_LINEAR)  # SceneManager's default
        return cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)

    def reset(self) -> None:
        self._read = 0

    def seek(self, target) -> None:
        frame = target.frame_num if isinstance(target, FrameTimecode) else \
            FrameTimecode(target, self._fps).frame_num
        if frame < 0:
            raise ValueError("seek target must be >= 0")
        self._read = min(int(frame), len(self._frames))
