"""Embedded demo data: deterministic raw source videos of coloured shapes, with ground-truth captions.

Each source is an H.264 mp4 with a caption beside it (``{name}.txt``) and a ground-truth sidecar
(``{name}.truth.json``: scenes with frame ranges and captions, the content box inside any black bars,
whether it is static). The set includes single-shot clips, clips with hard scene cuts, letterboxed and
pillarboxed clips (full-range and limited-range black), nearly static clips and still images, so the
curation pipeline has real work. ``pack_demo_shards`` packs the sources straight into shards of the
schema (one sample per source) for training before curation. ``generate_demo`` also writes the demo world
(``demo_world.py``: many short clips of the same vocabulary, some combinations held out for evaluation).

Usage: ``python -m data_pipeline.demo --output outputs/demo`` (what ``make demo`` runs; ``--train-clips``,
``--val-clips``, ``--clip-frames``, ``--clip-size`` and ``--seed`` size the world).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ltx.data.schema import ClipMetadata, CropBox
from ltx.data.shards import ShardSample, write_shards
from ltx.data.video_io import encode_mp4, encode_png
from ltx.evaluation.demo_vocabulary import (
    BACKGROUND_SHADES,
    BACKGROUNDS,
    COLOURS,
    DIRECTIONS,
    SHAPE_HALF_SIZE,
    SHAPES,
    scene_caption,
)
from ltx.text.tiny import write_tiny_t5

if TYPE_CHECKING:
    from data_pipeline.demo_world import WorldSettings

VALIDATION_SOURCES = ("yellow_circle_gradient", "cyan_square_wide", "image_blue_triangle")  # held out of training


@dataclass(frozen=True)
class SceneSpec:
    """One shot: a shape of a colour moving in a direction over a textured background."""

    shape: str
    colour: str
    direction: str
    background: str
    background_colour: str
    num_frames: int

    @property
    def caption(self) -> str:
        return scene_caption(self.colour, self.shape, self.direction, self.background, self.background_colour)


@dataclass(frozen=True)
class SourceSpec:
    """A raw source: one or more scenes (hard cuts between them), optional black bars."""

    name: str
    scenes: tuple[SceneSpec, ...]
    kind: str  # single_shot | scene_cuts | letterbox | pillarbox | static | image | world
    fps: float = 24.0
    width: int = 256
    height: int = 192
    bars: str | None = None  # letterbox | pillarbox
    bar_size: int = 0  # pixels of each bar
    black_level: int = 0  # 0 full-range black, 16 limited-range black

    @property
    def content_box(self) -> CropBox:
        if self.bars == "letterbox":
            return CropBox(0, self.bar_size, self.width, self.height - 2 * self.bar_size)
        if self.bars == "pillarbox":
            return CropBox(self.bar_size, 0, self.width - 2 * self.bar_size, self.height)
        return CropBox(0, 0, self.width, self.height)

    @property
    def num_frames(self) -> int:
        return sum(scene.num_frames for scene in self.scenes)

    @property
    def caption(self) -> str:
        return "; then ".join(scene.caption for scene in self.scenes)


def demo_sources() -> list[SourceSpec]:
    """The fixed demo set: 14 videos (single shots, cuts, bars, static) and 4 still images."""
    S = SceneSpec
    return [
        SourceSpec("red_circle_stripes", (S("circle", "red", "left_to_right", "striped", "blue", 73),), "single_shot"),
        SourceSpec("green_square_checks", (S("square", "green", "right_to_left", "checkered", "yellow", 73),), "single_shot"),
        SourceSpec("blue_triangle_dots", (S("triangle", "blue", "top_to_bottom", "dotted", "white", 65),), "single_shot"),
        SourceSpec("yellow_circle_gradient", (S("circle", "yellow", "bottom_to_top", "gradient", "purple", 65),), "single_shot"),
        SourceSpec("white_square_diagonal", (S("square", "white", "diagonal", "striped", "green", 81),), "single_shot"),
        SourceSpec("orange_triangle_30fps", (S("triangle", "orange", "left_to_right", "checkered", "cyan", 90),), "single_shot", fps=30.0),
        SourceSpec("purple_circle_portrait", (S("circle", "purple", "top_to_bottom", "striped", "orange", 57),), "single_shot", width=160, height=224),
        SourceSpec("cyan_square_wide", (S("square", "cyan", "left_to_right", "dotted", "red", 57),), "single_shot", width=320, height=160),
        SourceSpec("three_scene_cuts", (
            S("circle", "purple", "left_to_right", "striped", "yellow", 41),
            S("square", "cyan", "top_to_bottom", "checkered", "red", 41),
            S("triangle", "red", "right_to_left", "dotted", "blue", 41),
        ), "scene_cuts"),
        SourceSpec("two_scene_cuts", (
            S("triangle", "green", "bottom_to_top", "gradient", "orange", 49),
            S("circle", "white", "diagonal", "checkered", "purple", 49),
        ), "scene_cuts"),
        SourceSpec("letterboxed_blue_circle", (S("circle", "blue", "right_to_left", "striped", "orange", 65),), "letterbox",
                   bars="letterbox", bar_size=24),
        SourceSpec("pillarboxed_red_square", (S("square", "red", "bottom_to_top", "dotted", "green", 65),), "pillarbox",
                   bars="pillarbox", bar_size=32, black_level=16),
        SourceSpec("static_green_circle", (S("circle", "green", "still", "checkered", "blue", 65),), "static"),
        SourceSpec("nearly_static_yellow_triangle", (S("triangle", "yellow", "drift", "striped", "purple", 65),), "static"),
        SourceSpec("image_red_square", (S("square", "red", "still", "checkered", "white", 1),), "image", width=224, height=224),
        SourceSpec("image_blue_triangle", (S("triangle", "blue", "still", "gradient", "yellow", 1),), "image", width=256, height=192),
        SourceSpec("image_orange_circle", (S("circle", "orange", "still", "dotted", "cyan", 1),), "image", width=192, height=256),
        SourceSpec("image_white_circle", (S("circle", "white", "still", "striped", "red", 1),), "image", width=256, height=160),
    ]


def render_background(kind: str, colour: str, height: int, width: int) -> np.ndarray:
    """A textured `(H, W, 3) uint8` background in shades of ``colour``."""
    base = np.array(COLOURS[colour], dtype=np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == "striped":
        pattern = ((xx // 12) % 2).astype(np.float32)
    elif kind == "checkered":
        pattern = (((xx // 16) + (yy // 16)) % 2).astype(np.float32)
    elif kind == "dotted":
        pattern = (((xx % 14) - 7) ** 2 + ((yy % 14) - 7) ** 2 < 9).astype(np.float32)
    elif kind == "gradient":
        pattern = xx / max(1, width - 1)
    else:
        raise ValueError(f"unknown background {kind!r}; valid: {', '.join(BACKGROUNDS)}")
    darkest, lightest = BACKGROUND_SHADES
    shade = darkest + (lightest - darkest) * pattern[..., None]  # (H, W, 1) in [0.45, 0.9]
    return (base * shade).clip(0, 255).astype(np.uint8)


def shape_mask(shape: str, cx: float, cy: float, radius: float, height: int, width: int) -> np.ndarray:
    """Boolean `(H, W)` mask of a shape centred at (cx, cy) with half-size ``radius`` pixels."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx**2 + dy**2 <= radius**2
    if shape == "square":
        return (np.abs(dx) <= radius) & (np.abs(dy) <= radius)
    if shape == "triangle":  # apex up: inside the band and the two slanted edges
        return (dy <= radius) & (dy >= -radius) & (np.abs(dx) <= (dy + radius) / 2)
    raise ValueError(f"unknown shape {shape!r}; valid: {', '.join(SHAPES)}")


