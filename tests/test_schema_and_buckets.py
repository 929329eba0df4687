"""Shard metadata schema and resolution buckets."""

from __future__ import annotations

import random

import pytest
from helpers import clip_metadata

from ltx.data.buckets import (
    Bucket,
    check_video_shape,
    choose_bucket,
    fitting_buckets,
    frames_available,
    parse_buckets,
)
from ltx.data.schema import REQUIRED_FIELDS, ClipMetadata, SchemaError


def test_metadata_round_trips_and_keeps_extra_fields():
    meta = clip_metadata(33, 64, 96, motion_score=0.2)
    data = {**meta.to_dict(), "scene_index": 3}
    again = ClipMetadata.from_dict(data)
    assert again.extra == {"scene_index": 3} and again.to_dict() == data
    assert again.duration_seconds == pytest.approx(33 / 24)


@pytest.mark.parametrize("missing", REQUIRED_FIELDS)
def test_missing_field_is_named(missing):
    data = clip_metadata(9, 64, 64).to_dict()
    del data[missing]
    with pytest.raises(SchemaError, match=rf"lacks required field\(s\) \['{missing}'\]"):
        ClipMetadata.from_dict(data)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("fps", 0, "fps must be a positive number"),
        ("fps", None, "fps may be null only for images"),
        ("num_frames", 0, "num_frames must be an integer >= 1"),
        ("end_frame", 0, "end_frame must be an integer >= 1"),
        ("crop", {"x": 0, "y": 0, "w": 1.5, "h": 2}, "crop must be an object with integer"),
        ("aesthetic_score", float("nan"), "aesthetic_score must be a finite number or null"),
        ("source", "", "source must be a non-empty string"),
        ("width", True, "width must be an integer"),
    ],
)
def test_invalid_values_are_explained(field, value, message):
    data = clip_metadata(9, 64, 64).to_dict()
    data[field] = value
    with pytest.raises(SchemaError, match=message):
        ClipMetadata.from_dict(data)


def test_bad_json_is_a_schema_error():
    with pytest.raises(SchemaError, match="not valid JSON"):
        ClipMetadata.from_json(b"{not json")


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((16, 64, 64), r"frames must be of the form 8k\+1"),
        ((0, 64, 64), r"frames must be of the form 8k\+1"),
        ((9, 100, 64), "height must be a positive multiple of 32"),
        ((9, 64, 48), "width must be a positive multiple of 32"),
    ],
)
def test_shape_rule_violations_name_the_rule(shape, message):
    with pytest.raises(ValueError, match=message):
        check_video_shape(*shape)
    with pytest.raises(ValueError, match=message):
        parse_buckets([list(shape)])


def test_bucket_tokens_follow_the_vae_compression():
    bucket = Bucket(121, 512, 768)
    assert bucket.latent_shape == (16, 16, 24) and bucket.num_tokens == 6144
    assert Bucket(1, 64, 64).is_image and Bucket(1, 64, 64).num_tokens == 4


def test_parse_buckets_dedupes_and_rejects_empty():
    assert parse_buckets([[9, 64, 64], [9.0, 64, 64]]) == [Bucket(9, 64, 64)]
    with pytest.raises(ValueError, match="at least one bucket"):
        parse_buckets([])
    with pytest.raises(ValueError, match=r"a bucket is \[frames, height, width\]"):
        parse_buckets([[9, 64]])


def test_frames_available_never_upsamples_time():
    assert frames_available(90, 30.0, 24.0) == (72, 1.25)  # 30 fps read at 24 fps
    assert frames_available(48, 12.0, 24.0) == (48, 1.0)  # slower than target: every frame


def test_fitting_and_choice_respect_media_duration_and_aspect():
    buckets = parse_buckets([[1, 64, 96], [9, 64, 96], [17, 64, 64], [33, 64, 96]])
    assert fitting_buckets(buckets, 1, None, 24) == [Bucket(1, 64, 96)]
    assert fitting_buckets(buckets, 20, 24.0, 24) == [Bucket(9, 64, 96), Bucket(17, 64, 64)]
    assert fitting_buckets(buckets, 5, 24.0, 24) == []
    rng = random.Random(0)
    # a 3:2 clip never lands in the square bucket when 3:2 buckets fit; both 3:2 lengths get used
    chosen = {choose_bucket(fitting_buckets(buckets, 40, 24.0, 24), 96, 64, rng, 0.05) for _ in range(50)}
    assert chosen == {Bucket(9, 64, 96), Bucket(33, 64, 96)}
    assert choose_bucket([], 96, 64, rng) is None
