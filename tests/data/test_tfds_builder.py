"""TFDS builder and build CLI: lossless round trip from real MP4s, splits, chunking, validation-first failures."""

from __future__ import annotations

import pickle
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from media_fixtures import snapshot
from swapjax.data import build, tfds_builder, tracks, video_io
from swapjax.data.synthetic import SyntheticClips

MASK_FORMATS = ("png", "npz", "mp4")


def _write_clips(folder, num_clips=3, num_frames=9, seed=0):
    """Synthetic clips as project-written MP4s; masks as a PNG folder, NPZ or MP4; keypoints for clip 0."""
    folder.mkdir(parents=True, exist_ok=True)
    clips = SyntheticClips(32, 48, num_frames, num_clips, seed)
    originals = {}
    for i in range(num_clips):
        clip, name = clips[i], f"clip{i}"
        video_io.write_video(folder / f"{name}.mp4", clip["video"], clip["fps"])
        fmt = MASK_FORMATS[i % 3]
        video_io.write_mask(folder / (f"{name}_mask" + {"png": "", "npz": ".npz", "mp4": ".mp4"}[fmt]), clip["mask"])
        if i == 0:
            tracks.write_keypoints(folder / f"{name}_keypoints.json", clip["keypoints"], clip["keypoints_kind"])
        originals[name] = (clip, fmt)
    return originals


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfds")
    originals = _write_clips(root / "src")
    assert build.main(["--src", str(root / "src"), "--out", str(root / "out")]) == 0
    return root, originals


def test_records_read_back_identical(built):
    root, originals = built
    source = tfds_builder.open_source(root / "out", "train")
    assert len(source) == 3
    for i in range(3):
        record = source[i]
        clip, fmt = originals[record["name"]]
        frames, fps, _ = video_io.read_video(root / "src" / f"{record['name']}.mp4")
        np.testing.assert_array_equal(record["video"], frames)  # exactly what read_video returns
        assert record["fps"] == pytest.approx(fps) and record["start_frame"] == 0
        if fmt == "mp4":  # lossy codec: the stored mask is the thresholded read, close to the original
            np.testing.assert_array_equal(record["mask"], video_io.read_mask(root / "src" / "clip2_mask.mp4"))
            assert (record["mask"] == clip["mask"]).mean() > 0.98
        else:
            np.testing.assert_array_equal(record["mask"], clip["mask"])  # lossless formats: identical
        if record["name"] == "clip0":
            np.testing.assert_array_equal(record["keypoints"], clip["keypoints"])
            assert record["keypoints_kind"] == clip["keypoints_kind"]
        else:
            assert record["keypoints"].shape == (9, 0, 3) and record["keypoints_kind"] == ""


def test_source_pickles_for_workers(built):
    root, _ = built
    source = pickle.loads(pickle.dumps(tfds_builder.open_source(root / "out")))
    assert len(source) == 3 and source[0]["video"].shape == (9, 32, 48, 3)


def test_split_folders_and_long_clips_in_chunks(tmp_path):
    originals = _write_clips(tmp_path / "src" / "train", num_clips=2, num_frames=9)
    _write_clips(tmp_path / "src" / "validation", num_clips=1, num_frames=5, seed=1)
    one_frame = 32 * 48 * 4 / 2**20
    counts = tfds_builder.build_dataset(tmp_path / "src", tmp_path / "out", max_record_mib=4 * one_frame)
    assert counts == {"train": 6, "validation": 2}  # 9 frames -> chunks of 4, 4, 1; 5 frames -> 4, 1
    source = tfds_builder.open_source(tmp_path / "out", "train")
    chunks = sorted((source[i]["name"], source[i]["start_frame"], i) for i in range(len(source)))
    video = np.concatenate([source[i]["video"] for name, _, i in chunks if name == "clip1"])
    np.testing.assert_array_equal(video, video_io.read_video(tmp_path / "src" / "train" / "clip1.mp4")[0])
    mask = np.concatenate([source[i]["mask"] for name, _, i in chunks if name == "clip1"])
    np.testing.assert_array_equal(mask, originals["clip1"][0]["mask"])
    assert len(tfds_builder.open_source(tmp_path / "out", "validation")) == 2


def test_chunks_without_the_subject_are_left_out(tmp_path):
    from media_fixtures import box_mask, smooth_video

    (tmp_path / "src").mkdir()
    mask = box_mask(9)
    mask[:4] = 0  # the subject enters at frame 4
    video_io.write_video(tmp_path / "src" / "late.mp4", smooth_video(9), 12)
    video_io.write_mask(tmp_path / "src" / "late_mask.npz", mask)
    counts = tfds_builder.build_dataset(tmp_path / "src", tmp_path / "out", max_record_mib=4 * 32 * 48 * 4 / 2**20)
    assert counts == {"train": 2}
    source = tfds_builder.open_source(tmp_path / "out")
    assert sorted(source[i]["start_frame"] for i in range(2)) == [4, 8]


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _replace_mask(folder, name, mask):
    shutil.rmtree(folder / f"{name}_mask")
    np.savez(folder / f"{name}_mask.npz", mask=mask)


