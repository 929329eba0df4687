"""PyAV encode / probe / decode round trips and decode errors."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
from helpers import assert_same_picture, moving_square_frames

from ltx.data.video_io import (
    VideoDecodeError,
    decode_frames,
    decode_png,
    encode_mp4,
    encode_png,
    frame_to_rgb,
    probe_video,
    rgb_to_frame,
)


def test_mp4_round_trip_is_close_and_probe_reports_stream(video_bytes):
    info = probe_video(video_bytes)
    assert (info.num_frames, info.width, info.height, info.codec) == (17, 64, 64, "h264")
    assert info.fps == pytest.approx(24.0)
    original = np.stack(moving_square_frames(17, 64, 64, seed=0))
    decoded = decode_frames(video_bytes, [0, 5, 5, 16])
    assert decoded.shape == (4, 64, 64, 3)
    error = np.abs(decoded.astype(np.float32) - original[[0, 5, 5, 16]].astype(np.float32)).mean()
    assert error < 4.0  # lossy, but the same picture


def test_asking_for_missing_frames_or_garbage_raises(video_bytes):
    with pytest.raises(VideoDecodeError, match="frame 40 was asked for"):
        decode_frames(video_bytes, [0, 40])
    with pytest.raises(VideoDecodeError):
        decode_frames(b"definitely not a video", [0])
    with pytest.raises(VideoDecodeError):
        probe_video(video_bytes[: len(video_bytes) // 3])


def test_encoding_is_repeatable_and_checks_input():
    frames = moving_square_frames(9, 32, 48, seed=1)
    first, second = encode_mp4(frames, 24.0), encode_mp4(frames, 24.0)
    assert_same_picture(decode_frames(first, list(range(9))), decode_frames(second, list(range(9))))
    with pytest.raises(ValueError, match="even sizes"):
        encode_mp4([np.zeros((33, 48, 3), np.uint8)], 24.0)
    with pytest.raises(ValueError, match="no frames"):
        encode_mp4([], 24.0)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        encode_mp4(frames, 24.0, threads=0)


def test_frame_threaded_encoding_gives_the_same_pixels():
    """x264 frame threading gives the same picture as one thread (up to x264's rare run-to-run noise)."""
    frames = moving_square_frames(17, 64, 96, seed=3)
    single, threaded = encode_mp4(frames, 24.0, threads=1), encode_mp4(frames, 24.0, threads=3)
    assert b"threads=3" in threaded and b"threads=1" in single  # really encoded with those counts
    indices = list(range(17))
    assert_same_picture(decode_frames(single, indices), decode_frames(threaded, indices))


def test_png_round_trip_is_exact():
    image = moving_square_frames(1, 40, 56, seed=2)[0]
    assert np.array_equal(decode_png(encode_png(image)), image)
    with pytest.raises(VideoDecodeError):
        decode_png(b"nope")


def test_fast_rgb_conversion_matches_swscale_and_falls_back_for_other_colour_spaces(video_bytes):
    with av.open(io.BytesIO(video_bytes)) as container:
        frames = list(container.decode(video=0))[:4]
    for frame in frames:
        swscale = frame.to_ndarray(format="rgb24").astype(np.int16)
        assert np.abs(frame_to_rgb(frame).astype(np.int16) - swscale).max() <= 3  # same BT.601 matrix
        frame.colorspace = 1  # tagged BT.709: OpenCV has no such matrix, swscale is used
        assert np.array_equal(frame_to_rgb(frame), frame.to_ndarray(format="rgb24"))
    image = moving_square_frames(1, 32, 48, seed=3)[0]
    converted = rgb_to_frame(image)
    assert converted.format.name == "yuv420p"
    assert np.abs(converted.to_ndarray(format="rgb24").astype(np.int16) - image).mean() < 3.0
