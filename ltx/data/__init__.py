"""Training data: the shard schema, resolution buckets, PyAV decoding and the WebDataset data module.

``VideoDataModule`` (which imports Lightning) is loaded on first access so that light users of the
schema, such as the curation pipeline, start fast.
"""

from typing import Any

from ltx.data.buckets import Bucket, check_video_shape, parse_buckets
from ltx.data.schema import ClipMetadata, CropBox, SchemaError

__all__ = [
    "Bucket", "ClipMetadata", "CropBox", "SchemaError", "VideoDataModule", "check_video_shape",
    "expand_shards", "parse_buckets",
]


def __getattr__(name: str) -> Any:
    if name in ("VideoDataModule", "expand_shards"):
        from ltx.data import datamodule

        return getattr(datamodule, name)
    raise AttributeError(f"module 'ltx.data' has no attribute {name!r}")
