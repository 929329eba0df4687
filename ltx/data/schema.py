"""The shard sample schema: one WebDataset sample per clip or image (see data_pipeline/README.md)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

VIDEO_EXTENSION = "mp4"
IMAGE_EXTENSION = "png"
MEDIA_EXTENSIONS = (VIDEO_EXTENSION, IMAGE_EXTENSION)
# IC-LoRA pairs: ``{key}.reference.mp4`` beside ``{key}.mp4`` holds the reference clip (same frame count, fps and
# size as the target); the training batch then carries ``reference_video`` cropped exactly like ``video``.
REFERENCE_EXTENSION = "reference.mp4"
REQUIRED_FIELDS = (
    "source", "start_frame", "end_frame", "fps", "num_frames", "width", "height", "crop",
    "motion_score", "aesthetic_score", "caption_source",
)


class SchemaError(ValueError):
    """Sample metadata that does not follow the shard schema."""


@dataclass(frozen=True)
class CropBox:
    """A crop in source pixels: top-left corner (x, y), width w and height h."""

    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class ClipMetadata:
    """The ``{key}.json`` of a shard sample.

    ``start_frame``/``end_frame`` index the source video, end exclusive; ``width``/``height``/``fps``/
    ``num_frames`` describe the media stored in the sample (after crop and resize). Scores are ``None``
    when the stage that computes them did not run. Images have ``num_frames == 1`` and may have no fps.
    Extra keys written by pipeline stages are kept in ``extra``.
    """

    source: str
    start_frame: int
    end_frame: int
    fps: float | None
    num_frames: int
    width: int
    height: int
    crop: CropBox
    motion_score: float | None
    aesthetic_score: float | None
    caption_source: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_image(self) -> bool:
        return self.num_frames == 1

    @property
    def duration_seconds(self) -> float:
        return 0.0 if self.is_image or not self.fps else self.num_frames / self.fps

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClipMetadata:
        """Validate and convert a decoded ``{key}.json``; raises SchemaError naming every problem."""
        if not isinstance(data, dict):
            raise SchemaError(f"sample metadata must be a JSON object, got {type(data).__name__}")
        missing = [name for name in REQUIRED_FIELDS if name not in data]
        if missing:
            raise SchemaError(f"sample metadata lacks required field(s) {missing}; the schema needs {list(REQUIRED_FIELDS)}")
        problems: list[str] = []
        num_frames = _integer(data, "num_frames", problems, minimum=1)
        for name in ("width", "height"):
            _integer(data, name, problems, minimum=1)
        start = _integer(data, "start_frame", problems, minimum=0)
        end = _integer(data, "end_frame", problems, minimum=1)
        if isinstance(start, int) and isinstance(end, int) and end <= start:
            problems.append(f"end_frame ({end}) must be greater than start_frame ({start})")
        fps = data["fps"]
        if fps is None:
            if num_frames != 1:
                problems.append("fps may be null only for images (num_frames == 1)")
        elif not _is_number(fps) or not fps > 0:
            problems.append(f"fps must be a positive number, got {fps!r}")
        crop = data["crop"]
        if not isinstance(crop, dict) or any(not isinstance(crop.get(k), int) for k in "xywh"):
            problems.append(f"crop must be an object with integer x, y, w, h, got {crop!r}")
        for name in ("motion_score", "aesthetic_score"):
            score = data[name]
            if score is not None and (not _is_number(score) or not math.isfinite(score)):
                problems.append(f"{name} must be a finite number or null, got {score!r}")
        if not isinstance(data["source"], str) or not data["source"]:
            problems.append("source must be a non-empty string")
        if not isinstance(data["caption_source"], str):
            problems.append("caption_source must be a string")
        if problems:
            raise SchemaError("invalid sample metadata: " + "; ".join(problems))
        extra = {key: value for key, value in data.items() if key not in REQUIRED_FIELDS}
        return cls(
            source=data["source"], start_frame=start, end_frame=end,
            fps=None if fps is None else float(fps), num_frames=num_frames,
            width=data["width"], height=data["height"], crop=CropBox(**{k: crop[k] for k in "xywh"}),
            motion_score=_optional_float(data["motion_score"]),
            aesthetic_score=_optional_float(data["aesthetic_score"]),
            caption_source=data["caption_source"], extra=extra,
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> ClipMetadata:
        try:
            return cls.from_dict(json.loads(raw))
        except json.JSONDecodeError as error:
            raise SchemaError(f"sample metadata is not valid JSON: {error}") from error

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        return {**data, **extra}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer(data: dict[str, Any], name: str, problems: list[str], minimum: int) -> int | None:
    value = data[name]
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        problems.append(f"{name} must be an integer >= {minimum}, got {value!r}")
        return None
    return value


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
