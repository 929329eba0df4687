"""What flows through the curation pipeline: clips of source videos, and rejections with reasons.

A work item is one source file. The ``probe`` stage turns it into one clip spanning the whole source;
``scenes`` splits a clip into shots; every other stage maps a clip to itself (with a crop, a score or
a caption added) or rejects it. Every input ends as clips or as rejections: nothing is lost silently.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ltx.data.schema import CropBox
from ltx.data.video_io import VideoInfo


@dataclass(frozen=True)
class Rejection:
    """An input or clip that does not go into the shards, the stage that decided it, and why."""

    item: str  # the source path, or the clip key
    stage: str
    reason: str  # a short stable name, e.g. "too_static", "unreadable"
    detail: str = ""
    source: str = ""  # the input file it came from (the runner fills it in)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Clip:
    """Frames ``[start_frame, end_frame)`` of ``source``; stages fill in the optional fields."""

    source: str  # path of the source file
    info: VideoInfo | None = None  # set by the probe stage
    start_frame: int = 0
    end_frame: int = 0  # exclusive
    crop: CropBox | None = None  # in source pixels; None = the whole frame
    motion_score: float | None = None
    aesthetic_score: float | None = None
    caption: str | None = None
    caption_source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame

    @property
    def key(self) -> str:
        """A shard key: the source's stem (letters, digits, '_' and '-') and the start frame."""
        stem = "".join(c if c.isalnum() or c in "_-" else "_" for c in Path(self.source).stem)
        return f"{stem}_{self.start_frame:06d}"

    def replace(self, **changes: Any) -> Clip:
        return dataclasses.replace(self, **changes)


StageOutput = list[Clip | Rejection]
