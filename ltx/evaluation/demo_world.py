"""Read a demo-world clip's object colour, shape and motion back from its decoded RGB frames alone.

How (``DemoWorldEvaluator.predict``), on frames 3x3-median-filtered against pixel noise:

1. Background: the world textures a background in shades 0.45-0.9 of one palette colour, so its pixels lie
   near the segment ``s * colour, s in BACKGROUND_SHADES``. The background colour is the palette colour
   whose (slightly widened) segment is the nearest one for the most pixels.
2. Object pixels: a pixel belongs to palette colour ``c`` (never the background's) when ``c`` is its nearest
   such palette colour, within ``object_tolerance``, and nearer than the background segment. Every palette
   colour is at least 62 RGB units from every other colour's background segment (orange to yellow's), so
   blur and mild noise do not mix them up; blended pixels along the shape's edge split the difference.
3. The object: per frame and colour, the largest 8-connected component of that colour's pixels counts when
   it is plausible: 0.4-25 % of the frame, holding most of that colour's pixels in the frame (noise scatters
   them), filling at least 30 % of its bounding box, not elongated; and when its area is within 1.5x of the
   median over those frames (a shape keeps its size). The object colour is the colour with the most frames
   holding such a component. ``found`` needs one in at least half of the frames (``confidence`` is that
   fraction) and, in a video, centroids that follow a straight line (RMS deviation at most 8 % of the
   frame: one object moving steadily, not blobs of noise); else nothing is predicted and every attribute
   scores wrong.
4. Shape: the IoU of the component with a circle, a square and an apex-up triangle of its area placed on its
   centroid, averaged over the frames; the best template wins when its IoU reaches 0.6 (else None). Unlike
   a bounding-box fill ratio, this is not thrown by a stray pixel at small sizes.
5. Motion: the least-squares line through the centroids (fractions of the frame) against the frame index
   gives the displacement over the clip; under ``still_distance`` it is ``still``, else the world motion
   whose direction is nearest, within ``max_angle_degrees`` (else None).

Chance levels for a guesser: colour 1/8, shape 1/3, motion 1/6.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ltx.evaluation.demo_vocabulary import (
    BACKGROUND_SHADES,
    COLOURS,
    DIRECTIONS,
    SHAPES,
    WORLD_MOTIONS,
    SceneLabels,
)

PALETTE_NAMES = tuple(COLOURS)
PALETTE = np.array([COLOURS[name] for name in PALETTE_NAMES], dtype=np.float32)  # (K, 3)


@dataclass(frozen=True)
class Prediction:
    """What the evaluator read from one clip; the attributes are None where it could not tell."""

    found: bool
    colour: str | None
    shape: str | None
    motion: str | None
    confidence: float  # fraction of frames holding a plausible object
    background_colour: str | None = None
    shape_match: float | None = None  # mean IoU of the object with the predicted shape's template
    displacement: tuple[float, float] | None = None  # (dx, dy) over the clip, fractions of the frame

    @property
    def labels(self) -> SceneLabels:
        return SceneLabels(self.colour, self.shape, self.motion)


@dataclass(frozen=True)
class _Blob:
    """The object candidate in one frame: its largest component, cropped to its bounding box."""

    frame: int
    area: int
    mask: np.ndarray  # (h, w) bool, the component inside its bounding box
    centre: tuple[float, float]  # (x, y) centroid, fractions of the frame


def video_frames(video: torch.Tensor | np.ndarray) -> np.ndarray:
    """`(F, H, W, 3) uint8` frames of a video given either as a float `(3, F, H, W)` tensor or array in
    [-1, 1] (what the VAE decodes; values outside are clipped) or as uint8 `(F, H, W, 3)` frames (what
    ``ltx.data.video_io.decode_frames`` returns)."""
    array = video.detach().cpu().numpy() if isinstance(video, torch.Tensor) else np.asarray(video)
    layouts = "float (3, F, H, W) in [-1, 1] or uint8 (F, H, W, 3)"
    if array.ndim != 4:
        raise ValueError(f"a video must be {layouts}; got shape {tuple(array.shape)}")
    if array.dtype == np.uint8:
        if array.shape[-1] != 3:
            raise ValueError(f"uint8 videos are (F, H, W, 3); got shape {tuple(array.shape)} ({layouts})")
        frames = array
    elif np.issubdtype(array.dtype, np.floating):
        if array.shape[0] != 3:
            raise ValueError(f"float videos are (3, F, H, W) in [-1, 1]; got shape {tuple(array.shape)} ({layouts})")
        if not np.isfinite(array).all():
            raise ValueError("the video holds NaN or infinite values")
        frames = ((np.clip(array, -1.0, 1.0) + 1.0) * 127.5).round().astype(np.uint8).transpose(1, 2, 3, 0)
    else:
        raise ValueError(f"a video must be {layouts}; got dtype {array.dtype}")
    if frames.shape[0] < 1 or min(frames.shape[1:3]) < 16:
        raise ValueError(f"a video needs at least one frame of at least 16x16 pixels; got {tuple(frames.shape)}")
    return np.ascontiguousarray(frames)


@dataclass(frozen=True)
class DemoWorldEvaluator:
    """Predict (colour, shape, motion) of a demo-world clip; the fields are the decision thresholds, in RGB
    units (0-255) or fractions of the frame. The module docstring describes the method."""

    background_tolerance: float = 40.0  # a pixel this near a colour's shade segment counts for that background
    background_shades: tuple[float, float] = (BACKGROUND_SHADES[0] - 0.1, BACKGROUND_SHADES[1] + 0.05)
    object_tolerance: float = 70.0  # an object pixel is at most this far from its palette colour
    min_area: float = 0.004  # plausible object area, fraction of the frame
    max_area: float = 0.25
    min_concentration: float = 0.6  # share of the colour's pixels in the frame held by the object component
    min_fill_ratio: float = 0.3
    max_aspect: float = 2.5  # bounding-box long side / short side
    max_area_change: float = 1.5  # frames whose object area is off the median by more than this factor don't count
    min_found_fraction: float = 0.5  # frames that must hold a plausible object
    min_shape_match: float = 0.6  # mean IoU with the best shape template; below it the shape is unknown
    max_path_deviation: float = 0.08  # RMS distance of the centroids from their line, fraction of the frame
    still_distance: float = 0.15  # displacement over the clip, fraction of the frame
    max_angle_degrees: float = 30.0

    def predict(self, video: torch.Tensor | np.ndarray) -> Prediction:
        """Prediction for one video (see ``video_frames`` for the accepted layouts)."""
        frames = np.stack([cv2.medianBlur(frame, 3) for frame in video_frames(video)])  # (F, H, W, 3)
        pixels = frames.reshape(-1, 3).astype(np.float32)  # (N, 3)
        squared_norms = (pixels * pixels) @ np.ones(3, dtype=np.float32)  # (N,)
        background = self._background_colour(pixels[::7], squared_norms[::7])
        labels = self._object_labels(pixels, squared_norms, background).reshape(frames.shape[:3])  # (F, H, W): K or -1
        best: tuple[int, int, int, list[_Blob]] | None = None  # (frames with an object, their area, colour, blobs)
        counts = np.bincount(labels.reshape(-1) + 1, minlength=len(PALETTE) + 1)[1:]  # (K,) pixels per colour
        enough = self.min_found_fraction * len(frames) * self.min_area * labels[0].size  # fewer: cannot be found
        for colour in np.flatnonzero(counts >= max(enough, 1)):
            blobs = self._consistent([blob for index in range(len(frames))
                                      if (blob := self._blob(labels[index] == colour, index))])
            candidate = (len(blobs), sum(blob.area for blob in blobs), int(colour), blobs)
            if best is None or candidate[:2] > best[:2]:
                best = candidate
        confidence = best[0] / len(frames) if best is not None else 0.0
        path = self._path(best[3], len(frames)) if best is not None else None
        if best is None or confidence < self.min_found_fraction or (len(frames) > 1 and path is None):
            return Prediction(False, None, None, None, confidence, PALETTE_NAMES[background])
        _, _, colour, blobs = best
        shape, shape_match = self._shape(blobs)
        return Prediction(True, PALETTE_NAMES[colour], shape, self._motion(path), confidence,
                          PALETTE_NAMES[background], shape_match, path)

    def predict_batch(self, videos: torch.Tensor | np.ndarray | Sequence) -> list[Prediction]:
        """Predictions for a batch: a float `(B, 3, F, H, W)` tensor in [-1, 1] or a sequence of videos."""
        return [self.predict(video) for video in videos]

    def _segment_distances(self, pixels: np.ndarray, squared_norms: np.ndarray, colours: np.ndarray) -> np.ndarray:
        """Distance `(N, K)` of each pixel `(N, 3)` (squared norms `(N,)`) to each colour's background shades
        ``s * colour``, s in ``background_shades``."""
        projection = pixels @ colours.T  # (N, K)
        norms = (colours**2).sum(1)  # (K,)
        shade = np.clip(projection / norms, *self.background_shades)  # (N, K)
        squared = squared_norms[:, None] - 2 * shade * projection + shade**2 * norms
        return np.sqrt(np.maximum(squared, 0.0))

    def _background_colour(self, pixels: np.ndarray, squared_norms: np.ndarray) -> int:
        """The palette index whose shade segment is the nearest one of the most of these pixels (the dark
        ends of the segments lie close together, so a pixel votes once, for its nearest)."""
        distance = self._segment_distances(pixels, squared_norms, PALETTE)  # (N, K)
        nearest = distance.argmin(1)  # (N,)
        votes = np.bincount(nearest[distance.min(1) < self.background_tolerance], minlength=len(PALETTE))
        return int(np.argmax(votes))

    def _object_labels(self, pixels: np.ndarray, squared_norms: np.ndarray, background: int) -> np.ndarray:
        """Each pixel's object colour `(N,)`: a palette index, or -1 for background and unclear pixels."""
        background_colour = PALETTE[background : background + 1]  # (1, 3)
        to_background = self._segment_distances(pixels, squared_norms, background_colour)[:, 0]  # (N,)
        others = np.array([index for index in range(len(PALETTE)) if index != background])
        # A pixel within half the separation of the background's shades from every other palette colour is
        # nearer the background than any of them (triangle inequality): skip those, exactly.
        separation = self._segment_distances(PALETTE[others], (PALETTE[others] ** 2).sum(1), background_colour).min()
        candidates = np.flatnonzero(to_background > separation / 2)  # (M,)
        chosen = pixels[candidates]  # (M, 3)
        squared = squared_norms[candidates, None] - 2 * chosen @ PALETTE[others].T + (PALETTE[others] ** 2).sum(1)
        distance = np.sqrt(np.maximum(squared, 0.0))  # (M, K - 1)
        nearest, nearest_distance = others[distance.argmin(1)], distance.min(1)
        is_object = (nearest_distance < self.object_tolerance) & (nearest_distance < to_background[candidates])
        labels = np.full(len(pixels), -1, dtype=np.int64)
        labels[candidates[is_object]] = nearest[is_object]
        return labels

    def _blob(self, mask: np.ndarray, frame: int) -> _Blob | None:
        """The mask's largest component when it is a plausible object, else None."""
        count, components, stats, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        if count < 2:
            return None
        component = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        left, top, width, height, area = (int(value) for value in stats[component])
        plausible = (self.min_area <= area / mask.size <= self.max_area
                     and area >= self.min_concentration * int(np.count_nonzero(mask))
                     and area >= self.min_fill_ratio * width * height
                     and max(width, height) <= self.max_aspect * min(width, height))
        if not plausible:
            return None
        x, y = centroids[component]
        crop = components[top : top + height, left : left + width] == component
        return _Blob(frame, area, crop, (float(x) / mask.shape[1], float(y) / mask.shape[0]))

    def _consistent(self, blobs: list[_Blob]) -> list[_Blob]:
        """The blobs whose area is within ``max_area_change`` of the median (a shape keeps its size)."""
        if not blobs:
            return blobs
        median = float(np.median([blob.area for blob in blobs]))
        return [blob for blob in blobs if median / self.max_area_change <= blob.area <= median * self.max_area_change]

    def _shape(self, blobs: list[_Blob]) -> tuple[str | None, float]:
        """The shape whose template fits the object best over the frames (mean IoU), and that IoU."""
        matches = np.array([shape_template_ious(blob.mask) for blob in blobs]).mean(0)  # (len(SHAPES),)
        best = int(np.argmax(matches))
        return (SHAPES[best] if matches[best] >= self.min_shape_match else None), float(matches[best])

    def _path(self, blobs: list[_Blob], num_frames: int) -> tuple[float, float] | None:
        """The object's displacement over the clip from a line fitted to its centroids; None when there are
        fewer than two or they stray from the line by more than ``max_path_deviation`` (RMS: not one object
        moving steadily, e.g. blobs of noise)."""
        if len(blobs) < 2:
            return None
        index = np.array([blob.frame for blob in blobs], dtype=np.float64)
        centres = np.array([blob.centre for blob in blobs])  # (n, 2) fractions of the frame
        (slope, intercept) = np.polyfit(index, centres, 1)  # (2,), (2,)
        deviation = centres - (index[:, None] * slope + intercept)  # (n, 2)
        if math.sqrt(float((deviation**2).sum(1).mean())) > self.max_path_deviation:
            return None
        return float(slope[0] * (num_frames - 1)), float(slope[1] * (num_frames - 1))

    def _motion(self, displacement: tuple[float, float] | None) -> str | None:
        if displacement is None:
            return None
        length = math.hypot(*displacement)
        if length < self.still_distance:
            return "still"
        best, best_cosine = None, math.cos(math.radians(self.max_angle_degrees))
        for name in WORLD_MOTIONS:
            (x0, y0), (x1, y1), _ = DIRECTIONS[name]
            direction = (x1 - x0, y1 - y0)
            if direction == (0.0, 0.0):
                continue
            cosine = (displacement[0] * direction[0] + displacement[1] * direction[1]) / (length * math.hypot(*direction))
            if cosine >= best_cosine:
                best, best_cosine = name, cosine
        return best


