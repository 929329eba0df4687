"""WebDataset pipeline stages: metadata checks and filters, bucket assignment, decode, bucket batching.

Rejected samples are not dropped silently: each stage turns them into a ``Skip`` item that flows on to
the batcher, which counts them by reason and attaches the counts to the next batch it emits (so counts
made inside DataLoader worker processes reach the main process).
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from webdataset.utils import pytorch_worker_info

from ltx.data.buckets import Bucket, choose_bucket, fitting_buckets
from ltx.data.schema import IMAGE_EXTENSION, REFERENCE_EXTENSION, VIDEO_EXTENSION, ClipMetadata, SchemaError
from ltx.data.transforms import effective_fps, resize_and_crop, window_indices
from ltx.data.video_io import VideoDecodeError, decode_frames, decode_png

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Skip:
    """A sample that was not used, and why. ``reason`` is a short stable counter name."""

    reason: str
    key: str = ""
    url: str = ""
    detail: str = ""


@dataclass(frozen=True)
class MetadataFilter:
    """Load-time thresholds on shard metadata; ``None`` disables a bound.

    A sample whose score is null (its stage did not run) passes when ``keep_unscored`` is true and is
    rejected as ``unscored_<name>`` otherwise, whenever a bound on that score is set.
    """

    min_aesthetic_score: float | None = None
    min_motion_score: float | None = None
    max_motion_score: float | None = None
    min_duration_seconds: float | None = None
    keep_unscored: bool = True

    def rejection(self, meta: ClipMetadata) -> str | None:
        """The counter name of the first failed bound, or None when the sample passes."""
        bounds = (
            ("aesthetic_score", meta.aesthetic_score, self.min_aesthetic_score, None),
            ("motion_score", meta.motion_score, self.min_motion_score, self.max_motion_score),
        )
        for name, score, low, high in bounds:
            if low is None and high is None:
                continue
            if score is None:
                if not self.keep_unscored:
                    return f"unscored_{name}"
                continue
            if low is not None and score < low:
                return f"below_min_{name}"
            if high is not None and score > high:
                return f"above_max_{name}"
        if self.min_duration_seconds is not None and not meta.is_image:
            if meta.duration_seconds < self.min_duration_seconds:
                return "below_min_duration"
        return None


class _EpochSeeded:
    """A stage with a per-(seed, epoch, rank, worker) random generator; the loader sets ``epoch``."""

    def __init__(self, seed: int, rank: int):
        self.seed, self.rank, self.epoch = seed, rank, 0

    def make_rng(self) -> random.Random:
        _, _, worker, _ = pytorch_worker_info()
        # a str seed is hashed with SHA-512 by random.seed: the same in every process (hash() is not)
        return random.Random(f"{self.seed}/{self.epoch}/{self.rank}/{worker}/{type(self).__name__}")


class AssignBuckets(_EpochSeeded):
    """Parse ``{key}.json``, check the schema, apply filters, and pick a bucket, all without decoding."""

    def __init__(self, buckets: Sequence[Bucket], target_fps: float, metadata_filter: MetadataFilter,
                 aspect_tolerance: float, seed: int, rank: int):
        super().__init__(seed, rank)
        self.buckets, self.target_fps = list(buckets), target_fps
        self.metadata_filter, self.aspect_tolerance = metadata_filter, aspect_tolerance

    def __call__(self, samples: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any] | Skip]:
        rng = self.make_rng()
        for sample in samples:
            if isinstance(sample, Skip):
                yield sample
                continue
            key, url = sample.get("__key__", ""), sample.get("__url__", "")
            try:
                meta = ClipMetadata.from_json(sample["json"])
            except KeyError:
                yield skip_with_warning("missing_metadata", key, url, "sample has no .json")
                continue
            except SchemaError as error:
                yield skip_with_warning("invalid_metadata", key, url, str(error))
                continue
            media = VIDEO_EXTENSION if VIDEO_EXTENSION in sample else IMAGE_EXTENSION if IMAGE_EXTENSION in sample else None
            if media is None:
                yield skip_with_warning("missing_media", key, url, f"sample has neither .{VIDEO_EXTENSION} nor .{IMAGE_EXTENSION}")
                continue
            if "txt" not in sample:
                yield skip_with_warning("missing_caption", key, url, "sample has no .txt")
                continue
            rejection = self.metadata_filter.rejection(meta)
            if rejection is not None:
                yield Skip(rejection, key, url)
                continue
            num_frames = 1 if media == IMAGE_EXTENSION else meta.num_frames
            candidates = fitting_buckets(self.buckets, num_frames, meta.fps, self.target_fps)
            bucket = choose_bucket(candidates, meta.width, meta.height, rng, self.aspect_tolerance)
            if bucket is None:
                yield Skip("no_fitting_bucket", key, url, f"{num_frames} frames at {meta.fps} fps")
                continue
            yield {"key": key, "url": url, "meta": meta, "media": media, "data": sample[media],
                   "caption": sample["txt"], "bucket": bucket, "reference": sample.get(REFERENCE_EXTENSION)}


class DecodeSamples(_EpochSeeded):
    """Decode a random window of the bucket's length at the target fps, resize and crop to the bucket.

    ``cache_mb > 0`` keeps every decoded clip (all its frames, uint8 at the stored size) in memory up to
    that many MiB, keyed by (shard url, sample key): a small dataset read for many epochs (the demo world)
    is then decoded once instead of once per use, and windows and crops are still drawn per use. Clips
    that no longer fit are decoded per use, as without a cache. The cache lives in this stage's process:
    with ``num_workers > 0`` each worker keeps its own, for as long as the worker lives.
    """

    def __init__(self, target_fps: float, random_crop: bool, seed: int, rank: int, cache_mb: float = 0.0,
                 reference_downscale: int = 1):
        super().__init__(seed, rank)
        self.target_fps, self.random_crop, self.reference_downscale = target_fps, random_crop, reference_downscale
        self.cache_bytes = int(cache_mb * 2**20)
        self.cache: dict[tuple[str, str], np.ndarray] = {}  # (url, key) -> (N, h, w, 3) uint8
        self.cached_bytes, self.cache_full = 0, False

    def __call__(self, samples: Iterable[dict[str, Any] | Skip]) -> Iterator[dict[str, Any] | Skip]:
        rng = self.make_rng()
        for sample in samples:
            if isinstance(sample, Skip):
                yield sample
                continue
            try:
                yield self._decode(sample, rng)
            except (VideoDecodeError, ValueError, UnicodeDecodeError) as error:
                yield skip_with_warning("decode_error", sample["key"], sample["url"], f"{type(error).__name__}: {error}")

    def _frames(self, sample: dict[str, Any], indices: Sequence[int] | None) -> np.ndarray:
        """The frames at ``indices`` (None: the image) as ``(F, h, w, 3)`` uint8, from the cache if it can."""
        cache_key = (str(sample["url"]), str(sample["key"]))
        clip = self.cache.get(cache_key)
        if clip is None and self.cache_bytes and not self.cache_full:
            clip = decode_png(sample["data"])[None] if indices is None else decode_frames(
                sample["data"], range(sample["meta"].num_frames))  # (N, h, w, 3): every frame, once
            self._remember(cache_key, clip)
        if clip is None:
            return decode_png(sample["data"])[None] if indices is None else decode_frames(sample["data"], indices)
        return clip if indices is None else clip[list(indices)]

    def _remember(self, cache_key: tuple[str, str], clip: np.ndarray) -> None:
        if self.cached_bytes + clip.nbytes <= self.cache_bytes:
            self.cache[cache_key] = clip
            self.cached_bytes += clip.nbytes
            return
        self.cache_full = True
        log.info("decoded-clip cache full (%d clips, %.0f MiB of data.decode_cache_mb=%.0f): further clips are "
                 "decoded per use", len(self.cache), self.cached_bytes / 2**20, self.cache_bytes / 2**20)

    def _decode(self, sample: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        meta, bucket = sample["meta"], sample["bucket"]
        if sample["media"] == IMAGE_EXTENSION:
            frames = self._frames(sample, None)  # (1, h, w, 3)
            fps = self.target_fps
        else:
            indices = window_indices(meta.num_frames, meta.fps, self.target_fps, bucket.frames, rng)
            frames = self._frames(sample, indices)  # (F, h, w, 3)
            fps = effective_fps(meta.fps, self.target_fps)
        crop_state = rng.getstate()  # a reference clip is cropped with the same draws
        video = resize_and_crop(frames, bucket, rng if self.random_crop else None)  # (3, F, H, W)
        caption = sample["caption"]
        caption = caption.decode("utf-8") if isinstance(caption, bytes) else caption
        decoded = {"key": sample["key"], "url": sample["url"], "bucket": bucket, "video": video,
                   "caption": caption.strip(), "fps": fps, "metadata": meta.to_dict()}
        if sample.get("reference") is not None:
            decoded["reference_video"] = self._reference(sample, indices if sample["media"] != IMAGE_EXTENSION else None,
                                                         crop_state, video.shape)
        return decoded

    def _reference(self, sample: dict[str, Any], indices: Sequence[int] | None, crop_state: Any,
                   shape: torch.Size) -> torch.Tensor:
        """The reference clip at the target's frame indices, resized and cropped with the target's draws, then
        downscaled by ``reference_downscale``: `(3, F, H/s, W/s)`."""
        if indices is None:
            raise ValueError("an image sample cannot have a reference clip")
        frames = decode_frames(sample["reference"], indices)  # (F, h, w, 3)
        replay = random.Random()
        replay.setstate(crop_state)
        reference = resize_and_crop(frames, sample["bucket"], replay if self.random_crop else None)  # (3, F, H, W)
        if reference.shape != shape:
            raise ValueError(f"reference clip decodes to {tuple(reference.shape)}, the clip to {tuple(shape)}")
        if self.reference_downscale > 1:
            reference = torch.nn.functional.avg_pool2d(reference, self.reference_downscale)  # (3, F, H/s, W/s)
        return reference


class BatchByBucket:
    """Group decoded samples into batches of one bucket each; count skips and attach the counts.

    A batch is emitted when its bucket holds ``batch_size`` samples; at the end of the stream partial
    batches are emitted unless ``drop_last``. When skips remain uncounted at the end, a batch with
    ``stats_only=True`` carries them (the loader consumes it). Raises RuntimeError after
    ``max_consecutive_failures`` unusable samples (decode or metadata errors) in a row, or
    ``max_consecutive_skips`` skipped samples of any kind in a row (filters, no fitting bucket): a
    resampled dataset that never yields a batch must fail with the reasons, not spin forever.
    """

    FILTER_PREFIXES = ("below_", "above_", "unscored_", "no_fitting_bucket")

    def __init__(self, batch_size: int, drop_last: bool, max_consecutive_failures: int, max_consecutive_skips: int = 10_000):
        self.batch_size, self.drop_last = batch_size, drop_last
        self.max_consecutive_failures, self.max_consecutive_skips = max_consecutive_failures, max_consecutive_skips

    def __call__(self, samples: Iterable[dict[str, Any] | Skip]) -> Iterator[dict[str, Any]]:
        pending: dict[Bucket, list[dict[str, Any]]] = {}
        skipped: Counter[str] = Counter()
        failures_in_a_row = skips_in_a_row = 0
        recent: Counter[str] = Counter()
        for sample in samples:
            if isinstance(sample, Skip):
                skipped[sample.reason] += 1
                recent[sample.reason] += 1
                skips_in_a_row += 1
                failures_in_a_row += not sample.reason.startswith(self.FILTER_PREFIXES)
                if failures_in_a_row >= self.max_consecutive_failures:
                    raise RuntimeError(
                        f"{failures_in_a_row} samples in a row could not be used (last: {sample.reason} "
                        f"{sample.key!r} in {sample.url}: {sample.detail}); check the shards"
                    )
                if skips_in_a_row >= self.max_consecutive_skips:
                    raise RuntimeError(
                        f"{skips_in_a_row} samples in a row were skipped ({dict(recent)}) and no batch was made; "
                        f"loosen data.filters or add buckets that fit these clips"
                    )
                continue
            failures_in_a_row = skips_in_a_row = 0
            recent.clear()
            group = pending.setdefault(sample["bucket"], [])
            group.append(sample)
            if len(group) == self.batch_size:
                yield collate(pending.pop(sample["bucket"]), skipped)
                skipped = Counter()
        for group in pending.values():
            if not self.drop_last:
                yield collate(group, skipped)
                skipped = Counter()
        if skipped:
            yield {"stats_only": True, "stats": dict(skipped)}


def collate(samples: list[dict[str, Any]], skipped: Counter[str]) -> dict[str, Any]:
    """Stack samples of one bucket: tensors stacked (video `(B, 3, F, H, W)`, latents ...), fps `(B,)`,
    lists for the rest, the bucket as a tuple."""
    batch: dict[str, Any] = {}
    with_reference = {("reference_video" in sample) for sample in samples}
    if len(with_reference) > 1:
        raise ValueError(f"batch of {[sample['key'] for sample in samples]} mixes clips with and without a reference "
                         f"clip ({REFERENCE_EXTENSION}): give every clip of a training set a reference, or none")
    for name, first in samples[0].items():
        if name == "bucket":
            continue
        values = [sample[name] for sample in samples]
        if isinstance(first, torch.Tensor):
            batch[name] = torch.stack(values)  # (B, ...)
        elif name == "fps":
            batch[name] = torch.tensor(values, dtype=torch.float32)  # (B,)
        else:
            batch[name] = values
    bucket = samples[0]["bucket"]
    batch["bucket"] = bucket.as_tuple() if isinstance(bucket, Bucket) else tuple(bucket)
    batch["stats"] = dict(skipped)
    return batch


def skip_with_warning(reason: str, key: str, url: str, detail: str) -> Skip:
    log.warning("skipping sample %r in %s (%s): %s", key, url, reason, detail)
    return Skip(reason, key, url, detail)