def render_scene(scene: SceneSpec, height: int, width: int) -> Iterator[np.ndarray]:
    """Frames `(H, W, 3) uint8` of one scene."""
    background = render_background(scene.background, scene.background_colour, height, width)
    (x0, y0), (x1, y1), _ = DIRECTIONS[scene.direction]
    radius = SHAPE_HALF_SIZE * min(height, width)
    colour = np.array(COLOURS[scene.colour], dtype=np.uint8)
    for index in range(scene.num_frames):
        progress = index / max(1, scene.num_frames - 1)
        cx = (x0 + (x1 - x0) * progress) * width
        cy = (y0 + (y1 - y0) * progress) * height
        frame = background.copy()
        frame[shape_mask(scene.shape, cx, cy, radius, height, width)] = colour
        yield frame


def render_source(spec: SourceSpec) -> Iterator[np.ndarray]:
    """Every frame of a source, scenes back to back, black bars drawn over the content box."""
    box = spec.content_box
    for scene in spec.scenes:
        for content in render_scene(scene, box.h, box.w):
            if spec.bars is None:
                yield content
                continue
            frame = np.full((spec.height, spec.width, 3), spec.black_level, dtype=np.uint8)
            frame[box.y : box.y + box.h, box.x : box.x + box.w] = content
            yield frame


