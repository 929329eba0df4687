"""The curation stages probe, scenes, letterbox and motion on small generated videos with known truth."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from data_pipeline.clips import Clip, Rejection
from data_pipeline.demo import (
    SceneSpec,
    SourceSpec,
    demo_sources,
    render_background,
    render_source,
    write_source,
)
from data_pipeline.frames import (
    SOURCE_FRAMES,
    crop_resize_i420,
    evenly_spaced,
    prepare_frame,
    prepare_gray,
    read_frames,
)
from data_pipeline.runner import EncodeSettings, encode_clip, run_stages
from data_pipeline.stages.letterbox import LetterboxCropStage
from data_pipeline.stages.motion import MotionStage
from data_pipeline.stages.probe import ProbeStage
from data_pipeline.stages.scenes import (
    FramesVideoStream,
    HSVDifferenceAdaptiveDetector,
    HSVDifferenceContentDetector,
    SceneSplitStage,
)
from ltx.data.schema import CropBox
from ltx.data.shards import ShardSample
from ltx.data.video_io import VideoDecodeError, decode_frames, encode_mp4, encode_png
from ltx.registry import CURATION_STAGES

W, H = 160, 120
S = SceneSpec
MOVING = (S("circle", "red", "left_to_right", "striped", "blue", 36),)
CUTS = (S("circle", "purple", "left_to_right", "striped", "yellow", 30),  # cuts at frames 30 and 50
        S("square", "cyan", "top_to_bottom", "checkered", "red", 20),
        S("triangle", "red", "right_to_left", "dotted", "blue", 34))


def aesthetic_test_kwargs(directory: Path) -> dict[str, Any]:
    from test_curation_captions import write_tiny_aesthetic_weights  # the tiny local weights its tests use

    return write_tiny_aesthetic_weights(directory)


STAGE_TEST_KWARGS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "probe": lambda _: {}, "scenes": lambda _: {}, "letterbox": lambda _: {}, "motion": lambda _: {},
    "caption": lambda _: {},  # the sidecar captioner reads moving.txt
    "aesthetic": aesthetic_test_kwargs,
}
"""Keyword arguments (made in a temporary directory) that let each registered stage run on a small
generated clip; a stage registered without an entry here fails
``test_every_registered_stage_runs_on_a_probed_clip``."""


def write_frames(path: Path, frames: list[np.ndarray], fps: float = 24.0) -> str:
    path.write_bytes(encode_mp4(frames, fps, preset="ultrafast"))
    return str(path)


def write_spec(directory: Path, name: str, scenes: tuple[SceneSpec, ...], **spec: object) -> str:
    source = SourceSpec(name, scenes, "test", **{"width": W, "height": H, **spec})
    return write_frames(directory / f"{name}.mp4", list(render_source(source)), source.fps)


def probed(source: str) -> Clip:
    [clip] = ProbeStage()(Clip(source))
    assert isinstance(clip, Clip), clip
    return clip


def only(outputs: list[Clip | Rejection]) -> Clip | Rejection:
    assert len(outputs) == 1, outputs
    return outputs[0]


def rejection(outputs: list[Clip | Rejection]) -> Rejection:
    result = only(outputs)
    assert isinstance(result, Rejection) and result.reason and result.detail, result
    return result


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, str]:
    """Every test video, written once: moving, static and drifting shots, cuts, bars, a flash."""
    d = tmp_path_factory.mktemp("curation")
    scene = S("circle", "blue", "right_to_left", "striped", "orange", 40)
    spec = SourceSpec("lb", (scene,), "letterbox", width=W, height=H, bars="letterbox", bar_size=16)
    letterbox = list(render_source(spec))
    letterbox[20] = np.full_like(letterbox[20], 255)  # a white flash on the middle sampled frame
    (d / "moving.txt").write_text(MOVING[0].caption + "\n")  # for the sidecar captioner
    return {
        "moving": write_spec(d, "moving", MOVING),
        "cuts": write_spec(d, "cuts", CUTS),
        "static": write_spec(d, "static", (S("circle", "green", "still", "checkered", "blue", 36),)),
        "letterbox_flash": write_frames(d / "letterbox_flash.mp4", letterbox),
        "pillarbox16": write_spec(d, "pillarbox16", MOVING, bars="pillarbox", bar_size=24, black_level=16),
        "narrow": write_spec(d, "narrow", MOVING, bars="pillarbox", bar_size=48),
    }


# probe


def test_probe_fills_info_and_the_frame_range(media):
    clip = probed(media["moving"])
    assert clip.info is not None
    assert (clip.info.fps, clip.info.num_frames, clip.info.width, clip.info.height) == (24.0, 36, W, H)
    assert (clip.info.codec, clip.info.rotation, clip.start_frame, clip.end_frame) == ("h264", 0, 0, 36)
    [counted] = ProbeStage(count_frames=True)(Clip(media["moving"]))
    assert counted == clip


def test_probe_accepts_images_as_one_frame_clips(tmp_path):
    path = tmp_path / "still.png"
    path.write_bytes(encode_png(np.full((48, 64, 3), 90, dtype=np.uint8)))
    clip = probed(str(path))
    info = clip.info
    assert (info.fps, info.num_frames, info.width, info.height, clip.end_frame) == (0.0, 1, 64, 48, 1)
    assert rejection(ProbeStage(images=False)(Clip(str(path)))).reason == "image"


@pytest.mark.parametrize("content", ["zero_byte", "truncated", "random_bytes", "text", "missing",
                                     "truncated_png"])
def test_probe_rejects_unreadable_files(tmp_path, media, content):
    data = Path(media["moving"]).read_bytes()
    contents = {"zero_byte": b"", "truncated": data[: len(data) // 2], "text": b"not a video\n" * 40,
                "random_bytes": np.random.default_rng(0).bytes(4000),
                "truncated_png": encode_png(np.zeros((64, 64, 3), dtype=np.uint8))[:60]}
    path = tmp_path / ("broken.png" if content == "truncated_png" else "broken.mp4")
    if content != "missing":
        path.write_bytes(contents[content])
    assert rejection(ProbeStage()(Clip(str(path)))).reason == "unreadable"


def write_audio_only(path):
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        for index in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, index * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return str(path)


def write_zero_frames(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
        container.mux(stream.encode(None))
    return str(path)


def test_probe_rejects_audio_only_files(tmp_path):
    result = rejection(ProbeStage()(Clip(write_audio_only(tmp_path / "audio.m4a"))))
    assert (result.reason, result.detail) == ("no_video_stream", "streams: audio")


def test_probe_rejects_a_video_stream_without_frames(tmp_path):
    path = write_zero_frames(tmp_path / "empty.avi")  # mp4 drops an empty track; avi keeps it
    assert rejection(ProbeStage()(Clip(path))).reason == "zero_frames"


def test_probe_rejects_single_frame_and_oversized_videos(tmp_path, media):
    single = write_frames(tmp_path / "single.mp4", [np.zeros((48, 64, 3), dtype=np.uint8)])
    assert rejection(ProbeStage()(Clip(single))).reason == "too_few_frames"
    assert rejection(ProbeStage(max_pixels=W * H - 1)(Clip(media["moving"]))).reason == "too_large"


def write_with_pyav(path: Path, frame_times_ms: list[int], rotation: int = 0) -> str:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        for index, time_ms in enumerate(frame_times_ms):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), index * 8, np.uint8), format="rgb24")
            frame.pts, frame.time_base = time_ms, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return str(path)


@pytest.mark.parametrize("degrees, stored", [(90, 90), (-90, 270), (180, 180)])
def test_probe_keeps_the_display_rotation(tmp_path, degrees, stored):
    clip = probed(write_with_pyav(tmp_path / "rotated.mp4", [i * 40 for i in range(6)], rotation=degrees))
    assert (clip.info.rotation, clip.info.width, clip.info.height) == (stored, 64, 48)  # the coded size


def test_probe_uses_the_average_rate_of_variable_frame_rate_video(tmp_path):
    times = np.cumsum([0] + [20 if i % 2 else 40 for i in range(29)]).tolist()  # 25 and 50 fps alternating
    clip = probed(write_with_pyav(tmp_path / "vfr.mp4", times))
    assert clip.info.num_frames == 30
    assert clip.info.fps == pytest.approx(1000 / 30, rel=0.03)


# scenes


def test_scenes_finds_the_cuts_within_two_frames(media):
    clip = probed(media["cuts"])
    for detector in ("content", "adaptive"):
        cuts = SceneSplitStage(detector=detector).detect_cuts(clip)
        assert len(cuts) == 2 and abs(cuts[0] - 30) <= 2 and abs(cuts[1] - 50) <= 2, (detector, cuts)
    exact = SceneSplitStage(trim_frames=0, min_seconds=0)(clip)
    assert all(isinstance(c, Clip) for c in exact) and len(exact) == 3
    assert exact[0].start_frame == 0 and exact[-1].end_frame == 84
    assert all(a.end_frame == b.start_frame for a, b in zip(exact[:-1], exact[1:]))


def test_fast_content_scores_and_cuts_match_pyscenedetect(media):
    """Same frame scores (to float rounding), the same cuts per frame and the same scene lists as the
    stock ContentDetector and AdaptiveDetector, on a decoded video with cuts and on noise with flashes
    and gradual changes, with the default and with uneven component weights."""
    from scenedetect import AdaptiveDetector, ContentDetector, FrameTimecode, SceneManager

    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(6)]
    ramps = [np.full((48, 64, 3), (7 * i, 255 - 5 * i, 3 * i), dtype=np.uint8) for i in range(40)]
    flashes = [np.full((48, 64, 3), 250 if i % 9 == 4 else 20, dtype=np.uint8) for i in range(30)]
    source = SOURCE_FRAMES.get(media["cuts"])
    decoded = [cv2.cvtColor(source.rgb(index), cv2.COLOR_RGB2BGR) for index in range(len(source.frames))]
    weightings = (ContentDetector.DEFAULT_COMPONENT_WEIGHTS, ContentDetector.Components(1.0, 0.5, 2.0, 0.0))
    pairs = ((ContentDetector, HSVDifferenceContentDetector), (AdaptiveDetector, HSVDifferenceAdaptiveDetector))
    for frames, weights, (stock_type, fast_type) in itertools.product(
            (decoded, noise + ramps + flashes + noise), weightings, pairs):
        stock, fast = stock_type(min_scene_len=3, weights=weights), fast_type(min_scene_len=3, weights=weights)
        for index, frame in enumerate(frames):
            timecode = FrameTimecode(index, 24.0)
            assert fast.process_frame(timecode, frame) == stock.process_frame(timecode, frame), (stock_type, index)
            assert fast._frame_score == pytest.approx(stock._frame_score, rel=1e-12, abs=1e-12), (stock_type, index)
        assert fast.post_process(FrameTimecode(len(frames), 24.0)) == stock.post_process(FrameTimecode(len(frames), 24.0))
    clip = probed(media["cuts"])
    for stock, fast in ((ContentDetector(), HSVDifferenceContentDetector()),
                        (AdaptiveDetector(), HSVDifferenceAdaptiveDetector())):
        cuts = []
        for detector in (stock, fast):
            manager = SceneManager()
            manager.add_detector(detector)
            manager.detect_scenes(FramesVideoStream(SOURCE_FRAMES.get(clip.source), 24.0), end_time=clip.end_frame)
            cuts.append([scene.frame_num for scene, _ in manager.get_scene_list(start_in_scene=True)])
        assert cuts[0] == cuts[1] and len(cuts[0]) == 3, (type(stock), cuts)
    assert isinstance(SceneSplitStage()._make_detector(), HSVDifferenceContentDetector)
    assert isinstance(SceneSplitStage(detector="adaptive")._make_detector(), HSVDifferenceAdaptiveDetector)


def test_scenes_trims_cuts_and_rejects_short_shots(media):
    clip = probed(media["cuts"]).replace(caption="kept", motion_score=0.5)
    cuts = SceneSplitStage().detect_cuts(clip)
    first, short, last = SceneSplitStage()(clip)  # default trim: round(0.1 s * 24 fps) = 2 frames per side
    assert isinstance(first, Clip) and isinstance(last, Clip)
    assert (first.start_frame, first.end_frame) == (0, cuts[0] - 2)
    assert (last.start_frame, last.end_frame) == (cuts[1] + 2, 84)
    assert (first.caption, first.motion_score, first.info) == ("kept", 0.5, clip.info)
    assert last.source == clip.source
    assert isinstance(short, Rejection) and short.detail
    assert (short.reason, short.stage) == ("too_short", "scenes")


def test_scenes_yields_one_scene_for_a_single_shot(media):
    clip = probed(media["moving"])
    assert SceneSplitStage().detect_cuts(clip) == []
    assert SceneSplitStage()(clip) == [clip]
    assert SceneSplitStage(detector="adaptive")(clip) == [clip]


def test_scenes_only_searches_inside_the_clip(media):
    clip = probed(media["cuts"]).replace(start_frame=40, end_frame=84)
    [before, after] = SceneSplitStage(trim_frames=0, min_seconds=0)(clip)
    assert (before.start_frame, after.end_frame) == (40, 84) and abs(before.end_frame - 50) <= 2


def test_scenes_force_cuts_long_shots(media):
    clip = probed(media["moving"])  # 36 frames = 1.5 s
    pieces = SceneSplitStage(max_seconds=1.0, split_seconds=0.5, min_seconds=0.25)(clip)
    assert [(p.start_frame, p.end_frame) for p in pieces] == [(0, 12), (12, 24), (24, 36)]
    merged = SceneSplitStage(max_seconds=1.0, split_seconds=0.625, min_seconds=0.5)(clip)  # 15-frame pieces
    assert [(p.start_frame, p.end_frame) for p in merged] == [(0, 15), (15, 36)]  # the 6-frame tail joins
    assert SceneSplitStage(max_seconds=None, min_seconds=0.5)(clip) == [clip]


def test_scenes_rejects_unprobed_clips_and_unknown_detectors(media):
    assert rejection(SceneSplitStage()(Clip(media["moving"], end_frame=36))).reason == "not_probed"
    with pytest.raises(ValueError, match="valid: content, adaptive"):
        SceneSplitStage(detector="histogram")


# letterbox


def test_letterbox_finds_bars_despite_a_flash_frame(media):
    clip = probed(media["letterbox_flash"])
    stage = LetterboxCropStage()
    assert 20 in evenly_spaced(clip, stage.num_frames)
    flash = read_frames(clip.source, [20]).astype(np.float32).mean(axis=-1)[0]
    assert stage.frame_box(flash) == (0, 0, W, H)  # the flash frame alone sees no bars
    crop = only(stage(clip)).crop
    assert crop is not None and abs(crop.y - 16) <= 2 and abs(crop.h - (H - 32)) <= 2
    assert (crop.x, crop.w, crop.w % 2, crop.h % 2, crop.y % 2) == (0, W, 0, 0, 0)


def test_letterbox_finds_limited_range_pillarbox_bars(media):
    crop = only(LetterboxCropStage()(probed(media["pillarbox16"]))).crop
    assert crop is not None and abs(crop.x - 24) <= 2 and abs(crop.w - (W - 48)) <= 2
    assert (crop.y, crop.h) == (0, H)


def test_letterbox_leaves_full_frame_video_uncropped(media):
    for name in ("moving", "cuts", "static"):
        clip = probed(media[name])
        assert LetterboxCropStage()(clip) == [clip]


def test_letterbox_rejects_too_little_content(media):
    result = rejection(LetterboxCropStage()(probed(media["narrow"])))  # 64 of 160 columns: 0.4 of the frame
    assert result.reason == "content_too_small"
    assert isinstance(only(LetterboxCropStage(min_area_fraction=0.3)(probed(media["narrow"]))), Clip)


def test_letterbox_searches_inside_an_existing_crop(media):
    clip = probed(media["pillarbox16"]).replace(crop=CropBox(10, 0, 140, H))
    assert only(LetterboxCropStage()(clip)).crop == CropBox(24, 0, W - 48, H)


def test_letterbox_rejects_all_black_clips(tmp_path):
    black = write_frames(tmp_path / "black.mp4", [np.zeros((H, W, 3), dtype=np.uint8)] * 8)
    assert rejection(LetterboxCropStage()(probed(black))).reason == "all_black"


# motion


@pytest.fixture(scope="module")
def demo_media(tmp_path_factory) -> dict[str, str]:
    """The demo sources the motion thresholds were set on: the slowest and fastest movers, the static."""
    d = tmp_path_factory.mktemp("demo_motion")
    names = ("blue_triangle_dots", "cyan_square_wide", "static_green_circle", "nearly_static_yellow_triangle")
    return {spec.name: str(write_source(spec, d)) for spec in demo_sources() if spec.name in names}


def test_motion_rejects_static_and_nearly_static_clips(media, demo_media):
    still = (demo_media["static_green_circle"], demo_media["nearly_static_yellow_triangle"])
    for source in (media["static"], *still):
        assert rejection(MotionStage()(probed(source))).reason == "too_static"


def test_motion_passes_moving_clips_with_a_score(media, demo_media):
    movers = (demo_media["blue_triangle_dots"], demo_media["cyan_square_wide"])
    for source in (media["moving"], media["pillarbox16"], *movers):
        scored = only(MotionStage()(only(LetterboxCropStage()(probed(source)))))
        assert isinstance(scored, Clip) and scored.motion_score > MotionStage().min_score


def test_motion_score_does_not_depend_on_resolution(tmp_path):
    scene = S("square", "white", "diagonal", "checkered", "green", 36)
    spec = SourceSpec("big", (scene,), "test", width=320, height=240)
    big = list(render_source(spec))
    small = [np.asarray(Image.fromarray(frame).resize((W, H), Image.BILINEAR)) for frame in big]
    stage = MotionStage(min_score=0, max_score=None)
    sources = [write_frames(tmp_path / "big.mp4", big), write_frames(tmp_path / "small.mp4", small)]
    scores = [only(stage(probed(source))).motion_score for source in sources]
    assert scores[0] > 0 and scores[1] == pytest.approx(scores[0], rel=0.2)


def test_motion_rejects_clips_above_max_score(media):
    result = rejection(MotionStage(max_score=1e-4)(probed(media["moving"])))
    assert result.reason == "too_much_motion"


# every stage


def write_text_video(tmp_path: Path) -> str:
    path = tmp_path / "not_a_video.mp4"
    path.write_text("not a video\n")
    return str(path)


@pytest.mark.parametrize("stage_class", [SceneSplitStage, LetterboxCropStage, MotionStage])
def test_stages_reject_an_undecodable_clip_without_raising(tmp_path, media, stage_class):
    clip = probed(media["moving"]).replace(source=write_text_video(tmp_path))
    assert rejection(stage_class()(clip)).reason == "unreadable"


def test_images_pass_the_clip_stages(tmp_path):
    path = tmp_path / "still.png"
    path.write_bytes(encode_png(render_background("striped", "red", H, W)))
    clip = probed(str(path))
    for stage in (SceneSplitStage(), LetterboxCropStage(), MotionStage()):
        assert stage(clip) == [clip]


@pytest.mark.parametrize("name", CURATION_STAGES.names())
def test_every_registered_stage_runs_on_a_probed_clip(name, media, tmp_path):
    assert name in STAGE_TEST_KWARGS, f"add test kwargs for curation stage {name!r} to STAGE_TEST_KWARGS"
    stage = CURATION_STAGES.build(name, **STAGE_TEST_KWARGS[name](tmp_path))
    assert stage.name == name and callable(stage)
    source = Clip(media["moving"])
    outputs = stage(source if name == "probe" else probed(source.source))
    assert outputs and all(isinstance(o, Clip | Rejection) for o in outputs)
    assert all(o.reason and o.stage == name for o in outputs if isinstance(o, Rejection))
    if name in ("probe", "scenes", "letterbox", "motion"):
        assert all(isinstance(o, Clip) and o.info is not None for o in outputs)  # a clean moving shot passes


# one decode per source


@pytest.fixture
def frame_cache():
    """The process-wide frame cache, emptied before and restored to its default budget after."""
    budget = SOURCE_FRAMES.max_bytes
    SOURCE_FRAMES.clear()
    yield SOURCE_FRAMES
    SOURCE_FRAMES.max_bytes = budget
    SOURCE_FRAMES.clear()


def curate_one(source: str) -> list[tuple[Clip, ShardSample]]:
    """Every clip stage (neural ones aside) and the encoder over one source."""
    clips, rejections = run_stages(Path(source), [ProbeStage(), SceneSplitStage(min_seconds=0.5), LetterboxCropStage(),
                                                  MotionStage(min_score=0)])
    assert not rejections, rejections
    return [(clip, encode_clip(clip, EncodeSettings(preset="ultrafast"))) for clip in clips]


def test_each_source_is_decoded_once_for_all_stages_and_the_encoder(media, frame_cache):
    before = frame_cache.decodes
    shared = curate_one(media["cuts"])
    assert frame_cache.decodes == before + 1 and len(shared) == 3  # three shots, one decode
    assert frame_cache.get(media["cuts"]).planar  # untagged H.264: kept as I420 planes
    frame_cache.configure(0)  # no cache: every stage decodes for itself in RGB, PySceneDetect through OpenCV
    separate = curate_one(media["cuts"])
    assert frame_cache.decodes == before + 1
    for (first_clip, first), (second_clip, second) in zip(shared, separate, strict=True):
        assert (first_clip.start_frame, first_clip.end_frame, first_clip.crop) == \
            (second_clip.start_frame, second_clip.end_frame, second_clip.crop)  # same cuts and crops
        assert first_clip.motion_score == pytest.approx(second_clip.motion_score, rel=0.05)  # planes shrunk first
        assert first.metadata.width == second.metadata.width and first.metadata.height == second.metadata.height
        planar, rgb = decode_frames(first.media, [0, 5]), decode_frames(second.media, [0, 5])
        assert np.abs(planar.astype(np.float32) - rgb).mean() < 2.0  # planes resized vs RGB resized


def test_planar_frames_match_their_rgb_conversion(media, frame_cache):
    source = frame_cache.get(media["letterbox_flash"])
    assert source.planar
    planes = source.frames[3]
    rgb = source.rgb(3).astype(np.float32)
    crop = (0, 16, W, H - 32)
    resized = crop_resize_i420(planes, crop, (W // 2, (H - 32) // 2))
    expected = prepare_frame(source.rgb(3), crop, W // 2, gray=False).astype(np.float32)
    assert np.abs(cv2.cvtColor(resized, cv2.COLOR_YUV2RGB_I420) - expected).mean() < 2.0
    gray = prepare_gray(planes, crop, 64).astype(np.float32)
    assert np.abs(gray - prepare_frame(rgb.astype(np.uint8), crop, 64, gray=True)).mean() < 2.0
    odd = (1, 16, W - 1, H - 32)  # odd crop: through the full-size RGB frame, exactly
    assert np.array_equal(prepare_gray(planes, odd, 64), prepare_frame(source.rgb(3), odd, 64, gray=True))
    assert np.array_equal(read_frames(media["letterbox_flash"], [3], gray=True)[0], prepare_gray(planes, None, None))


def test_a_source_over_the_cache_budget_is_read_directly(media, frame_cache):
    frame_cache.configure(0.05)  # 50 KiB: less than one 160x120 frame's worth of frames
    assert frame_cache.get(media["moving"]) is None
    frames = read_frames(media["moving"], [3, 1, 3])
    frame_cache.configure(64)
    assert frame_cache.get(media["moving"]) is not None
    assert np.array_equal(read_frames(media["moving"], [3, 1, 3]), frames)


def test_the_cache_notices_a_rewritten_file(tmp_path, frame_cache):
    path = tmp_path / "changing.mp4"
    write_frames(path, [np.full((H, W, 3), 40, np.uint8)] * 4)
    assert read_frames(path, [0]).mean() < 60
    write_frames(path, [np.full((H, W, 3), 200, np.uint8)] * 6)
    assert read_frames(path, [5]).mean() > 180


def test_a_truncated_source_keeps_the_frames_before_the_damage(media, tmp_path, frame_cache):
    data = Path(media["moving"]).read_bytes()
    path = tmp_path / "cut_short.mp4"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(VideoDecodeError):
        read_frames(path, [35])


@pytest.mark.parametrize("scale", [1, 3])  # 480x360 is over PySceneDetect's 256-pixel downscaling width
def test_scene_detection_on_cached_frames_matches_the_video_backend(media, frame_cache, tmp_path, scale):
    source = media["cuts"] if scale == 1 else write_spec(tmp_path, "cuts_large", CUTS, width=W * scale,
                                                         height=H * scale)
    clip = probed(source)
    stage = SceneSplitStage()
    from_cache = stage.detect_cuts(clip)
    frame_cache.configure(0)
    assert stage.detect_cuts(clip) == from_cache and len(from_cache) == 2
    frame_cache.configure(64)
    stream = FramesVideoStream(frame_cache.get(source), 24.0)
    assert max(stream.frame_size) == min(max(W, H) * scale, 256)


def test_motion_methods_and_their_thresholds(media):
    farneback = MotionStage(method="farneback")
    assert farneback.min_score == 0.00013 and MotionStage().min_score == 0.00019
    assert rejection(farneback(probed(media["static"]))).reason == "too_static"
    moving = only(farneback(probed(media["moving"])))
    assert isinstance(moving, Clip) and moving.motion_score > farneback.min_score
    with pytest.raises(ValueError, match="valid: dis, farneback"):
        MotionStage(method="lucas_kanade")
    with pytest.raises(ValueError, match="valid: ultrafast, fast, medium"):
        MotionStage(dis_preset="slowest")
