"""The demo-world evaluator: reads colour, shape and motion of every combination of the world back from its
frames (clean, blurred and noisy, two sizes, both input layouts, through H.264), and finds nothing in noise."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
import torch

from data_pipeline.demo import SceneSpec, render_scene
from data_pipeline.demo_world import WorldSettings, write_world
from ltx.data.video_io import decode_frames, encode_mp4
from ltx.evaluation import (
    BACKGROUNDS,
    COLOURS,
    SHAPES,
    WORLD_MOTIONS,
    DemoWorldEvaluator,
    SceneLabels,
    parse_caption,
    predict,
    score,
)

WORLD = list(itertools.product(COLOURS, SHAPES, WORLD_MOTIONS))  # all 144 (colour, shape, motion)


def world_frames(index: int, colour: str, shape: str, motion: str, size: int) -> np.ndarray:
    """`(17, size, size, 3) uint8` frames, the background kind and colour varying with ``index``."""
    others = [name for name in COLOURS if name != colour]
    scene = SceneSpec(shape, colour, motion, BACKGROUNDS[index % 4], others[(index // 4) % len(others)], 17)
    return np.stack(list(render_scene(scene, size, size)))


def blurred_and_noisy(frames: np.ndarray, noise: np.ndarray, shift: int, sigma: float = 1.0) -> np.ndarray:
    """What a generated sample might look like: gaussian blur, then gaussian pixel noise (``noise``: a
    `(F, H, W, 3)` field in uint8 levels, rolled by ``shift`` pixels so clips get different noise)."""
    blurred = np.stack([cv2.GaussianBlur(frame, (0, 0), sigma) for frame in frames]).astype(np.float32)
    return np.clip(blurred + np.roll(noise, shift, axis=(1, 2)), 0, 255).round().astype(np.uint8)


def as_model_output(frames: np.ndarray) -> torch.Tensor:
    """uint8 `(F, H, W, 3)` -> float `(3, F, H, W)` in [-1, 1], the VAE decoder's layout."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1.0


@pytest.mark.parametrize(("size", "degraded", "first"), [(128, False, 0), (128, True, 1), (64, False, 0), (64, True, 0)])
def test_reads_every_combination_of_the_world(size, degraded, first):
    """Every (colour, shape, motion) at 64x64, clean and blurred and noisy; at 128x128 (slower) half of them
    clean and the other half blurred and noisy."""
    noise = np.random.default_rng(size).normal(0, 8.0, (17, size, size, 3)).astype(np.float32)  # std 8 levels
    predictions, indices = [], range(first, len(WORLD), 2 if size == 128 else 1)
    for index in indices:
        frames = world_frames(index, *WORLD[index], size)
        frames = blurred_and_noisy(frames, noise, 7 * index) if degraded else frames
        predictions.append(predict(as_model_output(frames) if index % 3 else frames))  # both layouts
    result = score(predictions, [SceneLabels(*WORLD[index]) for index in indices])
    assert result["found"] == 1.0
    assert result["colour"] >= 0.99 and result["motion"] >= 0.99 and result["shape"] >= 0.95, result


def test_every_colour_is_read_on_every_background():
    """All 224 (colour, background colour, background kind), through H.264: the dark shades of one
    background colour lie near another's (dark orange near dark yellow), which must not pass for the
    background (a yellow square over orange dots did, once)."""
    predictions, labels = [], []
    for index, (colour, background_colour, background) in enumerate(itertools.product(COLOURS, COLOURS, BACKGROUNDS)):
        if colour != background_colour:
            shape, motion = SHAPES[index % 3], WORLD_MOTIONS[index % 6]
            scene = SceneSpec(shape, colour, motion, background, background_colour, 9)
            video = encode_mp4(render_scene(scene, 64, 64), fps=24.0, preset="ultrafast")
            predictions.append(predict(decode_frames(video, list(range(9)))))
            labels.append(SceneLabels(colour, shape, motion))
    assert score(predictions, labels)["all"] == 1.0


def test_reads_the_written_world_clips_back_from_their_mp4s(tmp_path):
    summary = write_world(tmp_path, WorldSettings(train_clips=6, val_clips=6, frames=17, width=64, height=64),
                          samples_per_shard=8)
    predictions, labels = [], []
    for clips, folder in ((summary.train, "train"), (summary.val, "val")):
        for clip in clips:
            frames = decode_frames((tmp_path / "world" / folder / f"{clip.name}.mp4").read_bytes(), list(range(17)))
            predictions.append(predict(frames))
            labels.append(parse_caption((tmp_path / "world" / folder / f"{clip.name}.txt").read_text()))
    assert score(predictions, labels) == {"colour": 1.0, "shape": 1.0, "motion": 1.0, "all": 1.0, "found": 1.0}


