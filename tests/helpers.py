"""Helpers for tests: generated media, shard samples, composed configs (nothing is fetched)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from ltx.cli.train import CONFIG_DIR
from ltx.data.schema import ClipMetadata, CropBox
from ltx.data.shards import ShardSample
from ltx.data.video_io import encode_mp4, encode_png

REPO_ROOT = Path(__file__).resolve().parents[1]
# The Hydra entry points the Makefile runs and their primary configs (None: the command's --config-name).
HYDRA_CONFIGS = {"data_pipeline": "curate", "ltx.cli.train": None, "ltx.cli.latent_stats": "latent_stats",
                 "ltx.cli.precompute": "precompute", "ltx.cli.sample": "sample"}


def moving_square_frames(num_frames: int, height: int, width: int, seed: int) -> list[np.ndarray]:
    """A bright square moving right over a seed-dependent background: `(H, W, 3) uint8` frames."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 120, size=3, dtype=np.uint8)
    frames = []
    for index in range(num_frames):
        frame = np.empty((height, width, 3), dtype=np.uint8)
        frame[:] = background
        x = (index * 3) % (width - 16)
        frame[height // 2 - 8 : height // 2 + 8, x : x + 16] = 230
        frames.append(frame)
    return frames


def assert_same_picture(first: np.ndarray, second: np.ndarray) -> None:
    """Two decodes of encodes of the same frames: the same picture. libx264 here is not always
    bit-for-bit repeatable: on a loaded machine, about 1 in 10-40 single-threaded encodes of the same
    frames came out a byte different, once decoding up to 4 levels apart on 4 % of the pixels. So:
    equal shapes, a mean difference under 0.25 levels and none over 8 (a different or shifted frame
    differs by tens)."""
    assert first.shape == second.shape and first.dtype == second.dtype == np.uint8
    difference = np.abs(first.astype(np.int16) - second.astype(np.int16))
    assert difference.mean() < 0.25 and difference.max() <= 8, (difference.mean(), difference.max())


def clip_metadata(num_frames: int, height: int, width: int, fps: float | None = 24.0, **scores) -> ClipMetadata:
    return ClipMetadata(
        source="generated.mp4", start_frame=0, end_frame=num_frames, fps=fps, num_frames=num_frames,
        width=width, height=height, crop=CropBox(0, 0, width, height),
        motion_score=scores.get("motion_score"), aesthetic_score=scores.get("aesthetic_score"),
        caption_source="test",
    )


def video_sample(key: str, num_frames: int = 17, height: int = 64, width: int = 64, seed: int = 0, **scores) -> ShardSample:
    media = encode_mp4(moving_square_frames(num_frames, height, width, seed), fps=24.0, preset="ultrafast")
    return ShardSample(key, media, "mp4", f"a square {key}", clip_metadata(num_frames, height, width, **scores))


def image_sample(key: str, height: int = 64, width: int = 64, seed: int = 0) -> ShardSample:
    media = encode_png(moving_square_frames(1, height, width, seed)[0])
    return ShardSample(key, media, "png", f"a still square {key}", clip_metadata(1, height, width, fps=None))


def compose_config(config_name: str, overrides: list[str] = (), return_hydra_config: bool = False) -> DictConfig:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name, overrides=list(overrides), return_hydra_config=return_hydra_config)


def demo_recipe(demo_dir: Path) -> list[tuple[str, list[str]]]:
    """The Python commands of ``make demo DEMO_DIR=demo_dir`` (a dry run) as (module, arguments)."""
    dry_run = subprocess.run(["make", "--no-print-directory", "-n", "-W", ".venv/.installed", "demo", f"DEMO_DIR={demo_dir}"], cwd=REPO_ROOT,
                             capture_output=True, text=True, check=True).stdout
    commands = []
    for line in dry_run.replace("\\\n", " ").splitlines():
        words = shlex.split(line)
        if len(words) > 2 and words[0].endswith("python") and words[1] == "-m":
            commands.append((words[2], words[3:]))
        else:
            assert words[0] == "echo", f"a demo step that is not `python -m ...`: {line}"
    return commands


def hydra_overrides(module: str, arguments: list[str]) -> tuple[str, list[str]]:
    """The primary config name and the overrides of a Hydra command of the Makefile."""
    if HYDRA_CONFIGS[module] is not None:
        return HYDRA_CONFIGS[module], arguments
    assert arguments[0] == "--config-name", arguments
    return arguments[1], arguments[2:]