def ground_truth(spec: SourceSpec) -> dict:
    """What curation should find in a source: scene frame ranges and captions, content box, kind."""
    scenes, start = [], 0
    for scene in spec.scenes:
        scenes.append({"start_frame": start, "end_frame": start + scene.num_frames, "caption": scene.caption, **asdict(scene)})
        start += scene.num_frames
    return {
        "name": spec.name, "kind": spec.kind, "fps": None if spec.kind == "image" else spec.fps,
        "width": spec.width, "height": spec.height, "num_frames": spec.num_frames,
        "content_box": asdict(spec.content_box), "black_level": spec.black_level,
        "static": spec.kind != "image" and all(scene.direction in ("still", "drift") for scene in spec.scenes),
        "scenes": scenes,
    }


@dataclass
class DemoSummary:
    """What ``generate_demo`` made."""

    sources: list[dict] = field(default_factory=list)
    shards: list[str] = field(default_factory=list)
    val_shards: list[str] = field(default_factory=list)  # the held-out demo sources' and the world's
    num_samples: int = 0
    world_shards: list[str] = field(default_factory=list)
    world_train_clips: int = 0
    world_val_clips: int = 0
    world_size: str = ""  # e.g. "17 frames of 128x128"
    manifest: str = ""
    seconds: float = 0.0


def write_source(spec: SourceSpec, directory: Path) -> Path:
    """Write one source (mp4 or png), its caption ``.txt`` and its ``.truth.json``; returns the media path."""
    frames = render_source(spec)
    if spec.kind == "image":
        media_path = directory / f"{spec.name}.png"
        media_path.write_bytes(encode_png(next(frames)))
    else:
        media_path = directory / f"{spec.name}.mp4"
        media_path.write_bytes(encode_mp4(frames, spec.fps))
    (directory / f"{spec.name}.txt").write_text(spec.caption + "\n")
    (directory / f"{spec.name}.truth.json").write_text(json.dumps(ground_truth(spec), indent=2))
    return media_path


def pack_demo_shards(specs: list[SourceSpec], source_dir: Path, shard_dir: Path, samples_per_shard: int,
                     prefix: str = "demo") -> list[str]:
    """Pack each source uncurated into one shard sample (whole source, no crop, no scores)."""

    def samples() -> Iterator[ShardSample]:
        for spec in specs:
            extension = "png" if spec.kind == "image" else "mp4"
            metadata = ClipMetadata(
                source=f"{spec.name}.{extension}", start_frame=0, end_frame=spec.num_frames,
                fps=None if spec.kind == "image" else spec.fps, num_frames=spec.num_frames,
                width=spec.width, height=spec.height, crop=CropBox(0, 0, spec.width, spec.height),
                motion_score=None, aesthetic_score=None, caption_source="sidecar",
                extra={"demo_kind": spec.kind},
            )
            media = (source_dir / f"{spec.name}.{extension}").read_bytes()
            yield ShardSample(spec.name, media, extension, spec.caption, metadata)

    return [stats.shard for stats in write_shards(samples(), shard_dir, samples_per_shard, prefix=prefix)]