# Each case breaks a good source folder and names what the one-line error must mention.
BREAKS = {
    "missing mask": (lambda d: shutil.rmtree(d / "clip0_mask"), "video '.*clip0.mp4' has no mask"),
    "frame count mismatch": (lambda d: (d / "clip1_mask.npz").write_bytes(_npz_bytes(np.ones((8, 32, 48)))),
                             "clip1_mask.npz' has 8 frames but the video has 9"),
    "size mismatch": (lambda d: (d / "clip1_mask.npz").write_bytes(_npz_bytes(np.ones((9, 16, 48)))),
                      "clip1_mask.npz' is 16x48 .* but the video is 32x48"),
    "empty mask": (lambda d: (d / "clip1_mask.npz").write_bytes(_npz_bytes(np.zeros((9, 32, 48)))),
                   "clip1_mask.npz' is empty"),
    "non-binary mask": (lambda d: _replace_mask(d, "clip0", np.full((9, 32, 48), 7, np.uint8)),
                        "clip0_mask.npz' is not binary"),
    "truncated video": (lambda d: _truncate(d / "clip2.mp4"), "video '.*clip2.mp4' (cannot be decoded|is truncated)"),
    "orphan mask": (lambda d: (d / "ghost_mask.npz").write_bytes(_npz_bytes(np.ones((1, 2, 2)))),
                    "mask '.*ghost_mask.npz' has no video"),
    "two masks": (lambda d: (d / "clip1_mask.json").write_text("{}"), "clip1.mp4' has several masks"),
    "bad keypoints": (lambda d: (d / "clip0_keypoints.json").write_text('{"frames": [[[1, 2]]]}'),
                      "keypoints '.*clip0_keypoints.json'"),
    "no videos": (lambda d: [p.unlink() if p.is_file() else shutil.rmtree(p) for p in d.iterdir()],
                  "source folder '.*src' holds no videos"),
}


def _npz_bytes(array):
    import io

    buffer = io.BytesIO()
    np.savez(buffer, mask=array)
    return buffer.getvalue()


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_build_cli_fails_first_with_one_line(tmp_path, capsys, case):
    _write_clips(tmp_path / "src")
    breaker, expected = BREAKS[case]
    breaker(tmp_path / "src")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("untouched")
    before = snapshot(tmp_path / "out")
    assert build.main(["--src", str(tmp_path / "src"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert re.search(expected, err), err
    assert snapshot(tmp_path / "out") == before


def test_existing_dataset_needs_overwrite(built, capsys):
    root, _ = built
    before = snapshot(root / "out")
    assert build.main(["--src", str(root / "src"), "--out", str(root / "out")]) == 2
    assert "already holds a built dataset: pass --overwrite" in capsys.readouterr().err
    assert snapshot(root / "out") == before


def test_failure_while_writing_leaves_out_dir_as_it_was(tmp_path, monkeypatch):
    _write_clips(tmp_path / "src")
    real, calls = tfds_builder.load_clip, []

    def flaky(clip):
        calls.append(clip.name)
        if len(calls) == 5:  # 3 validation reads pass, then the writer fails on its second clip
            raise OSError("disk full")
        return real(clip)

    monkeypatch.setattr(tfds_builder, "load_clip", flaky)
    with pytest.raises(OSError, match="disk full"):
        tfds_builder.build_dataset(tmp_path / "src", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_exit_code_in_a_real_process(tmp_path):
    result = subprocess.run([sys.executable, "-m", "swapjax.data.build", "--src", str(tmp_path / "nowhere"),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"error: source folder {str(tmp_path / 'nowhere')!r} does not exist or is not a folder: "
                     "pass --src FOLDER"]
    assert not (tmp_path / "out").exists()


def test_single_png_is_a_static_mask_and_hidden_files_are_skipped(tmp_path):
    from media_fixtures import box_mask, smooth_video

    src = tmp_path / "src"
    src.mkdir()
    static = box_mask(1)[0]  # [H, W]
    video_io.write_video(src / "still.mp4", smooth_video(5), 12)
    video_io.write_image(src / "still_mask.png", static * 255)  # one mask for every frame
    video_io.write_video(src / "moving.mp4", smooth_video(5, seed=1), 12)
    video_io.write_mask(src / "moving_mask", box_mask(5))  # PNG folder
    (src / "moving_mask" / "._00000.png").write_bytes(b"\x00\x05\x16\x07Mac OS X")  # macOS resource fork
    (src / "._still_mask.png").write_bytes(b"\x00\x05\x16\x07Mac OS X")
    assert tfds_builder.build_dataset(src, tmp_path / "out") == {"train": 2}
    source = tfds_builder.open_source(tmp_path / "out")
    records = {source[i]["name"]: source[i] for i in range(2)}
    np.testing.assert_array_equal(records["still"]["mask"], np.repeat(static[None], 5, axis=0))  # [5, H, W]
    np.testing.assert_array_equal(records["moving"]["mask"], box_mask(5))


def test_mask_in_an_unreadable_format_is_named(tmp_path, capsys):
    _write_clips(tmp_path / "src")
    shutil.rmtree(tmp_path / "src" / "clip0_mask")
    (tmp_path / "src" / "clip0_mask.gif").write_bytes(b"GIF89a")
    assert build.main(["--src", str(tmp_path / "src"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert re.search(r"mask '.*clip0_mask.gif' has unsupported format '.gif': convert it to one of .*\.png", err)
    assert not (tmp_path / "out").exists()
