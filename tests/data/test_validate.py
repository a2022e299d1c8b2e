"""Bad inputs: each fails with one `InputError` line that names the input, and leaves the folder untouched."""

from __future__ import annotations

import functools
import json
import re

import cv2
import numpy as np
import pytest

from media_fixtures import box_mask, smooth_video, snapshot
from swapjax.data import tracks, validate, video_io
from swapjax.errors import InputError


def _mp4(folder, name="v.mp4", frames=None):
    video_io.write_video(folder / name, smooth_video(5) if frames is None else frames, 12)
    return folder / name


def _json(folder, name, payload):
    (folder / name).write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return folder / name


def _png_dir(folder, name, frames):
    (folder / name).mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / name / f"{i:03d}.png"), f)
    return folder / name


def _npz(folder, name, array, **more):
    np.savez(folder / name, array, **more) if more else np.savez(folder / name, mask=array)
    return folder / name


def _bytes(folder, name, data):
    (folder / name).write_bytes(data)
    return folder / name


def _truncated(folder, keep=0.5):
    data = _mp4(folder, "full.mp4", smooth_video(9)).read_bytes()
    (folder / "cut.mp4").write_bytes(data[: int(len(data) * keep)])
    return folder / "cut.mp4"


P = functools.partial  # arguments (and the files they create) are made before the snapshot

