"""Data throughput: the training loaders' samples/s, and the curation pipeline against pure decoding.

Sections:
  - ``data_loader``: samples/s of ``VideoDataModule`` over shards of the demo sources (PyAV decode,
    bucketing, crops; 0 and, in full mode, 2 workers) and of ``LatentDataModule`` over small latent
    shards written here. Given the samples/s a training step consumes (``train_samples_per_s``), one row
    per loader with ratio = loader / step (>= 1: the loader is not the bottleneck).
  - ``curation``: the curation pipeline (neural stages off, sidecar captions, one worker) against
    decoding every frame of the same files to RGB with PyAV, in this process: over the demo sources
    (256x192), and in full mode over six of them rendered at 4x the size (1024x768, nearer what raw
    footage is; per-frame work at a fixed size, such as scene detection and optical flow, weighs less
    against decoding there).

    python -m benchmarks.data   # quick mode, rows as JSON
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from benchmarks.harness import Row, comparison, interleave
from data_pipeline.__main__ import run as curate
from data_pipeline.demo import VALIDATION_SOURCES, demo_sources, pack_demo_shards, write_source
from data_pipeline.runner import list_inputs
from ltx.cli.train import CONFIG_DIR
from ltx.data.datamodule import ShardDataModule, VideoDataModule
from ltx.data.latents import LatentDataModule, LatentSample
from ltx.data.shards import write_shards

LOADER_SECTION, CURATION_SECTION = "data_loader", "curation"
CURATION_STAGES = "[probe,scenes,letterbox,motion,caption]"  # no aesthetic (neural); captions from sidecars
LATENT_SHAPE, TEXT_SHAPE = (128, 3, 4, 4), (128, 32)
TRAIN_PAIRS = {"video": ("vae", "video loader vs tiny VAE step"), "latent": ("dit", "latent loader vs tiny DiT step")}


def write_demo_sources(directory: Path) -> Path:
    """The demo's raw sources (18 deterministic videos and images, with sidecars) under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for spec in demo_sources():
        write_source(spec, directory)
    return directory


HIGH_RESOLUTION_SOURCES = ("red_circle_stripes", "three_scene_cuts", "letterboxed_blue_circle",
                           "nearly_static_yellow_triangle", "white_square_diagonal", "two_scene_cuts")


def write_high_resolution_sources(directory: Path, scale: int = 4) -> Path:
    """Six demo videos (a single shot, cuts, bars, a nearly static one) rendered ``scale`` times larger."""
    directory.mkdir(parents=True, exist_ok=True)
    for spec in demo_sources():
        if spec.name in HIGH_RESOLUTION_SOURCES:
            larger = dataclasses.replace(spec, width=spec.width * scale, height=spec.height * scale,
                                         bar_size=spec.bar_size * scale)
            write_source(larger, directory)
    return directory


def write_video_shards(source_dir: Path, shard_dir: Path) -> Path:
    """The demo training sources packed uncurated into shards, as ``make demo`` does."""
    train = [spec for spec in demo_sources() if spec.name not in VALIDATION_SOURCES]
    pack_demo_shards(train, source_dir, shard_dir, samples_per_shard=4)
    return shard_dir


def write_latent_shards(directory: Path, num_samples: int = 64, per_shard: int = 8) -> Path:
    """Random latent samples of one shape (``LATENT_SHAPE``, text ``TEXT_SHAPE``) in shards of ``per_shard``."""
    generator = torch.Generator().manual_seed(0)

    def samples() -> Iterator[LatentSample]:
        for index in range(num_samples):
            yield LatentSample(
                key=f"latent-{index:05d}", latents=torch.randn(LATENT_SHAPE, generator=generator),
                text=torch.randn(TEXT_SHAPE, generator=generator), text_mask=torch.ones(TEXT_SHAPE[0], dtype=torch.bool),
                caption=f"sample {index}", metadata={"fps": 24.0})

    write_shards(samples(), directory, per_shard, prefix="latents")
    return directory


def data_config(name: str) -> dict[str, Any]:
    """The loader settings of ``conf/data/<name>.yaml``, without target, shard paths and seed."""
    settings = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "data" / f"{name}.yaml"), resolve=False)
    for key in ("_target_", "train_shards", "val_shards", "seed"):
        settings.pop(key, None)
    return settings


def build_loader(kind: str, shards: Path, num_workers: int, batches: int) -> ShardDataModule:
    """A single-rank data module of ``kind`` (video: the demo settings; latent: the latents settings)."""
    cls, config = (VideoDataModule, "demo") if kind == "video" else (LatentDataModule, "latents")
    settings = {**data_config(config), "num_workers": num_workers, "batches_per_epoch": batches}
    return cls(train_shards=str(shards), seed=0, rank=0, world_size=1, **settings)


def measure_loader(module: ShardDataModule, batches: int) -> dict[str, Any]:
    """Samples/s over ``batches`` batches of ``train_dataloader()``, after one untimed warm-up batch."""
    iterator = iter(module.train_dataloader())
    next(iterator)  # worker start-up, first shard open
    samples, start = 0, time.perf_counter()
    for _ in range(batches):
        samples += len(next(iterator)["key"])
    seconds = time.perf_counter() - start
    return {"samples_per_s": samples / seconds, "seconds": seconds, "batches": batches, "samples": samples,
            "batch_size": module.batch_size, "num_workers": module.num_workers}


