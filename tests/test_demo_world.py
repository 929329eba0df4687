"""The demo world: held-out combinations never trained on, coverage, determinism, counts, geometry, manifest."""

from __future__ import annotations

import json
import os
import tarfile
from collections import Counter
from itertools import combinations

import numpy as np
import pytest

from data_pipeline import demo
from data_pipeline.demo import COLOURS, VALIDATION_SOURCES, SceneSpec, demo_sources, render_scene, shape_mask
from data_pipeline.demo_world import (
    MANIFEST_NAME,
    WorldSettings,
    world_training_clips,
    world_validation_clips,
    write_world,
)
from ltx.data.video_io import probe_video
from ltx.evaluation.demo_vocabulary import (
    BACKGROUNDS,
    DIRECTIONS,
    HELD_OUT_COMBINATIONS,
    SHAPE_HALF_SIZE,
    SHAPES,
    WORLD_MOTIONS,
    held_out_prompts,
    parse_caption,
    scene_caption,
    training_combinations,
)


def labels_of(clip) -> tuple[str, str, str]:
    scene = clip.scenes[0]
    return scene.colour, scene.shape, scene.direction


def test_held_out_combinations_are_a_balanced_design():
    held_out = HELD_OUT_COMBINATIONS
    assert len(set(held_out)) == len(held_out) == 24
    assert Counter(colour for colour, _, _ in held_out) == {colour: 3 for colour in COLOURS}
    assert Counter(motion for _, _, motion in held_out) == {motion: 4 for motion in WORLD_MOTIONS}
    for colour in COLOURS:  # one per shape, three different motions
        mine = [(shape, motion) for c, shape, motion in held_out if c == colour]
        assert sorted(shape for shape, _ in mine) == sorted(SHAPES) and len({motion for _, motion in mine}) == 3
    assert max(Counter((shape, motion) for _, shape, motion in held_out).values()) <= 2
    assert len(training_combinations()) == len(COLOURS) * len(SHAPES) * len(WORLD_MOTIONS) - 24


def test_no_training_clip_shows_a_held_out_combination():
    world = {labels_of(clip) for clip in world_training_clips(WorldSettings(train_clips=500, seed=3))}
    fixed = {(scene.colour, scene.shape, scene.direction) for spec in demo_sources()
             if spec.name not in VALIDATION_SOURCES for scene in spec.scenes}
    assert not world & set(HELD_OUT_COMBINATIONS)
    assert not fixed & set(HELD_OUT_COMBINATIONS)
    assert {labels_of(clip) for clip in world_validation_clips(WorldSettings())} == set(HELD_OUT_COMBINATIONS)


def test_training_shows_every_colour_shape_motion_and_every_pair_of_them():
    clips = world_training_clips(WorldSettings())
    trained = [labels_of(clip) for clip in clips]
    assert set(trained) == set(training_combinations())  # 192 clips: every training combination at least once
    assert max(Counter(trained).values()) - min(Counter(trained).values()) <= 1
    for values, index in ((COLOURS, 0), (SHAPES, 1), (WORLD_MOTIONS, 2)):
        assert {labels[index] for labels in trained} == set(values)
    for first, second in combinations(range(3), 2):  # only the triples are new at evaluation
        held_out_pairs = {(labels[first], labels[second]) for labels in HELD_OUT_COMBINATIONS}
        assert held_out_pairs <= {(labels[first], labels[second]) for labels in trained}
    for clip in clips:
        scene = clip.scenes[0]
        assert scene.background in BACKGROUNDS and scene.background_colour != scene.colour
    assert len({(clip.scenes[0].background, clip.scenes[0].background_colour) for clip in clips}) > 20


def test_world_is_deterministic_given_the_seed():
    settings = WorldSettings(train_clips=40, seed=7)
    assert world_training_clips(settings) == world_training_clips(WorldSettings(train_clips=40, seed=7))
    assert world_training_clips(settings) != world_training_clips(WorldSettings(train_clips=40, seed=8))
    assert world_training_clips(WorldSettings(train_clips=41, seed=7))[:40] == world_training_clips(settings)
    scene = world_training_clips(settings)[0].scenes[0]
    assert np.array_equal(np.stack(list(render_scene(scene, 64, 64))), np.stack(list(render_scene(scene, 64, 64))))


@pytest.mark.parametrize("size", [(32, 32), (64, 64), (128, 128), (160, 96), (96, 160)])
def test_shapes_stay_whole_in_frame_and_moving_ones_cross_most_of_it(size):
    width, height = size
    radius = SHAPE_HALF_SIZE * min(width, height)
    margin = int(radius) + 2  # a canvas this much larger on every side holds the shape wherever the frame does
    for shape in SHAPES:
        for motion in WORLD_MOTIONS:
            frames = np.stack(list(render_scene(SceneSpec(shape, "red", motion, "striped", "blue", 17), height, width)))
            inside = (frames == COLOURS["red"]).all(-1)  # (F, H, W) the shape's pixels
            (x0, y0), (x1, y1), _ = DIRECTIONS[motion]
            for index, mask in enumerate(inside):  # as many pixels as the same shape drawn with room around it
                progress = index / (len(frames) - 1)
                cx, cy = (x0 + (x1 - x0) * progress) * width, (y0 + (y1 - y0) * progress) * height
                unclipped = shape_mask(shape, cx + margin, cy + margin, radius, height + 2 * margin, width + 2 * margin)
                assert mask.sum() == unclipped.sum() > 0, (shape, motion, index)
            yy, xx = np.mgrid[0:height, 0:width]
            centres = [(xx[mask].mean() / width, yy[mask].mean() / height) for mask in inside[[0, -1]]]
            travel = np.hypot(centres[1][0] - centres[0][0], centres[1][1] - centres[0][1])
            assert travel > 0.6 if motion != "still" else travel < 0.01


