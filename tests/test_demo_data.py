"""The embedded demo data: what it contains, that it is deterministic, and that its shards follow the schema."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
from helpers import assert_same_picture

from data_pipeline.demo import SHAPES, VALIDATION_SOURCES, demo_sources, render_source, write_source
from data_pipeline.demo_world import (
    MANIFEST_NAME,
    WorldSettings,
    world_training_clips,
    world_validation_clips,
)
from ltx.data.schema import ClipMetadata
from ltx.data.video_io import decode_frames, probe_video


def truth(demo_dir, name: str) -> dict:
    return json.loads((demo_dir / "sources" / f"{name}.truth.json").read_text())


def test_sources_cover_every_case_curation_must_handle(demo_dir):
    specs = demo_sources()
    kinds = {spec.kind for spec in specs}
    assert {"single_shot", "scene_cuts", "letterbox", "pillarbox", "static", "image"} <= kinds
    assert {scene.shape for spec in specs for scene in spec.scenes} == set(SHAPES)
    assert len({scene.colour for spec in specs for scene in spec.scenes}) >= 6
    for spec in specs:
        extension = "png" if spec.kind == "image" else "mp4"
        assert (demo_dir / "sources" / f"{spec.name}.{extension}").exists()
        assert (demo_dir / "sources" / f"{spec.name}.txt").read_text().strip() == spec.caption
        if spec.kind != "image":
            info = probe_video((demo_dir / "sources" / f"{spec.name}.mp4").read_bytes())
            assert (info.num_frames, info.width, info.height, info.codec) == (spec.num_frames, spec.width, spec.height, "h264")
            assert info.fps == pytest.approx(spec.fps)


def test_captions_state_shape_colour_direction_and_background():
    spec = next(s for s in demo_sources() if s.name == "red_circle_stripes")
    assert spec.caption == "a red circle moves from left to right over a blue striped background"
    assert "an orange triangle" in next(s for s in demo_sources() if s.name == "orange_triangle_30fps").caption


def mean_abs_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def test_scene_cuts_are_hard_cuts_at_the_stated_frames(demo_dir):
    info = truth(demo_dir, "three_scene_cuts")
    data = (demo_dir / "sources" / "three_scene_cuts.mp4").read_bytes()
    boundaries = [scene["end_frame"] for scene in info["scenes"][:-1]]
    assert boundaries == [41, 82]
    for cut in boundaries:
        before, after, inside = decode_frames(data, [cut - 2, cut - 1, cut])[[1, 2, 0]]
        assert mean_abs_difference(before, after) > 5 * mean_abs_difference(inside, before)


@pytest.mark.parametrize(("name", "black"), [("letterboxed_blue_circle", 0), ("pillarboxed_red_square", 16)])
def test_black_bars_surround_the_stated_content_box(demo_dir, name, black):
    info = truth(demo_dir, name)
    box = info["content_box"]
    frame = decode_frames((demo_dir / "sources" / f"{name}.mp4").read_bytes(), [10])[0].astype(np.float32)
    content = frame[box["y"] : box["y"] + box["h"], box["x"] : box["x"] + box["w"]]
    bars = np.ones(frame.shape[:2], bool)
    bars[box["y"] : box["y"] + box["h"], box["x"] : box["x"] + box["w"]] = False
    assert info["black_level"] == black
    assert abs(frame[bars].mean() - black) < 4 and frame[bars].std() < 4
    assert content.mean() > black + 30


def test_static_sources_barely_move_and_moving_ones_do(demo_dir):
    def motion(name: str) -> float:
        frames = decode_frames((demo_dir / "sources" / f"{name}.mp4").read_bytes(), [0, 60])
        return mean_abs_difference(frames[0], frames[1])

    assert truth(demo_dir, "static_green_circle")["static"]
    assert motion("static_green_circle") < 1.0 and motion("nearly_static_yellow_triangle") < 3.0
    assert motion("red_circle_stripes") > 10.0


def test_generation_is_deterministic(tmp_path):
    spec = next(s for s in demo_sources() if s.name == "two_scene_cuts")
    first = np.stack(list(render_source(spec)))
    assert np.array_equal(first, np.stack(list(render_source(spec))))
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    indices = list(range(spec.num_frames))
    decoded_a = decode_frames(write_source(spec, a).read_bytes(), indices)
    assert_same_picture(decoded_a, decode_frames(write_source(spec, b).read_bytes(), indices))


def world_settings(demo_dir) -> WorldSettings:
    """The settings the session's demo world was generated with (from its manifest)."""
    return WorldSettings(**json.loads((demo_dir / MANIFEST_NAME).read_text())["settings"])


def sidecar_caption(demo_dir, key: str) -> str:
    """The caption written beside a source: a fixed demo source's, or a world clip's."""
    directory = "world/train" if key.startswith("world_") else "world/val" if key.startswith("heldout_") else "sources"
    return (demo_dir / directory / f"{key}.txt").read_text().strip()


def test_demo_shards_follow_the_schema_and_hold_every_source(demo_dir):
    shard_paths = sorted((demo_dir / "shards").glob("*.tar")) + sorted((demo_dir / "val").glob("*.tar")) + \
        sorted((demo_dir / "world" / "shards").glob("*.tar"))
    keys = []
    for shard in shard_paths:
        assert shard.with_suffix(".stats.json").exists()
        with tarfile.open(shard) as tar:
            members = {member.name: tar.extractfile(member).read() for member in tar}
        for name, raw in members.items():
            key, _, extension = name.partition(".")
            if extension != "json":
                continue
            meta = ClipMetadata.from_json(raw)
            media = "png" if meta.is_image else "mp4"
            assert f"{key}.{media}" in members
            assert members[f"{key}.txt"].decode() == sidecar_caption(demo_dir, key)
            assert meta.aesthetic_score is None and meta.caption_source == "sidecar"
            keys.append(key)
    settings = world_settings(demo_dir)
    world = [clip.name for clip in world_training_clips(settings) + world_validation_clips(settings)]
    assert sorted(keys) == sorted([spec.name for spec in demo_sources()] + world)


def test_validation_sources_are_held_out_of_training(demo_dir):
    def keys(directory):
        names = set()
        for shard in directory.glob("*.tar"):
            with tarfile.open(shard) as tar:
                names |= {member.name.partition(".")[0] for member in tar}
        return names

    settings = world_settings(demo_dir)
    world_val = {clip.name for clip in world_validation_clips(settings)}
    assert world_val and keys(demo_dir / "val") == set(VALIDATION_SOURCES) | world_val
    assert keys(demo_dir / "world" / "shards") == {clip.name for clip in world_training_clips(settings)}
    for training in (demo_dir / "shards", demo_dir / "world" / "shards"):
        assert not keys(training) & (set(VALIDATION_SOURCES) | world_val)