def loader_rows(video_shards: Path, latent_shards: Path, quick: bool) -> tuple[list[Row], dict[str, float]]:
    """One row per loader setting; also the samples/s of each kind at the demo's settings (0 workers)."""
    video_batches, latent_batches = (12, 40) if quick else (40, 200)  # workers prefetch: keep runs long
    setups = [("video", video_shards, 0, video_batches), ("latent", latent_shards, 0, latent_batches)]
    if not quick:
        setups += [("video", video_shards, 2, video_batches), ("latent", latent_shards, 2, latent_batches)]
    rows, baseline = [], {}
    for kind, shards, workers, batches in setups:
        result = measure_loader(build_loader(kind, shards, workers, batches + 1), batches)
        if workers == 0:
            baseline[kind] = result["samples_per_s"]
        notes = "demo sources packed uncurated; PyAV decode, buckets, crops" if kind == "video" else \
            f"latents {LATENT_SHAPE}, text {TEXT_SHAPE}"
        rows.append(Row(LOADER_SECTION, f"{kind} loader, {workers} workers", result, notes=notes))
    return rows, baseline


def consumption_rows(loader_samples_per_s: dict[str, float], train_samples_per_s: dict[str, float]) -> list[Row]:
    """Loader samples/s against the samples/s a training step consumes (target: ratio >= 1)."""
    rows = []
    for kind, (model, label) in TRAIN_PAIRS.items():
        if model not in train_samples_per_s or kind not in loader_samples_per_s:
            continue
        ours, theirs = loader_samples_per_s[kind], train_samples_per_s[model]
        rows.append(Row(LOADER_SECTION, label, {"samples_per_s": ours}, {"samples_per_s": theirs}, ours / theirs, 1.0,
                        notes="loader with 0 workers; ratio = loader samples/s / train step samples/s"))
    return rows


def curation_config(source_dir: Path, output: Path) -> DictConfig:
    """The shipped curation config over ``source_dir`` with neural stages off and one worker."""
    overrides = [f"input={source_dir}", f"output={output}", f"stages={CURATION_STAGES}", "curation/caption=sidecar",
                 "launcher=local", "workers=1"]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("curate", overrides=overrides)


def decode_all(paths: list[Path]) -> int:
    """Decode every frame of every file with PyAV to RGB arrays; returns the frame count."""
    frames = 0
    for path in paths:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                frame.to_ndarray(format="rgb24")
                frames += 1
    return frames


def warm_up(inputs: list[Path], scratch: Path) -> None:
    """Curate the smallest video once, untimed: builds the stages (cached per process), loads lazy imports."""
    smallest = min((path for path in inputs if path.suffix == ".mp4"), key=lambda path: path.stat().st_size)
    warm_dir = scratch / "warm-up"
    warm_dir.mkdir()
    (warm_dir / smallest.name).write_bytes(smallest.read_bytes())
    with contextlib.redirect_stdout(io.StringIO()):
        curate(curation_config(warm_dir, scratch / "warm-up-out"))


def curation_row(source_dir: Path, scratch: Path, quick: bool, label: str) -> Row:
    """Curation wall time against pure PyAV decode of the same inputs, interleaved. The config is
    composed once, outside the timing (Hydra's compose takes about 0.6 s)."""
    inputs = list_inputs(source_dir)
    cfg = curation_config(source_dir, scratch / "unused")
    reports: list[dict[str, Any]] = []

    def run_curation() -> None:
        output = scratch / f"run-{len(reports)}"  # fresh output: a rerun into the same one resumes (skips all)
        cfg.output = str(output)
        with contextlib.redirect_stdout(io.StringIO()):  # the pipeline prints a summary line
            curate(cfg)
        reports.append(json.loads((output / "report.json").read_text()))

    warm_up(inputs, scratch)
    frames: list[int] = []
    times = interleave({"curation": run_curation, "decode": lambda: frames.append(decode_all(inputs))},
                       repeats=1 if quick else 3, warmup=0)
    report = reports[-1]
    row = comparison(CURATION_SECTION, f"curation (no neural stages) vs PyAV decode, {label}",
                     times["curation"], times["decode"], target=0.5, inputs=len(inputs), frames_decoded=frames[-1],
                     clips_written=report["clips_written"], rejections=report["rejections_by_reason"],
                     stages=CURATION_STAGES, workers=1)
    row.ours["clips_per_s"] = report["clips_written"] / row.ours["median_s"]
    row.ours["clips_written"] = report["clips_written"]
    row.reference["frames_per_s"] = frames[-1] / row.reference["median_s"]
    row.notes = "ratio = decode time / curation time; target 0.5: curation within 2x of pure decode"
    return row


def run(quick: bool, train_samples_per_s: dict[str, float] | None = None) -> list[Row]:
    """Rows of the ``data_loader`` and ``curation`` sections."""
    with tempfile.TemporaryDirectory(prefix="bench-data-") as temporary:
        root = Path(temporary)
        source_dir = write_demo_sources(root / "sources")
        video_shards = write_video_shards(source_dir, root / "video_shards")
        latent_shards = write_latent_shards(root / "latent_shards")
        rows, loader_samples_per_s = loader_rows(video_shards, latent_shards, quick)
        rows += consumption_rows(loader_samples_per_s, train_samples_per_s or {})
        scratch = root / "curation"
        scratch.mkdir()
        rows.append(curation_row(source_dir, scratch, quick, "demo sources (256x192)"))
        if not quick:
            large = write_high_resolution_sources(root / "sources-4x")
            (scratch / "4x").mkdir()
            rows.append(curation_row(large, scratch / "4x", quick, "6 demo sources at 4x (1024x768)"))
    return rows


if __name__ == "__main__":
    start = time.perf_counter()
    result = run(quick=True)
    print(json.dumps([row.as_dict() for row in result], indent=2, default=str))
    print(f"{time.perf_counter() - start:.1f} s")