def generate_demo(output: Path, samples_per_shard: int = 4, overwrite: bool = True,
                  world: WorldSettings | None = None, workers: int = 1) -> DemoSummary:
    """Write the demo sources under ``output/sources``, training shards under ``output/shards``, the
    held-out sources (``VALIDATION_SOURCES``) under ``output/val``, the demo world (``demo_world.write_world``
    with ``world``, default ``WorldSettings()``: clips under ``output/world``, training shards in
    ``output/world/shards``, held-out clips in ``output/val``, manifest ``output/world.json``; rendered by
    ``workers`` processes) and a tiny T5 stand-in text encoder under ``output/text_encoder``."""
    from data_pipeline.demo_world import WorldSettings, write_world  # demo_world builds on this module

    start = time.perf_counter()
    output = Path(output)
    world = WorldSettings() if world is None else world
    source_dir, shard_dir, val_dir = output / "sources", output / "shards", output / "val"
    for directory in (source_dir, shard_dir, val_dir, output / "world", output / "text_encoder"):
        if directory.exists() and overwrite:
            shutil.rmtree(directory)
        directory.mkdir(parents=True, exist_ok=True)
    summary = DemoSummary()
    specs = demo_sources()
    for spec in specs:
        path = write_source(spec, source_dir)
        summary.sources.append({"name": spec.name, "kind": spec.kind, "path": str(path), "frames": spec.num_frames,
                                "size": f"{spec.width}x{spec.height}", "caption": spec.caption})
    train = [spec for spec in specs if spec.name not in VALIDATION_SOURCES]
    held_out = [spec for spec in specs if spec.name in VALIDATION_SOURCES]
    summary.shards = pack_demo_shards(train, source_dir, shard_dir, samples_per_shard)
    summary.val_shards = pack_demo_shards(held_out, source_dir, val_dir, samples_per_shard, prefix="demo-val")
    summary.num_samples = len(train)
    (output / "train_sources.txt").write_text(  # the curation pipeline's input list (held-out sources left out)
        "".join(f"{source['path']}\n" for source in summary.sources if source["name"] not in VALIDATION_SOURCES))
    world_summary = write_world(output, world, samples_per_shard, workers)
    summary.world_shards, summary.val_shards = world_summary.shards, summary.val_shards + world_summary.val_shards
    summary.world_train_clips, summary.world_val_clips = len(world_summary.train), len(world_summary.val)
    summary.world_size, summary.manifest = f"{world.frames} frames of {world.width}x{world.height}", world_summary.manifest
    captions = [spec.caption for spec in specs + world_summary.train + world_summary.val]
    write_tiny_t5(output / "text_encoder", (word for caption in captions for word in caption.replace(";", " ").split()))
    summary.seconds = time.perf_counter() - start
    return summary


def format_summary(summary: DemoSummary, output: Path) -> str:
    kinds: dict[str, int] = {}
    for source in summary.sources:
        kinds[source["kind"]] = kinds.get(source["kind"], 0) + 1
    lines = [f"demo data in {output} ({summary.seconds:.1f} s)",
             f"  {len(summary.sources)} raw sources in {output / 'sources'}: "
             + ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))]
    lines += [f"    {s['name']:<32} {s['kind']:<12} {s['frames']:>4} frames {s['size']:>8}  \"{s['caption']}\"" for s in summary.sources]
    lines.append(f"  {summary.num_samples} training samples in {len(summary.shards)} shards in {output / 'shards'}, "
                 f"{len(VALIDATION_SOURCES)} held-out samples in {output / 'val'} (packed uncurated)")
    lines.append(f"  demo world (clips of {summary.world_size} in {output / 'world'}): "
                 f"{summary.world_train_clips} training clips in {len(summary.world_shards)} shards in "
                 f"{output / 'world' / 'shards'}, {summary.world_val_clips} clips of held-out combinations in "
                 f"{output / 'val'}; manifest {summary.manifest}")
    lines.append(f"  a tiny random T5 text encoder over the captions' words in {output / 'text_encoder'}")
    return "\n".join(lines)


def _clip_size(text: str) -> tuple[int, int]:
    """``"WxH"`` or ``"SIZE"`` (square) as (width, height)."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(part.strip().isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"expected WxH or SIZE in pixels (e.g. 160x128 or 128), got {text!r}")
    width, height = int(parts[0]), int(parts[-1])
    return width, height


def main(argv: list[str] | None = None) -> None:
    from data_pipeline.demo_world import WorldSettings  # demo_world builds on this module

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=Path("outputs/demo"), help="where sources/ and shards/ go")
    parser.add_argument("--samples-per-shard", type=int, default=4)
    defaults = WorldSettings()
    parser.add_argument("--train-clips", type=int, default=defaults.train_clips, help="demo-world training clips")
    parser.add_argument("--val-clips", type=int, default=defaults.val_clips,
                        help="demo-world validation clips of held-out combinations (24: one per combination)")
    parser.add_argument("--clip-frames", type=int, default=defaults.frames, help="frames per demo-world clip (8k+1)")
    parser.add_argument("--clip-size", type=_clip_size, default=(defaults.width, defaults.height), metavar="WxH | SIZE",
                        help="demo-world clip size, multiples of 32 (128 means 128x128)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="draws the demo-world training clips")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes rendering the demo-world clips (default: one per CPU; the files are the same)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    try:
        world = WorldSettings(args.train_clips, args.val_clips, args.clip_frames, *args.clip_size, seed=args.seed)
    except ValueError as error:
        parser.error(str(error))
    summary = generate_demo(args.output, args.samples_per_shard, world=world, workers=args.workers)
    print(format_summary(summary, args.output))


if __name__ == "__main__":
    main()