# Each case: set up files in `d`, return (the failing call, a regex the message must match).
CASES = {
    "mask frame count mismatch": lambda d: (
        P(video_io.read_mask, _json(d, "m.json", {"width": 48, "height": 32, "frames": [[0, 0, 9, 9]] * 4}),
          num_frames=5, size=(32, 48)), "m.json' has 4 frames but"),
    "mask size mismatch": lambda d: (
        P(validate.check_mask, box_mask(5, 16, 48), "mask 'm.npz'", smooth_video(5), video_name="video 'v'"),
        "mask 'm.npz' is 16x48"),
    "empty mask": lambda d: (
        P(video_io.read_mask, _npz(d, "e.npz", np.zeros((5, 8, 8), np.uint8))), "e.npz' is empty"),
    "non-binary png mask": lambda d: (
        P(video_io.read_mask, _png_dir(d, "soft", [np.full((8, 8), 17, np.uint8)] * 3)), "soft' is not binary"),
    "non-binary float mask": lambda d: (
        P(video_io.read_mask, _npz(d, "f.npz", np.full((2, 4, 4), 0.5))), "f.npz' is not binary"),
    "truncated video": lambda d: (P(video_io.read_video, _truncated(d)), "cut.mp4' cannot be decoded"),
    "truncated tail": lambda d: (P(video_io.read_video, _truncated(d, 0.95)), "cut.mp4' is truncated: its header"),
    "unreadable video": lambda d: (
        P(video_io.read_video, _bytes(d, "junk.mp4", b"\x00garbage" * 64)), re.escape(f"video '{d / 'junk.mp4'}' cannot be decoded")),
    "zero-byte video": lambda d: (P(video_io.read_video, _bytes(d, "zero.mp4", b"")), "zero.mp4' is empty"),
    "missing video": lambda d: (P(video_io.read_video, d / "nope.mp4"), "nope.mp4' does not exist"),
    "missing mask": lambda d: (P(video_io.read_mask, d / "gone.npz"), "gone.npz' does not exist"),
    "zero frames written": lambda d: (
        P(video_io.write_video, d / "o.mp4", np.zeros((0, 8, 8, 3), np.uint8), 12), "o.mp4' has zero frames"),
    "wrong channel count": lambda d: (
        P(video_io.write_video, d / "o.mp4", np.zeros((5, 8, 8, 4), np.uint8), 12), "o.mp4' has 4 channels"),
    "odd frame size": lambda d: (
        P(video_io.write_video, d / "odd.mp4", smooth_video(2, 31, 48), 12), "odd.mp4' are 31x48"),
    "float frames": lambda d: (
        P(video_io.write_video, d / "f.mp4", np.zeros((5, 8, 8, 3), np.float32), 12), "f.mp4' have dtype"),
    "NaN in video": lambda d: (
        P(validate.check_video, np.full((5, 8, 8, 3), np.nan, np.float32), "video 'nan.mp4'"),
        "video 'nan.mp4' holds 960 NaN"),
    "NaN in mask file": lambda d: (
        P(video_io.read_mask, _npz(d, "n.npz", np.full((2, 4, 4), np.nan))), "n.npz' holds 32 NaN"),
    "reference of wrong rank": lambda d: (
        P(validate.check_reference, np.zeros((1, 8, 8, 3), np.uint8), "reference image 'r.png'"),
        r"reference image 'r.png' has shape \[1, 8, 8, 3\] \(rank 4\)"),
    "reference with 2 channels": lambda d: (
        P(validate.check_reference, np.zeros((8, 8, 2), np.uint8), "reference image 'r.png'"),
        "'r.png' has 2 channels"),
    "unreadable image": lambda d: (P(video_io.read_image, _bytes(d, "r.png", b"notapng" * 9)), "r.png' cannot"),
    "frame count not 1 mod 4": lambda d: (
        P(validate.check_frame_count, 12, "video 'v.mp4'"), "video 'v.mp4' has 12 frames; .* trim to 9"),
    "size not multiple of 16": lambda d: (
        P(validate.check_resolution, 100, 64, "config 'tiny'"), "config 'tiny' is 100x64 .* 96x64"),
    "box track: bad JSON": lambda d: (
        P(video_io.read_mask, _json(d, "b.json", '{"frames": [')), "b.json' is not valid JSON"),
    "box track: inverted box": lambda d: (
        P(video_io.read_mask, _json(d, "b.json", {"width": 8, "height": 8, "frames": [[5, 0, 2, 4]]})),
        "b.json': frame 0 box .* x1 <= x0"),
    "box track: 3 numbers": lambda d: (
        P(video_io.read_mask, _json(d, "b.json", {"width": 8, "height": 8, "frames": [[0, 0, 2]]})),
        "b.json': frame 0 box"),
    "box track: NaN": lambda d: (
        P(video_io.read_mask, _json(d, "b.json", '{"width": 8, "height": 8, "frames": [[0, 0, NaN, 2]]}')),
        "b.json': frame 0 box"),
    "box track: missing width": lambda d: (
        P(video_io.read_mask, _json(d, "b.json", {"height": 8, "frames": [[0, 0, 2, 2]]})),
        "b.json' needs 'width'"),
    "box track: outside the frame": lambda d: (
        P(video_io.read_mask, _json(d, "b.json", {"width": 8, "height": 8, "frames": [[20, 20, 30, 30]]})),
        "b.json': frame 0 box .* outside"),
    "box track: not an object": lambda d: (
        P(video_io.read_mask, _json(d, "b.json", [[0, 0, 1, 1]])), "b.json' must hold a JSON object"),
    "keypoints: ragged": lambda d: (
        P(tracks.read_keypoints, _json(d, "k.json", {"frames": [[[0, 0, 1]], [[0, 0, 1], [1, 1, 1]]]})),
        "k.json' has frames with different point counts"),
    "keypoints: skeleton mismatch": lambda d: (
        P(tracks.read_keypoints, _json(d, "k.json", {"kind": "hand", "frames": [[[0, 0, 1]] * 5]})),
        "k.json' has 5 points per frame, which the 'hand' skeleton cannot draw"),
    "keypoints: frame count": lambda d: (
        P(tracks.read_keypoints, _json(d, "k.json", {"frames": [None] * 3}), num_frames=5),
        "k.json' has 3 frames but"),
    "mask folder of mixed sizes": lambda d: (
        P(video_io.read_mask, _png_dir(d, "mix", [np.zeros((8, 8), np.uint8), np.zeros((8, 9), np.uint8)])),
        "mix': frame '001.png' is 8x9"),
    "npz without a mask key": lambda d: (
        P(video_io.read_mask, _npz(d, "two.npz", np.ones((1, 2, 2)), other=np.ones(2))),
        "two.npz' holds arrays"),
    "unsupported mask format": lambda d: (
        P(video_io.read_mask, _bytes(d, "m.txt", b"1")), "m.txt' has unsupported format"),
    "missing audio source": lambda d: (
        P(video_io.write_video, d / "o.mp4", smooth_video(2), 12, audio_from=d / "noaudio.mp4"),
        "noaudio.mp4' does not exist"),
    "output folder missing": lambda d: (
        P(video_io.write_video, d / "sub" / "o.mp4", smooth_video(2), 12), "sub' does not exist"),
    "bad fps": lambda d: (P(video_io.write_video, d / "o.mp4", smooth_video(2), 0), "o.mp4' has frame rate 0"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_names_it_and_writes_nothing(tmp_path, case):
    call, expected = CASES[case](tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(InputError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    assert re.search(expected, message), f"{expected!r} not in {message!r}"
    assert snapshot(tmp_path) == before  # no partial or temporary file, nothing modified


def test_good_inputs_pass():
    video = smooth_video(5)
    assert validate.check_video(video, "v") is not None
    assert validate.check_mask(box_mask(5), "m", video).dtype == np.uint8
    assert validate.check_mask(box_mask(5).astype(bool), "m", num_frames=5, size=(32, 48)).max() == 1
    assert validate.check_frame_count(81, "v") == 81
    assert validate.check_resolution(480, 832, "v") == (480, 832)
    assert validate.check_reference(np.zeros((8, 8, 4), np.uint8), "r").shape == (8, 8, 4)
    assert validate.check_keypoints(np.zeros((5, 3, 3)), "k", 5).dtype == np.float32
    assert validate.check_fps(29.97, "v") == 29.97