def shape_template_ious(mask: np.ndarray) -> tuple[float, ...]:
    """IoU of a `(h, w)` bool object mask with a circle, an axis-aligned square and an apex-up triangle (the
    order of ``SHAPES``) of the object's area, placed on its centroid (as the world draws them)."""
    margin = max(mask.shape) // 2 + 2  # room for templates that reach past the object's bounding box
    padded = np.pad(mask, margin)  # (h + 2m, w + 2m)
    yy, xx = np.nonzero(padded)
    area, cx, cy = len(xx), xx.mean(), yy.mean()
    grid_y, grid_x = np.mgrid[0 : padded.shape[0], 0 : padded.shape[1]].astype(np.float64)
    dx, dy = grid_x - cx, grid_y - cy
    half = math.sqrt(area / 2)  # the triangle's half-size: area = 2 * half**2; centroid half / 3 below centre
    templates = {
        "circle": dx**2 + dy**2 <= area / math.pi,
        "square": (np.abs(dx) <= math.sqrt(area) / 2) & (np.abs(dy) <= math.sqrt(area) / 2),
        "triangle": (np.abs(dy + half / 3) <= half) & (np.abs(dx) <= (dy + half / 3 + half) / 2),
    }
    return tuple(float((padded & templates[shape]).sum() / (padded | templates[shape]).sum()) for shape in SHAPES)


def predict(video: torch.Tensor | np.ndarray) -> Prediction:
    """``DemoWorldEvaluator().predict(video)``."""
    return DemoWorldEvaluator().predict(video)


def score(predictions: Sequence[Prediction], labels: Sequence[SceneLabels]) -> dict[str, float]:
    """Per-attribute accuracy (``colour``, ``shape``, ``motion``), ``all`` three right, and ``found``: the
    fraction of clips where an object was found. ``labels`` may be anything with ``colour``, ``shape`` and
    ``motion`` (``SceneLabels``, ``DemoPrompt``)."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    if not predictions:
        raise ValueError("nothing to score: no predictions")
    for label in labels:
        if None in (label.colour, label.shape, label.motion):
            raise ValueError(f"labels must name colour, shape and motion; got {label!r}")
    results = {}
    for attribute in ("colour", "shape", "motion"):
        results[attribute] = float(np.mean([getattr(prediction, attribute) == getattr(label, attribute)
                                            for prediction, label in zip(predictions, labels)]))
    results["all"] = float(np.mean([prediction.labels == SceneLabels(label.colour, label.shape, label.motion)
                                    for prediction, label in zip(predictions, labels)]))
    results["found"] = float(np.mean([prediction.found for prediction in predictions]))
    return results