def test_counts_sizes_and_manifest_follow_the_settings(tmp_path):
    settings = WorldSettings(train_clips=5, val_clips=3, frames=9, width=96, height=64, seed=2)
    summary = write_world(tmp_path, settings, samples_per_shard=2)
    assert (len(summary.train), len(summary.val), len(summary.shards), len(summary.val_shards)) == (5, 3, 3, 2)
    assert all((tmp_path / "world" / "shards" / shard).exists() for shard in summary.shards)
    assert all((tmp_path / "val" / shard).exists() and shard.startswith("world-val") for shard in summary.val_shards)
    with tarfile.open(tmp_path / "world" / "shards" / summary.shards[0]) as tar:
        names = tar.getnames()
    assert sorted(names) == sorted(f"{clip.name}.{extension}" for clip in summary.train[:2] for extension in ("mp4", "txt", "json"))
    clip = summary.train[0]
    info = probe_video((tmp_path / "world" / "train" / f"{clip.name}.mp4").read_bytes())
    assert (info.num_frames, info.width, info.height) == (9, 96, 64)
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert WorldSettings(**manifest["settings"]) == settings
    assert [tuple(c) for c in manifest["held_out_combinations"]] == list(HELD_OUT_COMBINATIONS)
    assert [tuple(c) for c in manifest["train_combinations"]] == list(training_combinations())
    assert [prompt["caption"] for prompt in manifest["prompts"]] == [p.caption for p in held_out_prompts(3)]
    for entry, clip in zip(manifest["train_clips"] + manifest["val_clips"], summary.train + summary.val):
        folder = "train" if entry in manifest["train_clips"] else "val"
        assert (tmp_path / "world" / folder / f"{clip.name}.txt").read_text().strip() == entry["caption"] == clip.caption
        assert (entry["colour"], entry["shape"], entry["motion"]) == labels_of(clip)


def test_held_out_prompts_parse_back_to_their_labels():
    prompts = held_out_prompts(30)
    assert [p.labels for p in prompts[:24]] == [parse_caption(p.caption) for p in prompts[:24]]
    assert [(p.colour, p.shape, p.motion) for p in prompts[:24]] == list(HELD_OUT_COMBINATIONS)
    assert prompts[24].labels == prompts[0].labels and prompts[24].caption != prompts[0].caption
    assert all(p.background_colour != p.colour for p in prompts)
    assert prompts[0].caption == "a red circle moves from bottom to top over a green striped background"
    with pytest.raises(ValueError, match="positive int"):
        held_out_prompts(0)


def test_bad_names_and_captions_fail_listing_what_is_valid():
    with pytest.raises(ValueError, match="unknown shape 'hexagon'; valid: circle, square, triangle"):
        scene_caption("red", "hexagon", "still", "striped", "blue")
    with pytest.raises(ValueError, match="not a single-shot demo caption"):
        parse_caption("a red circle moves from left to right over a blue striped background; then a green square")
    with pytest.raises(ValueError, match="not a single-shot demo caption"):
        parse_caption("a magenta circle moves from left to right over a blue striped background")


@pytest.mark.parametrize(("settings", "message"), [
    (dict(train_clips=0), "train_clips must be a positive int"),
    (dict(val_clips=-1), "val_clips must be a positive int"),
    (dict(frames=16), "frames must be of the form 8k\\+1"),
    (dict(frames=1), "at least 9 frames"),
    (dict(width=100), "width must be a positive multiple of 32"),
])
def test_bad_settings_fail_naming_the_rule(settings, message):
    with pytest.raises(ValueError, match=message):
        WorldSettings(**settings)


def test_worker_processes_write_the_same_world(tmp_path):
    """Clips rendered by two processes are the files one process writes, byte for byte."""
    settings = WorldSettings(train_clips=6, val_clips=3, frames=9, width=64, height=64, seed=2)
    serial, parallel = write_world(tmp_path / "one", settings, 2), write_world(tmp_path / "two", settings, 2, workers=2)
    assert [clip.name for clip in parallel.train] == [clip.name for clip in serial.train]
    files = sorted(path.relative_to(tmp_path / "one") for part in ("train", "val")  # shards hold write times
                   for path in (tmp_path / "one" / "world" / part).iterdir())
    assert len(files) == 3 * (6 + 3)  # media, caption, truth
    for name in files:
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    with pytest.raises(ValueError, match="workers must be a positive int"):
        write_world(tmp_path / "three", settings, 2, workers=0)


def test_command_line_flags_reach_the_world(monkeypatch, tmp_path, capsys):
    calls = []
    monkeypatch.setattr(demo, "generate_demo",
                        lambda output, samples_per_shard, world, workers: calls.append((world, workers)))
    monkeypatch.setattr(demo, "format_summary", lambda summary, output: "")
    demo.main(["--output", str(tmp_path), "--train-clips", "50", "--val-clips", "6", "--clip-frames", "25",
               "--clip-size", "160x96", "--seed", "4", "--workers", "3"])
    demo.main(["--output", str(tmp_path)])
    assert calls == [(WorldSettings(50, 6, 25, 160, 96, seed=4), 3), (WorldSettings(), os.cpu_count() or 1)]
    for flags, message in ((["--clip-size", "12x"], "expected WxH or SIZE"), (["--clip-frames", "20"], "8k\\+1"),
                           (["--workers", "0"], "--workers must be >= 1")):
        with pytest.raises(SystemExit):
            demo.main(["--output", str(tmp_path), *flags])
        assert message.replace("\\", "") in capsys.readouterr().err
