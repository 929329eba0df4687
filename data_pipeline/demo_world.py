"""The demo world: many short clips sampled from colours x shapes x motions x backgrounds, some combinations held out.

Training clips take their (colour, shape, motion) from ``training_combinations()`` (the 120 of 144
combinations not in ``HELD_OUT_COMBINATIONS``) in seeded, shuffled rounds (every combination once before
any repeats), and a background kind and colour (never the shape's colour) drawn with the same generator.
Validation clips render ``held_out_prompts()``: combinations that no training clip shows, so validation and
evaluation measure generalisation to new compositions of known attributes. ``write_world`` writes the clips
as mp4 + caption ``.txt`` (+ ``.truth.json``) like the demo's single-shot sources, packs them into shards
(training: ``world/shards``; validation: beside the held-out demo sources in ``val``) and a manifest
(``world.json``). The clips go to shards directly rather than through curation: they are clean by
construction, shorter than the scene stage's one-second minimum, and a still shape is what the motion stage
rejects.
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import repeat
from pathlib import Path

import numpy as np

from data_pipeline.demo import SceneSpec, SourceSpec, pack_demo_shards, write_source
from ltx.evaluation.demo_vocabulary import (
    BACKGROUNDS,
    COLOURS,
    HELD_OUT_COMBINATIONS,
    SHAPES,
    WORLD_MOTIONS,
    held_out_prompts,
    training_combinations,
)
from ltx.shapes import check_video_shape

WORLD_KIND = "world"
MANIFEST_NAME = "world.json"


@dataclass(frozen=True)
class WorldSettings:
    """How many world clips there are, their size and the seed that draws them."""

    train_clips: int = 192  # sized for the CPU demo: every training combination at least once
    val_clips: int = 24  # one per held-out combination; more repeat them over other backgrounds
    frames: int = 17
    width: int = 128
    height: int = 128
    fps: float = 24.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("train_clips", "val_clips", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "seed" else 1):
                raise ValueError(f"world {name} must be a {'non-negative' if name == 'seed' else 'positive'} int, "
                                 f"got {value!r}")
        if isinstance(self.frames, int) and self.frames < 9:
            raise ValueError(f"world clips need at least 9 frames to show their motion, got {self.frames!r}")
        check_video_shape(self.frames, self.height, self.width, what="world clips")
        if not self.fps > 0:
            raise ValueError(f"world fps must be positive, got {self.fps!r}")


def _clip(name: str, scene: SceneSpec, settings: WorldSettings) -> SourceSpec:
    return SourceSpec(name, (scene,), WORLD_KIND, fps=settings.fps, width=settings.width, height=settings.height)


def world_training_clips(settings: WorldSettings) -> list[SourceSpec]:
    """The training clips: ``settings.train_clips`` draws from the training combinations (deterministic)."""
    rng = np.random.default_rng(settings.seed)
    combinations = training_combinations()
    order: list[int] = []
    while len(order) < settings.train_clips:
        order.extend(int(index) for index in rng.permutation(len(combinations)))
    clips = []
    for index, combination in enumerate(order[: settings.train_clips]):
        colour, shape, motion = combinations[combination]
        background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
        others = [name for name in COLOURS if name != colour]
        background_colour = others[int(rng.integers(len(others)))]
        scene = SceneSpec(shape, colour, motion, background, background_colour, settings.frames)
        clips.append(_clip(f"world_{index:04d}_{colour}_{shape}_{motion}", scene, settings))
    return clips


def world_validation_clips(settings: WorldSettings) -> list[SourceSpec]:
    """The validation clips: ``held_out_prompts(settings.val_clips)`` rendered."""
    clips = []
    for index, prompt in enumerate(held_out_prompts(settings.val_clips)):
        scene = SceneSpec(prompt.shape, prompt.colour, prompt.motion, prompt.background, prompt.background_colour,
                          settings.frames)
        clips.append(_clip(f"heldout_{index:03d}_{prompt.colour}_{prompt.shape}_{prompt.motion}", scene, settings))
    return clips


def _describe(clip: SourceSpec) -> dict:
    scene = clip.scenes[0]
    return {"name": clip.name, "caption": clip.caption, "colour": scene.colour, "shape": scene.shape,
            "motion": scene.direction, "background": scene.background, "background_colour": scene.background_colour}


def world_manifest(settings: WorldSettings, train: list[SourceSpec], val: list[SourceSpec]) -> dict:
    """What the world holds: its vocabulary, the training and held-out combinations, the evaluation prompts
    and every clip with its labels."""
    return {
        "settings": asdict(settings),
        "colours": list(COLOURS), "shapes": list(SHAPES), "motions": list(WORLD_MOTIONS),
        "backgrounds": list(BACKGROUNDS),
        "train_combinations": [list(combination) for combination in training_combinations()],
        "held_out_combinations": [list(combination) for combination in HELD_OUT_COMBINATIONS],
        "prompts": [asdict(prompt) for prompt in held_out_prompts(settings.val_clips)],
        "train_clips": [_describe(clip) for clip in train],
        "val_clips": [_describe(clip) for clip in val],
    }


@dataclass
class WorldSummary:
    """What ``write_world`` made."""

    train: list[SourceSpec] = field(default_factory=list)
    val: list[SourceSpec] = field(default_factory=list)
    shards: list[str] = field(default_factory=list)
    val_shards: list[str] = field(default_factory=list)
    manifest: str = ""


def write_world(output: Path, settings: WorldSettings, samples_per_shard: int, workers: int = 1) -> WorldSummary:
    """Write the world under ``output``: clips in ``world/train`` and ``world/val``, training shards in
    ``world/shards``, validation shards (prefix ``world-val``) in ``val`` and the manifest ``world.json``.
    The directories must exist or be creatable; existing files of the same names are replaced. ``workers``
    processes render and encode the clips (each clip is a function of its spec alone: the same files for
    any count)."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    output = Path(output)
    summary = WorldSummary(world_training_clips(settings), world_validation_clips(settings))
    for clips, name in ((summary.train, "train"), (summary.val, "val")):
        directory = output / "world" / name
        directory.mkdir(parents=True, exist_ok=True)
        if workers == 1:
            for clip in clips:
                write_source(clip, directory)
            continue
        with ProcessPoolExecutor(max_workers=workers) as pool:
            list(pool.map(write_source, clips, repeat(directory), chunksize=max(1, len(clips) // (4 * workers))))
    summary.shards = pack_demo_shards(summary.train, output / "world" / "train", output / "world" / "shards",
                                      samples_per_shard, prefix="world")
    summary.val_shards = pack_demo_shards(summary.val, output / "world" / "val", output / "val", samples_per_shard,
                                          prefix="world-val")
    manifest = output / MANIFEST_NAME
    manifest.write_text(json.dumps(world_manifest(settings, summary.train, summary.val), indent=2) + "\n")
    summary.manifest = str(manifest)
    return summary

