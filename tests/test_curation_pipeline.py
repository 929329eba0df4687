"""The curation pipeline end to end: accounting for every input, bad inputs, resume after a kill,
SLURM-style task splitting through submitit's local executor, and shards the data module reads."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time

import numpy as np
import pytest
from helpers import REPO_ROOT, compose_config
from omegaconf import OmegaConf
from test_curation_stages import write_audio_only, write_frames, write_with_pyav, write_zero_frames

from data_pipeline import runner
from data_pipeline.__main__ import run as curate
from data_pipeline.clips import Clip
from data_pipeline.frames import read_frames
from data_pipeline.runner import EncodeSettings, encode_clip
from ltx.data.datamodule import VideoDataModule
from ltx.data.video_io import decode_frames, probe_video

STAGES = "[probe,scenes,letterbox,motion,caption]"
SOURCES = ("two_scene_cuts", "letterboxed_blue_circle", "pillarboxed_red_square", "static_green_circle",
           "red_circle_stripes")


@pytest.fixture(scope="module")
def inputs(demo_dir, tmp_path_factory):
    """A list file: demo sources with known content plus broken files of every kind we can make."""
    root = tmp_path_factory.mktemp("curation_inputs")
    bad = {
        "zero_byte.mp4": b"",
        "random_bytes.mp4": os.urandom(4096),
        "text_file.mp4": b"this is not a video\n" * 20,
        "truncated.mp4": (demo_dir / "sources" / "red_circle_stripes.mp4").read_bytes()[:3000],
    }
    for name, data in bad.items():
        (root / name).write_bytes(data)
    made = [  # the other awkward kinds, written with the stage tests' helpers
        write_audio_only(root / "audio_only.m4a"),
        write_zero_frames(root / "zero_frames.avi"),
        write_frames(root / "single_frame.mp4", [np.zeros((48, 64, 3), dtype=np.uint8)]),
        write_frames(root / "huge.mp4", [np.zeros((400, 400, 3), dtype=np.uint8)] * 3),  # over max_pixels below
        write_with_pyav(root / "rotated.mp4", [i * 40 for i in range(30)], rotation=90),
        write_with_pyav(root / "variable_rate.mp4", np.cumsum([0] + [40 if i % 2 else 60 for i in range(29)]).tolist()),
    ]
    paths = [str(demo_dir / "sources" / f"{name}.mp4") for name in SOURCES]
    paths += [str(demo_dir / "sources" / "image_red_square.png")] + [str(root / name) for name in bad] + made
    listing = root / "inputs.txt"
    listing.write_text("\n".join(paths) + "\n")
    return listing, len(paths)


def curate_overrides(listing, output) -> list[str]:
    return [f"input={listing}", f"output={output}", f"stages={STAGES}", "workers=1", "items_per_shard=4",
            "encode.preset=ultrafast", "curation.probe.kwargs.max_pixels=100000"]


def curate_config(listing, output, *extra: str):
    return compose_config("curate", [*curate_overrides(listing, output), *extra])


@pytest.fixture(scope="module")
def clean_run(inputs, tmp_path_factory):
    listing, count = inputs
    output = tmp_path_factory.mktemp("curated")
    report = curate(curate_config(listing, output))
    return output, report, count


def shard_contents(output) -> dict[str, dict]:
    """Every sample's metadata and caption by key (media bytes left out: H.264 bytes may differ)."""
    contents = {}
    for shard in sorted((output / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                key, _, extension = member.name.partition(".")
                if extension in ("json", "txt"):
                    contents.setdefault(key, {})[extension] = tar.extractfile(member).read().decode()
    return contents


def test_every_input_ends_as_clips_or_rejections(clean_run):
    output, report, count = clean_run
    assert report["inputs"] == report["expected_inputs"] == count
    assert report["unaccounted_inputs"] == []
    assert report["inputs_with_clips"] + report["inputs_fully_rejected"] == count
    rejects = [json.loads(line) for line in (output / "rejects.jsonl").read_text().splitlines()]
    assert len(rejects) == report["rejections"] and all(r["reason"] and r["stage"] and r["source"] for r in rejects)
    reasons = {os.path.basename(r["source"]): r["reason"] for r in rejects if r["stage"] == "probe"}
    for name in ("zero_byte.mp4", "random_bytes.mp4", "text_file.mp4"):
        assert reasons[name] == "unreadable"
    assert (reasons["audio_only.m4a"], reasons["zero_frames.avi"]) == ("no_video_stream", "zero_frames")
    assert (reasons["single_frame.mp4"], reasons["huge.mp4"]) == ("too_few_frames", "too_large")
    truncated = [r for r in rejects if r["source"].endswith("truncated.mp4")]
    assert truncated and all(r["reason"] in ("unreadable", "encode_error") for r in truncated)
    assert {r["reason"] for r in rejects if "static_green_circle" in r["source"]} == {"too_static"}
    for name in ("report.json", "motion_score_histogram.png", "aesthetic_score_histogram.png"):
        assert (output / name).exists()


def test_shard_pipeline_overlaps_shards_bounds_waiting_clips_and_records_encode_errors(demo_dir, tmp_path,
                                                                                        monkeypatch):
    """Shards are analysed back to back while the encoder thread finishes the previous ones: at most
    MAX_WAITING_CLIPS prepared clips wait (one more is being prepared), every shard holds exactly its
    own inputs' clips, and an encode that fails becomes an ``encode_error`` rejection of its shard."""
    sources = [str(demo_dir / "sources" / f"{name}.mp4") for name in SOURCES if name != "static_green_circle"]
    container = OmegaConf.to_container(curate_config(sources[0], tmp_path), resolve=True)
    live, lock = {"now": 0, "most": 0}, threading.Lock()
    real_prepare = runner.prepare_clip

    class SlowEncode:  # holds its frames until encoded, like a PreparedClip; fails for one source
        def __init__(self, prepared):
            self.prepared = prepared

        def encode(self, settings, threads):
            time.sleep(0.3)  # slower than analysing a source, so prepared clips pile up to the bound
            try:
                if self.prepared.key.startswith("pillarboxed_red_square"):
                    raise RuntimeError("x264 exploded")
                return self.prepared.encode(settings, threads)
            finally:
                with lock:
                    live["now"] -= 1

    def counting_prepare(clip, settings):
        prepared = real_prepare(clip, settings)
        with lock:
            live["now"] += 1
            live["most"] = max(live["most"], live["now"])
        return SlowEncode(prepared)

    monkeypatch.setattr(runner, "prepare_clip", counting_prepare)
    shards = [sources[:2], sources[2:]]
    with runner.ShardPipeline(container) as pipeline:
        written = [pipeline.submit(index, items) for index, items in enumerate(shards)]
        assert not written[-1].done()  # submit returns once the sources are analysed, before the write
        paths = [future.result() for future in written]
    assert [os.path.basename(path) for path in paths] == ["curated-000000.tar", "curated-000001.tar"]
    assert 3 <= live["most"] <= runner.ShardPipeline.MAX_WAITING_CLIPS + 1 and live["now"] == 0
    for stats, items in zip(runner.iter_shard_stats(tmp_path), shards, strict=True):
        assert stats["inputs"] == items
        with tarfile.open(tmp_path / "shards" / f"curated-{items is shards[1]:06d}.tar") as tar:
            keys = {member.name.partition(".")[0] for member in tar}
        assert keys and all(any(key.startswith(os.path.basename(i)[:-4]) for i in items) for key in keys)
        assert sum(stats["clips_per_input"].values()) == len(keys)
        failed = [r for r in stats["rejections"] if r["reason"] == "encode_error"]
        assert bool(failed) == any("pillarboxed" in item for item in items)
        assert all("x264 exploded" in r["detail"] and "pillarboxed" in r["source"] for r in failed)


def test_clips_carry_crops_scenes_and_sidecar_captions(clean_run, demo_dir):
    output, _, _ = clean_run
    contents = shard_contents(output)
    two_cuts = sorted(key for key in contents if key.startswith("two_scene_cuts"))
    assert len(two_cuts) == 2  # one clip per scene
    truth = json.loads((demo_dir / "sources" / "two_scene_cuts.truth.json").read_text())
    for key, scene in zip(two_cuts, truth["scenes"]):
        meta = json.loads(contents[key]["json"])
        assert contents[key]["txt"].lower().startswith(scene["caption"][:20].lower())
        assert meta["caption_source"] == "sidecar" and meta["caption"] == contents[key]["txt"]
        assert scene["start_frame"] <= meta["start_frame"] < meta["end_frame"] <= scene["end_frame"]
    letterbox = json.loads(contents["letterboxed_blue_circle_000000"]["json"])
    assert abs(letterbox["crop"]["y"] - 24) <= 2 and abs(letterbox["crop"]["h"] - 144) <= 2
    assert letterbox["motion_score"] > 0 and letterbox["aesthetic_score"] is None


def test_the_training_data_module_reads_the_shards(clean_run):
    output, _, _ = clean_run
    module = VideoDataModule(str(output / "shards"), [[1, 64, 64], [9, 64, 64], [17, 96, 128]], batch_size=1,
                             resampled=False, num_workers=0)
    keys = [key for batch in module.train_dataloader() for key in batch["key"]]
    assert sorted(keys) == sorted(shard_contents(output)) and not module.skipped


def test_rerun_after_a_kill_gives_the_clean_run_shards(clean_run, inputs, tmp_path):
    clean_output, _, _ = clean_run
    listing, _ = inputs
    output = tmp_path / "killed"
    command = [sys.executable, "-m", "data_pipeline", *curate_overrides(listing, output)]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not list((output / "shards").glob("*.stats.json")):
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished_before = len(list((output / "shards").glob("*.stats.json")))
    assert 1 <= finished_before < 5, "the kill should land mid-run"
    subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True, timeout=600)
    assert not list((output / "shards").glob("*.tmp"))
    assert sorted(p.name for p in (output / "shards").iterdir()) == sorted(p.name for p in (clean_output / "shards").iterdir())
    assert shard_contents(output) == shard_contents(clean_output)


def test_submitit_tasks_split_the_work_shards(inputs, tmp_path):
    listing, count = inputs
    output = tmp_path / "submitit"
    report = curate(curate_config(listing, output, "launcher=submitit_local", "submitit.num_tasks=2",
                                  "submitit.parameters.timeout_min=10"))
    assert report["inputs"] == count and report["unaccounted_inputs"] == []
    tasks = {}
    for stats in sorted((output / "shards").glob("*.stats.json")):
        index = int(stats.name.split("-")[1].split(".")[0])
        tasks[index] = json.loads(stats.read_text())["task"]
    assert tasks == {index: index % 2 for index in range(len(tasks))} and len(tasks) >= 2


def test_encode_stores_rotated_sources_upright(demo_dir):
    source = str(demo_dir / "sources" / "red_circle_stripes.mp4")
    info = probe_video(open(source, "rb").read())
    clip = Clip(source, info=dataclasses.replace(info, rotation=90), start_frame=0, end_frame=9)
    sample = encode_clip(clip, EncodeSettings(max_side=128, preset="ultrafast"))
    assert (sample.metadata.width, sample.metadata.height) == (96, 128)  # 128x96 source, turned a quarter
    upright = read_frames(source, [0], max_side=128)[0]
    stored = decode_frames(sample.media, [0])[0]
    assert np.abs(stored.astype(float) - np.rot90(upright, k=1).astype(float)).mean() < 6


def test_encoder_threads_share_the_cpus_between_workers():
    cpus = len(os.sched_getaffinity(0))
    assert EncodeSettings().encoder_threads(1) == cpus
    assert EncodeSettings().encoder_threads(cpus * 2) == 1
    assert EncodeSettings(threads=3).encoder_threads(8) == 3
    for bad in (0, "many"):
        with pytest.raises(ValueError, match="encode.threads must be a positive integer or 'auto'"):
            EncodeSettings(threads=bad).encoder_threads(1)
