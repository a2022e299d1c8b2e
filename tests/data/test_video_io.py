"""Video, image and mask I/O: what PyAV sees in our MP4s, audio pass-through, every mask format, atomicity."""

from __future__ import annotations

from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from media_fixtures import box_mask, smooth_video, snapshot, write_av_source
from swapjax.data import tracks, video_io
from swapjax.errors import InputError


def _probe(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        audio = c.streams.audio[0] if c.streams.audio else None
        info = {"codec": v.codec_context.name, "pix_fmt": v.codec_context.pix_fmt, "rate": v.average_rate,
                "frames": sum(1 for _ in c.decode(v)), "size": (v.height, v.width)}
        info["audio"] = None if audio is None else (audio.codec_context.name, float(audio.duration * audio.time_base))
    return info


@pytest.mark.parametrize("fps", [12, 24, 30000 / 1001])
def test_write_video_is_h264_yuv420p_at_fps(tmp_path, fps):
    frames = smooth_video(9)
    video_io.write_video(tmp_path / "out.mp4", frames, fps)
    info = _probe(tmp_path / "out.mp4")
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["rate"] == Fraction(fps).limit_denominator(10_000)
    assert info["frames"] == 9 and info["size"] == (32, 48) and info["audio"] is None
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temporary left behind
    assert b"moov" in (tmp_path / "out.mp4").read_bytes()[:64]  # +faststart: index first, streams in browsers


def test_read_video_round_trip(tmp_path):
    frames = smooth_video(5)
    video_io.write_video(tmp_path / "out.mp4", frames, 8)
    back, fps, has_audio = video_io.read_video(tmp_path / "out.mp4")
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert fps == 8.0 and not has_audio
    assert np.abs(back.astype(int) - frames).mean() < 3.0


def test_audio_stream_is_copied_when_asked(tmp_path):
    write_av_source(tmp_path / "src.mp4", num_frames=12, fps=12)
    source, fps, has_audio = video_io.read_video(tmp_path / "src.mp4")
    assert has_audio and fps == 12.0
    video_io.write_video(tmp_path / "out.mp4", source[::-1].copy(), fps, audio_from=tmp_path / "src.mp4")
    info = _probe(tmp_path / "out.mp4")
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p" and info["frames"] == 12
    codec, seconds = info["audio"]
    assert codec == "aac" and abs(seconds - 1.0) < 0.1  # cut at the video's 1 s (AAC frames are 64 ms)
    with av.open(str(tmp_path / "out.mp4")) as c:  # the audio decodes: same tone, not silence
        samples = np.concatenate([f.to_ndarray().ravel() for f in c.decode(audio=0)])
    assert np.abs(samples).max() > 0.2
    video_io.write_video(tmp_path / "plain.mp4", source, fps)
    assert _probe(tmp_path / "plain.mp4")["audio"] is None  # not asked: no audio


def test_audio_from_a_silent_file_adds_nothing(tmp_path):
    write_av_source(tmp_path / "src.mp4", audio=False)
    video_io.write_video(tmp_path / "out.mp4", smooth_video(4), 12, audio_from=tmp_path / "src.mp4")
    assert _probe(tmp_path / "out.mp4")["audio"] is None


def test_odd_sizes_are_padded_when_asked(tmp_path):
    frames = smooth_video(3, height=31, width=45)
    video_io.write_video(tmp_path / "out.mp4", frames, 10, pad_to_even=True)
    back, _, _ = video_io.read_video(tmp_path / "out.mp4")
    assert back.shape == (3, 32, 46, 3)


@pytest.mark.parametrize("kind", ["npz", "npy", "png_dir", "mp4", "json", "static_png", "static_npz"])
def test_read_mask_formats(tmp_path, kind):
    mask = box_mask(5)
    if kind.startswith("static"):
        mask = np.repeat(mask[:1], 5, axis=0)
    path = tmp_path / {"npz": "m.npz", "npy": "m.npy", "png_dir": "m", "mp4": "m.mp4", "json": "m.json",
                       "static_png": "m.png", "static_npz": "s.npz"}[kind]
    if kind in ("npz", "png_dir", "mp4"):
        video_io.write_mask(path, mask)
    elif kind == "npy":
        np.save(path, mask.astype(bool))
    elif kind == "json":
        tracks.write_box_track(path, tracks.mask_to_boxes(mask), width=48, height=32)
    elif kind == "static_png":
        cv2.imwrite(str(path), mask[0] * 255)
    else:
        np.savez(path, mask=mask[0] * 255)
    back = video_io.read_mask(path, num_frames=5, size=(32, 48))
    assert back.dtype == np.uint8 and back.shape == (5, 32, 48)
    np.testing.assert_array_equal(back, mask)


def test_png_folder_is_read_in_natural_order(tmp_path):
    mask = box_mask(12)
    (tmp_path / "m").mkdir()
    for i, frame in enumerate(mask):
        cv2.imwrite(str(tmp_path / "m" / f"frame{i}.png"), frame * 255)  # frame10 sorts before frame2 as text
    np.testing.assert_array_equal(video_io.read_mask(tmp_path / "m"), mask)


def test_box_track_scales_and_covers_fractional_pixels(tmp_path):
    tracks.write_box_track(tmp_path / "b.json", [[1.5, 2.0, 4.2, 3.0], None, [-5, -5, 2, 2]], width=8, height=6)
    mask = video_io.read_mask(tmp_path / "b.json")
    assert mask.shape == (3, 6, 8)
    expected = np.zeros((3, 6, 8), np.uint8)
    expected[0, 2:3, 1:5] = 1
    expected[2, 0:2, 0:2] = 1  # clipped to the frame
    np.testing.assert_array_equal(mask, expected)
    doubled = video_io.read_mask(tmp_path / "b.json", size=(12, 16))
    assert doubled[0].sum() == 2 * 6 and doubled[1].sum() == 0


def test_keypoint_track_round_trip(tmp_path):
    kps = np.random.default_rng(0).uniform(0, 30, (4, 21, 3)).astype(np.float32)
    tracks.write_keypoints(tmp_path / "k.json", kps, kind="hand")
    back, kind = tracks.read_keypoints(tmp_path / "k.json", num_frames=4)
    assert kind == "hand"
    np.testing.assert_allclose(back, kps, rtol=1e-6)
    (tmp_path / "n.json").write_text('{"kind": "sprite", "frames": [null, [[1, 2, 1]], null]}')
    back, kind = tracks.read_keypoints(tmp_path / "n.json")
    assert kind == "sprite" and back.shape == (3, 1, 3) and back[0].sum() == 0 and back[1, 0, 2] == 1


def test_read_image_rgb_grey_and_rgba(tmp_path):
    rgb = smooth_video(1)[0]
    video_io.write_image(tmp_path / "rgb.png", rgb)
    np.testing.assert_array_equal(video_io.read_image(tmp_path / "rgb.png"), rgb)
    cv2.imwrite(str(tmp_path / "grey.png"), rgb[..., 0])
    np.testing.assert_array_equal(video_io.read_image(tmp_path / "grey.png"), np.repeat(rgb[..., :1], 3, -1))
    rgba = np.concatenate([rgb, np.zeros_like(rgb[..., :1])], axis=-1)
    rgba[:10, :, 3] = 255
    video_io.write_image(tmp_path / "cut.png", rgba)
    ref = video_io.read_image(tmp_path / "cut.png")
    np.testing.assert_array_equal(ref[:10], rgb[:10])
    assert (ref[10:] == 128).all()  # transparent pixels become neutral grey
    cv2.imwrite(str(tmp_path / "deep.png"), rgb[..., ::-1].astype(np.uint16) * 257)  # cv2 writes BGR
    np.testing.assert_array_equal(video_io.read_image(tmp_path / "deep.png"), rgb)


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with video_io.atomic_write(target) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".txt" and tmp != target
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    with video_io.atomic_write(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_folder_write(tmp_path):
    video_io.write_mask(tmp_path / "m", box_mask(3))
    video_io.write_mask(tmp_path / "m", box_mask(2))  # replaces the whole folder
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["00000.png", "00001.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_crash_while_encoding_leaves_no_file(tmp_path, monkeypatch):
    real = av.VideoFrame.from_ndarray
    calls = []

    def failing(array, format):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real(array, format=format)

    monkeypatch.setattr(av.VideoFrame, "from_ndarray", failing)
    before = snapshot(tmp_path)
    with pytest.raises(RuntimeError, match="disk full"):
        video_io.write_video(tmp_path / "out.mp4", smooth_video(6), 12)
    assert snapshot(tmp_path) == before


def test_mask_video_is_thresholded(tmp_path):
    mask = box_mask(5)
    grey = np.repeat((mask * 200 + 20)[..., None], 3, axis=-1).astype(np.uint8)  # not 0/255: lossy-coded
    video_io.write_video(tmp_path / "m.mp4", grey, 10)
    np.testing.assert_array_equal(video_io.read_mask(tmp_path / "m.mp4", num_frames=5), mask)


def test_read_video_rejects_non_video(tmp_path):
    write_av_source(tmp_path / "audio_only.mp4", video=False)
    with pytest.raises(InputError, match="audio_only.mp4.*no video stream"):
        video_io.read_video(tmp_path / "audio_only.mp4")


def test_hidden_files_in_a_mask_folder_are_ignored(tmp_path):
    mask = box_mask(5)
    video_io.write_mask(tmp_path / "m", mask)
    (tmp_path / "m" / "._00000.png").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")  # AppleDouble fork
    (tmp_path / "m" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tmp_path / "m" / ".thumbs.png").mkdir()  # a hidden folder with an image suffix
    np.testing.assert_array_equal(video_io.read_mask(tmp_path / "m", num_frames=5, size=(32, 48)), mask)


def test_mask_folder_of_only_hidden_files_names_it(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "._00000.png").write_bytes(b"\x00\x05\x16\x07")
    with pytest.raises(InputError, match=r"mask '.*m' is a folder with no images .*hidden files are ignored"):
        video_io.read_mask(tmp_path / "m")
