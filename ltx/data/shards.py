"""Writing WebDataset shards: tar written under a temporary name, renamed when closed, then a per-shard
stats JSON written last as the done-marker (a shard without one is incomplete). Samples are media
samples of the shard schema (``ShardSample``) or anything with ``key``, ``check()`` and ``record()``
(e.g. precomputed latents)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import webdataset as wds

from ltx.data.schema import IMAGE_EXTENSION, REFERENCE_EXTENSION, VIDEO_EXTENSION, ClipMetadata

KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")  # webdataset splits keys at the first dot


@dataclass
class ShardSample:
    """One sample to write: ``media`` is mp4 bytes (``extension='mp4'``) or png bytes; ``reference``: the mp4 of
    an IC-LoRA reference clip (same frames, fps and size), written as ``{key}.reference.mp4``."""

    key: str
    media: bytes
    extension: str
    caption: str
    metadata: ClipMetadata
    reference: bytes | None = None

    def check(self) -> None:
        if not KEY_PATTERN.match(self.key):
            raise ValueError(f"sample key {self.key!r} may hold only letters, digits, '_' and '-' (no dots)")
        if self.extension not in (VIDEO_EXTENSION, IMAGE_EXTENSION):
            raise ValueError(f"sample {self.key}: media must be .{VIDEO_EXTENSION} or .{IMAGE_EXTENSION}, got .{self.extension}")
        ClipMetadata.from_dict(self.metadata.to_dict())  # re-validate what will be written
        if self.reference is not None and self.extension != VIDEO_EXTENSION:
            raise ValueError(f"sample {self.key}: only a video (.{VIDEO_EXTENSION}) can have a reference clip")

    def record(self) -> dict[str, str | bytes]:
        """The tar members of this sample, by extension."""
        record = {self.extension: self.media, "txt": self.caption, "json": self.metadata.to_json()}
        if self.reference is not None:
            record[REFERENCE_EXTENSION] = self.reference
        return record


@dataclass
class ShardStats:
    """The done-marker of one shard."""

    shard: str
    num_samples: int = 0
    num_bytes: int = 0
    keys: list[str] = field(default_factory=list)


def stats_path(shard_path: Path) -> Path:
    return shard_path.with_suffix(".stats.json")


def is_complete(shard_path: Path) -> bool:
    """A shard is complete when its tar exists and its stats JSON (written last) does."""
    return shard_path.exists() and stats_path(shard_path).exists()


def write_shard(path: Path, samples: Iterable[ShardSample], extra_stats: dict | None = None) -> ShardStats:
    """Write ``samples`` (``ShardSample`` or any sample with ``key``, ``check()``, ``record()``) into the tar
    ``path`` atomically and write its stats JSON after it, with ``extra_stats`` merged in."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    stats = ShardStats(shard=path.name)
    try:
        with wds.TarWriter(str(temporary)) as writer:
            for sample in samples:
                sample.check()
                record = sample.record()
                writer.write({"__key__": sample.key, **record})
                stats.num_samples += 1
                stats.num_bytes += sum(len(value) for value in record.values())
                stats.keys.append(sample.key)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)
    stats_file = stats_path(path)
    stats_file.with_name(stats_file.name + ".tmp").write_text(json.dumps({**stats.__dict__, **(extra_stats or {})}, indent=2))
    os.replace(stats_file.with_name(stats_file.name + ".tmp"), stats_file)
    return stats


def write_shards(samples: Iterable[ShardSample], directory: Path, samples_per_shard: int, prefix: str = "shard",
                 extra_stats: dict | None = None) -> list[ShardStats]:
    """Write ``samples`` in order into ``{prefix}-{index:06d}.tar`` shards of ``samples_per_shard``, with
    ``extra_stats`` merged into every shard's stats JSON."""
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
    written: list[ShardStats] = []
    batch: list[ShardSample] = []
    for sample in samples:
        batch.append(sample)
        if len(batch) == samples_per_shard:
            written.append(write_shard(Path(directory) / f"{prefix}-{len(written):06d}.tar", batch, extra_stats))
            batch = []
    if batch:
        written.append(write_shard(Path(directory) / f"{prefix}-{len(written):06d}.tar", batch, extra_stats))
    return written