def test_a_swapped_object_colour_is_read_as_the_new_colour():
    names = list(COLOURS)
    for index, colour in enumerate(names):
        others = [name for name in names if name != colour]
        background = others[(index // 4) % len(others)]  # what world_frames draws for this index
        frames = world_frames(index, colour, "square", "left_to_right", 64)
        new = next(name for name in names[index + 1 :] + names if name not in (colour, background))
        frames[(frames == COLOURS[colour]).all(-1)] = COLOURS[new]
        prediction = predict(frames)
        assert (prediction.colour, prediction.shape, prediction.motion) == (new, "square", "left_to_right")


def test_motion_comes_from_the_trajectory():
    frames = world_frames(0, "red", "circle", "left_to_right", 64)
    assert predict(frames).motion == "left_to_right" and predict(frames[::-1].copy()).motion == "right_to_left"
    reversed_diagonal = predict(world_frames(0, "red", "circle", "diagonal", 64)[::-1].copy())
    assert reversed_diagonal.found and reversed_diagonal.motion is None  # bottom right to top left: no world motion
    assert predict(world_frames(0, "red", "circle", "still", 64)).displacement == pytest.approx((0.0, 0.0), abs=1e-3)


def test_noise_and_flat_videos_hold_no_object():
    rng = np.random.default_rng(0)
    uniform = [rng.integers(0, 256, (17, size, size, 3), dtype=np.uint8) for size in (64, 128) for _ in range(6)]
    gaussian = [torch.randn(3, 17, 64, 64, generator=torch.Generator().manual_seed(seed)) * 0.5 for seed in range(6)]
    flat = [np.full((17, 64, 64, 3), level, dtype=np.uint8) for level in (0, 64, 128, 200, 255)]
    flat += [np.broadcast_to(np.array(rgb, dtype=np.uint8), (17, 64, 64, 3)).copy() for rgb in COLOURS.values()]
    smooth = [np.stack([cv2.resize(frame, (128, 128), interpolation=cv2.INTER_CUBIC) for frame in
                        rng.integers(0, 256, (17, cells, cells, 3), dtype=np.uint8)]) for cells in (4, 8) for _ in range(5)]
    predictions = [predict(video) for video in uniform + gaussian + flat + smooth]
    assert not any(prediction.found for prediction in predictions)
    assert all(prediction.labels == SceneLabels(None, None, None) for prediction in predictions)
    result = score(predictions, [SceneLabels(*WORLD[index % len(WORLD)]) for index in range(len(predictions))])
    assert result == {"colour": 0.0, "shape": 0.0, "motion": 0.0, "all": 0.0, "found": 0.0}


def test_a_batch_of_decoded_videos():
    frames = [world_frames(index, *WORLD[index], 64) for index in (0, 50, 100)]
    batch = torch.stack([as_model_output(clip) for clip in frames])  # (B, 3, F, H, W)
    predictions = DemoWorldEvaluator().predict_batch(batch)
    assert [prediction.labels for prediction in predictions] == [SceneLabels(*WORLD[index]) for index in (0, 50, 100)]


@pytest.mark.parametrize(("video", "message"), [
    (np.zeros((17, 64, 64), dtype=np.uint8), "shape \\(17, 64, 64\\)"),
    (np.zeros((17, 64, 64, 4), dtype=np.uint8), "uint8 videos are \\(F, H, W, 3\\)"),
    (torch.zeros(17, 64, 64, 3), "float videos are \\(3, F, H, W\\)"),
    (np.zeros((17, 64, 64, 3), dtype=np.int32), "dtype int32"),
    (torch.full((3, 2, 64, 64), float("nan")), "NaN"),
    (np.zeros((3, 8, 8, 3), dtype=np.uint8), "at least 16x16"),
])
def test_bad_videos_fail_naming_the_accepted_layouts(video, message):
    with pytest.raises(ValueError, match=message):
        predict(video)


def test_score_checks_its_inputs():
    prediction = predict(world_frames(0, *WORLD[0], 64))
    with pytest.raises(ValueError, match="1 predictions for 2 labels"):
        score([prediction], [SceneLabels(*WORLD[0])] * 2)
    with pytest.raises(ValueError, match="nothing to score"):
        score([], [])
    with pytest.raises(ValueError, match="must name colour, shape and motion"):
        score([prediction], [SceneLabels("red", None, "still")])
