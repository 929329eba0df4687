"""The shard writer: atomic tars, the stats done-marker, and key / schema checks."""

from __future__ import annotations

import json
import tarfile

import pytest
from helpers import clip_metadata, video_sample

from ltx.data.shards import ShardSample, is_complete, stats_path, write_shard, write_shards


def test_write_shards_splits_by_count_and_marks_done(tmp_path):
    samples = [video_sample(f"k{i}", num_frames=9, seed=i) for i in range(5)]
    stats = write_shards(samples, tmp_path, samples_per_shard=2, prefix="train")
    assert [s.shard for s in stats] == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    assert [s.num_samples for s in stats] == [2, 2, 1]
    for shard in stats:
        path = tmp_path / shard.shard
        assert is_complete(path)
        assert json.loads(stats_path(path).read_text())["keys"] == shard.keys
        with tarfile.open(path) as tar:
            names = tar.getnames()
        assert sorted(names) == sorted(f"{k}.{e}" for k in shard.keys for e in ("mp4", "txt", "json"))
    assert not list(tmp_path.glob("*.tmp"))


def test_failed_write_leaves_no_shard_and_no_marker(tmp_path):
    good = video_sample("good", num_frames=9)
    bad = ShardSample("bad.key", good.media, "mp4", "caption", clip_metadata(9, 64, 64))
    path = tmp_path / "x-000000.tar"
    with pytest.raises(ValueError, match="no dots"):
        write_shard(path, [good, bad])
    assert not path.exists() and not is_complete(path)
    assert not list(tmp_path.iterdir())  # the temporary tar is removed too


def test_unknown_media_extension_is_refused(tmp_path):
    sample = video_sample("clip", num_frames=9)
    sample.extension = "avi"
    with pytest.raises(ValueError, match=r"media must be \.mp4 or \.png"):
        write_shard(tmp_path / "y-000000.tar", [sample])
