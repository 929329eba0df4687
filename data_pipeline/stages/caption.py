"""Recaptioning: a registered captioner writes each clip's caption; clips already captioned are skipped."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from data_pipeline.captioners import DEFAULT_PREFIXES, NoCaption, strip_boilerplate
from data_pipeline.clips import Clip, Rejection
from data_pipeline.frames import clip_crop, evenly_spaced, read_frames
from ltx.data.video_io import VideoDecodeError
from ltx.registry import CAPTIONERS, CURATION_STAGES

log = logging.getLogger(__name__)
NO_FRAMES = np.zeros((0, 0, 0, 3), dtype=np.uint8)  # what captioners with needs_frames = False receive


@CURATION_STAGES.register("caption")
class CaptionStage:
    """Sets ``caption`` and ``caption_source`` (the captioner's name) with a captioner from CAPTIONERS.

    Args:
        captioner: a CAPTIONERS name ("sidecar", "coca", "vlm", or a plugin's).
        captioner_kwargs: the captioner's config; it is built here, so a bad config fails at once.
        num_frames: frames read, evenly spaced over the clip and cropped to its crop.
        max_side: frames are shrunk so their longer side is at most this (None: source size).
        prefixes: boilerplate stripped from the start of captions (see ``strip_boilerplate``).

    Resumable: a clip whose ``caption`` is already set (non-blank) passes through unchanged, so a rerun
    only captions what is missing. Rejections: ``no_caption`` (the captioner has none, e.g. no sidecar),
    ``unreadable`` (frames cannot be decoded), ``no_frames`` (an empty frame range, for captioners that
    read frames), ``empty_caption`` (nothing left after stripping),
    ``caption_failed`` (the captioner raised on this clip; logged with the error).
    """

    name = "caption"

    def __init__(self, captioner: str = "sidecar", captioner_kwargs: Mapping[str, Any] | None = None,
                 num_frames: int = 4, max_side: int | None = 768, prefixes: Sequence[str] | None = None):
        if num_frames < 1:
            raise ValueError(f"caption stage: num_frames must be positive, got {num_frames}")
        if max_side is not None and max_side < 1:
            raise ValueError(f"caption stage: max_side must be positive or None, got {max_side}")
        self.captioner = CAPTIONERS.build(captioner, **dict(captioner_kwargs or {}))
        self.source_name = str(getattr(self.captioner, "name", captioner))
        self.num_frames = int(num_frames)
        self.max_side = max_side
        self.prefixes = tuple(DEFAULT_PREFIXES if prefixes is None else prefixes)

    def __call__(self, clip: Clip) -> list[Clip | Rejection]:
        if clip.caption is not None and clip.caption.strip():
            return [clip]
        load = getattr(self.captioner, "load", None)
        if callable(load):
            load()  # outside the per-clip handling: a model that cannot load is a configuration error
        needs_frames = getattr(self.captioner, "needs_frames", True)
        if needs_frames and clip.num_frames <= 0:
            return [Rejection(clip.key, self.name, "no_frames", f"frames [{clip.start_frame}, {clip.end_frame})")]
        try:
            frames = self.read(clip) if needs_frames else NO_FRAMES
        except (VideoDecodeError, OSError) as error:
            return [Rejection(clip.key, self.name, "unreadable", str(error))]
        try:
            text = self.captioner.caption(clip, frames)
        except NoCaption as error:
            return [Rejection(clip.key, self.name, "no_caption", str(error))]
        except Exception as error:  # one clip's failure must not stop the run; the reason is counted
            log.warning("captioner %s failed on %s: %s: %s", self.source_name, clip.key, type(error).__name__, error)
            return [Rejection(clip.key, self.name, "caption_failed", f"{type(error).__name__}: {error}")]
        caption = strip_boilerplate(text, self.prefixes)
        if not caption:
            return [Rejection(clip.key, self.name, "empty_caption", f"captioner {self.source_name} gave {text!r}")]
        return [clip.replace(caption=caption, caption_source=self.source_name)]

    def read(self, clip: Clip) -> np.ndarray:
        """``num_frames`` frames evenly spaced over the clip, cropped: ``(N, H, W, 3) uint8``."""
        return read_frames(clip.source, evenly_spaced(clip, self.num_frames), crop=clip_crop(clip),
                           max_side=self.max_side)
