"""Runs the curation stages over raw inputs into shards, resumably and in parallel.

Inputs are sorted and grouped into work shards of ``items_per_shard`` files; shard ``j`` belongs to
task ``j % num_tasks`` (SLURM array tasks) and, inside a task, a process pool works through its
shards (with one worker, a ``ShardPipeline`` in this process overlaps each shard's analysis with the
previous shard's encoding and writing). Each shard's tar is written under a temporary name and
renamed, then its stats JSON (which also lists its inputs, its rejections and its clips' scores) is
written last: a rerun skips shards with a stats file and rewrites the rest, so a killed run leaves
nothing half-written behind. The report
adds up every shard's stats, so clips + rejections account for every input.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from data_pipeline.clips import Clip, Rejection
from data_pipeline.frames import SOURCE_FRAMES, clip_crop, crop_resize_i420, read_frames, shrunk_size
from ltx.data.schema import ClipMetadata, CropBox
from ltx.data.shards import ShardSample, is_complete, write_shard
from ltx.data.video_io import encode_i420_mp4, encode_mp4, encode_png
from ltx.registry import CURATION_STAGES

log = logging.getLogger(__name__)
SIDECAR_SUFFIXES = (".txt", ".json")  # captions and ground truth beside the sources, not inputs


def list_inputs(source: str | Path | Sequence[str]) -> list[Path]:
    """Input files from a directory (every file but caption / metadata sidecars), a text file listing
    paths (one per line), or a list of paths; sorted, so work shards are stable across reruns."""
    if isinstance(source, str | Path):
        path = Path(source)
        if path.is_dir():
            files = [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() not in SIDECAR_SUFFIXES]
        elif path.is_file():
            files = [Path(line.strip()) for line in path.read_text().splitlines() if line.strip()]
        else:
            raise FileNotFoundError(f"input {source!r} is neither a directory nor a list file")
    else:
        files = [Path(p) for p in source]
    if not files:
        raise ValueError(f"no input files found in {source!r}")
    return sorted(files)


def build_stages(cfg: DictConfig) -> list[Any]:
    """The enabled stages in ``cfg.stages`` order, each built from ``cfg.curation.<name>``."""
    stages = []
    for name in cfg.stages:
        settings = cfg.curation.get(name)
        if settings is None:
            raise ValueError(f"stage {name!r} has no config under curation.{name}; add it or remove it from stages")
        if settings.get("enabled", True):
            stages.append(CURATION_STAGES.build(settings.get("name", name), **dict(settings.get("kwargs") or {})))
    return stages


def run_stages(path: Path, stages: Sequence[Any]) -> tuple[list[Clip], list[Rejection]]:
    """One input through every stage; a stage that raises rejects the clip (``stage_error``)."""
    clips, rejections = [Clip(source=str(path))], []
    for stage in stages:
        survivors = []
        for clip in clips:
            try:
                outputs = stage(clip)
            except Exception as error:  # a stage bug must not stop the run; the reject line says what
                outputs = [Rejection(clip.key, stage.name, "stage_error", f"{type(error).__name__}: {error}")]
            for output in outputs:
                if isinstance(output, Rejection):
                    rejections.append(dataclasses.replace(output, source=str(path)))
                else:
                    survivors.append(output)
        clips = survivors
    return clips, rejections


@dataclass(frozen=True)
class EncodeSettings:
    """How accepted clips are written: longer side at most ``max_side``, even sizes, the source fps."""

    max_side: int = 512
    crf: int = 18
    preset: str = "veryfast"
    threads: int | str = "auto"  # x264 threads per worker; auto = the CPUs this process may use / workers

    def encoder_threads(self, workers: int) -> int:
        """x264 threads for each of ``workers`` processes running at once."""
        if self.threads == "auto":
            return max(1, len(os.sched_getaffinity(0)) // max(1, workers))
        if not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"encode.threads must be a positive integer or 'auto', got {self.threads!r}")
        return self.threads


@dataclass
class PreparedClip:
    """A clip's pixels at the stored size, read from the source (I420 planes when they come straight
    from the shared decode, else RGB frames), and its metadata: all that encoding needs, so it can
    run on another thread while the next source is analysed."""

    key: str
    caption: str
    metadata: ClipMetadata
    fps: float | None
    planes: list[np.ndarray] | None = None
    frames: np.ndarray | None = None  # (F, H, W, 3) uint8 RGB

    def encode(self, settings: EncodeSettings, threads: int = 1) -> ShardSample:
        """H.264 mp4 (PNG for a still image); x264 releases the GIL while it works."""
        if self.fps is None:
            return ShardSample(self.key, encode_png(np.ascontiguousarray(self.frames[0])), "png", self.caption,
                               self.metadata)
        if self.planes is not None:
            media = encode_i420_mp4(self.planes, self.fps, crf=settings.crf, preset=settings.preset, threads=threads)
        else:
            media = encode_mp4(list(np.ascontiguousarray(self.frames)), self.fps, crf=settings.crf,
                               preset=settings.preset, threads=threads)
        return ShardSample(self.key, media, "mp4", self.caption, self.metadata)


def prepare_clip(clip: Clip, settings: EncodeSettings) -> PreparedClip:
    """Decode, rotate upright, crop and resize a clip to the stored size (even sides)."""
    crop = clip_crop(clip)
    indices = list(range(clip.start_frame, clip.end_frame))
    rotation = (clip.info.rotation if clip.info else 0) % 360
    is_image = clip.info is None or not clip.info.fps or clip.num_frames == 1
    planes = frames = None
    if not is_image and not rotation:
        planes = planar_clip(clip, crop, indices, settings.max_side)
    if planes is not None:  # straight from the cached I420 planes: no RGB round trip
        height, width = planes[0].shape[0] * 2 // 3, planes[0].shape[1]
    else:
        frames = read_frames(clip.source, indices, crop=crop, max_side=settings.max_side)  # (F, H, W, 3)
        if rotation:
            frames = np.rot90(frames, k=rotation // 90, axes=(1, 2))
        frames = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]  # even sizes for yuv420p
        height, width = frames.shape[1:3]
    full = clip.crop or CropBox(0, 0, clip.info.width if clip.info else width, clip.info.height if clip.info else height)
    fps = None if is_image else float(clip.info.fps)
    metadata = ClipMetadata(
        source=clip.source, start_frame=clip.start_frame, end_frame=clip.end_frame,
        fps=fps, num_frames=len(indices), width=width, height=height,
        crop=full, motion_score=clip.motion_score, aesthetic_score=clip.aesthetic_score,
        caption_source=clip.caption_source or "none",
        extra={"rotation": rotation, "caption": clip.caption or "", **clip.extra},
    )
    return PreparedClip(clip.key, clip.caption or "", metadata, fps, planes, frames)


def encode_clip(clip: Clip, settings: EncodeSettings, threads: int = 1) -> ShardSample:
    """Decode, rotate upright, crop and resize a clip, and encode it as an H.264 sample of the schema."""
    return prepare_clip(clip, settings).encode(settings, threads)


def planar_clip(clip: Clip, crop: tuple[int, int, int, int] | None, indices: list[int],
                max_side: int) -> list[np.ndarray] | None:
    """The clip's frames as I420 planes at the stored size (the longer side at most ``max_side``, both
    even), cropped and resized plane by plane from the shared decode; None when that cannot be done
    exactly (the source is not cached as planes, or the crop has odd coordinates)."""
    source = SOURCE_FRAMES.get(clip.source)
    if source is None or not source.planar or indices[-1] >= len(source.frames):
        return None
    if crop is not None and any(value % 2 for value in crop):
        return None
    height, width = source.frames[0].shape[0] * 2 // 3, source.frames[0].shape[1]
    crop_width, crop_height = (crop[2], crop[3]) if crop else (width, height)
    scaled_width, scaled_height = shrunk_size(crop_width, crop_height, max_side)
    size = (scaled_width // 2 * 2, scaled_height // 2 * 2)
    if min(size) < 2:
        return None
    return [crop_resize_i420(source.frames[index], crop, size) for index in indices]


def shard_path(output: Path, index: int) -> Path:
    return output / "shards" / f"curated-{index:06d}.tar"


_STAGES_CACHE: dict[str, list[Any]] = {}


def cached_stages(cfg_container: dict[str, Any]) -> list[Any]:
    """The stages of a resolved config, built once per worker process for each distinct
    ``stages`` + ``curation`` (models load once; the config is parsed only then, not per shard)."""
    key = json.dumps([cfg_container["stages"], cfg_container["curation"]], sort_keys=True, default=str)
    if key not in _STAGES_CACHE:
        _STAGES_CACHE[key] = build_stages(OmegaConf.create(cfg_container))
    return _STAGES_CACHE[key]


class ShardPipeline:
    """Curates shards one after another in this process, overlapping the work of consecutive shards.

    The main thread runs the stages source by source; one background thread encodes the accepted clips
    with x264 and, after the last clip of a shard, writes that shard's tar and stats. ``submit``
    therefore returns as soon as a shard's sources are analysed, with a future of the written path,
    and the next shard's analysis overlaps the previous shard's last encodes and its write. Both
    threads release the GIL for most of their work. At most two prepared clips (raw frames) wait for
    the encoder at any time, across shards.
    """

    MAX_WAITING_CLIPS = 2

    def __init__(self, cfg_container: dict[str, Any], task: int = 0):
        self.cfg = cfg_container
        self.task = task
        self.stages = cached_stages(cfg_container)
        self.settings = EncodeSettings(**cfg_container["encode"])
        self.threads = self.settings.encoder_threads(int(cfg_container.get("concurrent_workers",
                                                                           cfg_container["workers"])))
        SOURCE_FRAMES.configure(cfg_container.get("frame_cache_mb", 1024))
        self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode")
        self._waiting: deque[Future[ShardSample]] = deque()

    def __enter__(self) -> ShardPipeline:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._encoder.shutdown(wait=True)
        SOURCE_FRAMES.clear()  # the last source's frames: not kept past the run

    def submit(self, index: int, items: list[str]) -> Future[str]:
        """Analyse ``items`` now; encode their clips and write shard ``index`` on the encoder thread."""
        rejections: list[Rejection] = []
        clips_per_input: dict[str, int] = {}
        jobs: list[tuple[str, Clip, Future[ShardSample]]] = []
        for item in items:
            clips, rejected = run_stages(Path(item), self.stages)
            rejections += rejected
            clips_per_input[item] = 0
            for clip in clips:
                future: Future[ShardSample] = Future()
                try:
                    prepared = prepare_clip(clip, self.settings)
                    future = self._encoder.submit(prepared.encode, self.settings, self.threads)
                except Exception as error:  # unreadable frames: recorded as a rejection when the shard is written
                    future.set_exception(error)
                jobs.append((item, clip, future))
                self._waiting.append(future)
                while len(self._waiting) > self.MAX_WAITING_CLIPS or (self._waiting and self._waiting[0].done()):
                    wait([self._waiting.popleft()])
        return self._encoder.submit(self._write, index, items, jobs, rejections, clips_per_input)

    def _write(self, index: int, items: list[str], jobs: list[tuple[str, Clip, Future[ShardSample]]],
               rejections: list[Rejection], clips_per_input: dict[str, int]) -> str:
        """Shard ``index`` from its encoded clips (all done: the encoder runs in order) and rejections."""
        samples = []
        for item, clip, future in jobs:
            try:
                samples.append(future.result())
                clips_per_input[item] += 1
            except Exception as error:
                rejections.append(Rejection(clip.key, "encode", "encode_error", f"{type(error).__name__}: {error}",
                                            item))
        path = shard_path(Path(self.cfg["output"]), index)
        scores = [{"key": s.key, "motion_score": s.metadata.motion_score,
                   "aesthetic_score": s.metadata.aesthetic_score} for s in samples]
        write_shard(path, samples, extra_stats={"task": self.task, "inputs": list(items),
                                                "clips_per_input": clips_per_input,
                                                "rejections": [r.to_dict() for r in rejections], "scores": scores})
        return str(path)


def process_shard(index: int, items: list[str], cfg_container: dict[str, Any], task: int = 0) -> str:
    """Curate ``items`` into shard ``index`` and wait until it is written (one pool task).
    ``cfg_container`` is the resolved config as plain containers (what ``run_task`` passes)."""
    with ShardPipeline(cfg_container, task) as pipeline:
        return pipeline.submit(index, items).result()


def work_shards(inputs: list[Path], items_per_shard: int) -> list[list[str]]:
    return [[str(p) for p in inputs[i : i + items_per_shard]] for i in range(0, len(inputs), items_per_shard)]


def run_task(cfg: DictConfig, rank: int = 0, num_tasks: int = 1) -> list[str]:
    """Process the shards of task ``rank`` of ``num_tasks`` (shard index modulo task count); skip the
    complete ones, remove stale temporary tars. Returns the shards written now."""
    inputs = list_inputs(cfg.input)
    shards = work_shards(inputs, cfg.items_per_shard)
    output = Path(cfg.output)
    mine = [index for index in range(len(shards)) if index % num_tasks == rank]
    todo = []
    for index in mine:
        path = shard_path(output, index)
        path.with_name(path.name + ".tmp").unlink(missing_ok=True)  # a killed run's partial tar
        if not is_complete(path):
            todo.append(index)
    log.info("task %d/%d: %d shards, %d already complete", rank, num_tasks, len(mine), len(mine) - len(todo))
    container = OmegaConf.to_container(cfg, resolve=True)
    workers = max(1, int(cfg.workers))
    container["concurrent_workers"] = 1 if workers == 1 or len(todo) <= 1 else min(workers, len(todo))
    if container["concurrent_workers"] == 1:  # in this process, each shard's analysis overlapping the last one's writing
        with ShardPipeline(container, rank) as pipeline:
            written = [pipeline.submit(index, shards[index]) for index in todo]
            return [future.result() for future in written]
    with multiprocessing.get_context("spawn").Pool(container["concurrent_workers"]) as pool:
        return pool.starmap(process_shard, [(index, shards[index], container, rank) for index in todo])


def iter_shard_stats(output: Path) -> Iterator[dict[str, Any]]:
    for stats in sorted((output / "shards").glob("*.stats.json")):
        yield json.loads(stats.read_text())
