"""`python sample.py` on bad input: every case is one `error:` line naming the input and the fix,
exit code 2, and no output file; nothing reaches the model. Run in-process through `swapjax.sample.cli`, plus
one run of the real `sample.py` in a subprocess."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from sample_fixtures import CONFIG_PATH, box_track, clip, reference, write_checkpoint
from swapjax.data import tracks, video_io
from swapjax.sample import cli

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A good job (video, mask, reference, keypoints, text) and a tiny checkpoint."""
    d = tmp_path_factory.mktemp("inputs")
    write_checkpoint(d / "ckpt")
    video_io.write_video(d / "walk.mp4", clip(5), 12)
    np.savez(d / "mask.npz", mask=box_track(5))
    video_io.write_image(d / "ref.png", reference())
    tracks.write_keypoints(d / "pose.json", np.full((5, 18, 3), 10.0, np.float32))
    np.save(d / "text.npy", np.zeros((4, 32), np.float32))
    return d


def _args(d: pathlib.Path, out: pathlib.Path, **changes) -> list[str]:
    args = {"--config": str(CONFIG_PATH), "--checkpoint": str(d / "ckpt"), "--video": str(d / "walk.mp4"),
            "--mask": str(d / "mask.npz"), "--reference": str(d / "ref.png"), "--out": str(out)}
    args.update(changes)
    argv = []
    for key, value in args.items():
        if value is None:
            continue
        for v in value if isinstance(value, list) else [value]:
            argv += [key, v]
    return argv + ["--quiet"]


def _write(d, name, make):
    path = d / name
    if not path.exists():
        make(path)
    return str(path)


def _truncated(path):
    video_io.write_video(path.with_name("long.mp4"), clip(9), 12)
    data = path.with_name("long.mp4").read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])


CASES = {  # name -> (changes to the good command line, files it needs, words the error line must hold)
    "mask frame count": (lambda d: {"--mask": _write(d, "m4.npz", lambda p: np.savez(p, mask=box_track(4)))},
                         ["m4.npz", "has 4 frames but", "has 5"]),
    "mask size": (lambda d: {"--mask": _write(d, "m40.npz", lambda p: np.savez(p, mask=box_track(5, 32, 40)))},
                  ["m40.npz", "32x40", "at the video's resolution"]),
    "empty mask": (lambda d: {"--mask": _write(d, "m0.npz", lambda p: np.savez(p, mask=np.zeros((5, 32, 32))))},
                   ["m0.npz", "is empty", "mark the subject"]),
    "non-binary mask": (lambda d: {"--mask": _write(d, "mhalf.npz", lambda p: np.savez(
        p, mask=box_track(5) * 0.5))}, ["mhalf.npz", "not binary", "threshold"]),
    "unreadable video": (lambda d: {"--video": _write(d, "junk.mp4", lambda p: p.write_bytes(b"not a video" * 50))},
                         ["junk.mp4", "cannot be decoded", "re-export"]),
    "truncated video": (lambda d: {"--video": _write(d, "cut.mp4", _truncated)}, ["cut.mp4", "truncated"]),
    "condition frame count": (lambda d: {"--condition": _write(d, "cond4.npz", lambda p: np.savez(
        p, video=clip(4)))}, ["condition video", "cond4.npz", "one frame per video frame"]),
    "keypoint frame count": (lambda d: {"--keypoints": _write(d, "kp3.json", lambda p: tracks.write_keypoints(
        p, np.ones((3, 18, 3), np.float32)))}, ["kp3.json", "has 3 frames but the video has 5"]),
    "reference rank": (lambda d: {"--reference": _write(d, "ref2d.npy", lambda p: np.save(
        p, np.zeros((32, 32), np.uint8)))}, ["ref2d.npy", "rank 2", "single RGB or RGBA image"]),
    "reference channels": (lambda d: {"--reference": _write(d, "ref2c.npy", lambda p: np.save(
        p, np.zeros((32, 32, 2), np.uint8)))}, ["ref2c.npy", "2 channels", "RGB"]),
    "NaN in video": (lambda d: {"--video": _write(d, "nan.npz", lambda p: np.savez(
        p, video=np.where(np.arange(5)[:, None, None, None] == 2, np.nan, 0.0) * np.ones((5, 32, 32, 3))))},
                     ["nan.npz", "NaN", "clean the input"]),
    "NaN in text": (lambda d: {"--text": _write(d, "nantext.npy", lambda p: np.save(
        p, np.full((4, 32), np.nan, np.float32)))}, ["nantext.npy", "NaN"]),
    "text width": (lambda d: {"--text": _write(d, "t64.npy", lambda p: np.save(p, np.zeros((4, 64), np.float32)))},
                   ["t64.npy", "width 64", "reads 32"]),
    "checkpoint shapes": (lambda d: {"--set": ["dit.ffn_dim=48"]},
                          ["does not match its config", "config expects (2, 32, 48), checkpoint has (2, 32, 64)"]),
    "checkpoint architecture": (lambda d: {"--set": ["dit.eps=1e-5"]}, ["eps: config 1e-05, checkpoint 1e-06"]),
    "missing file": (lambda d: {"--reference": str(d / "nowhere.png")}, ["nowhere.png", "does not exist"]),
    "missing checkpoint": (lambda d: {"--checkpoint": str(d / "no_ckpt")}, ["no_ckpt", "does not exist"]),
    "bad sample override": (lambda d: {"--set": ["sample.sampler.num_steps=many"]}, ["sample.sampler.num_steps", "many"]),
    "unknown override": (lambda d: {"--set": ["sample.stepz=3"]}, ["sample.stepz", "no field 'stepz'"]),
    "bad config override": (lambda d: {"--set": ["dit.remat_policy=sometimes"]}, ["remat_policy", "sometimes"]),
    "mask format": (lambda d: {"--mask": _write(d, "mask.txt", lambda p: p.write_text("0 1"))},
                    ["mask.txt", "unsupported format"]),
    "case without reference": (lambda d: {"--video": None, "--mask": None, "--reference": None, "--case": _write(
        d, "case.npz", lambda p: np.savez(p, source=clip(5), mask=box_track(5)))}, ["case.npz", "reference"]),
    "video without mask": (lambda d: {"--mask": None}, ["--video needs --mask"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_no_output(files, tmp_path, capsys, case):
    changes, words = CASES[case]
    out = tmp_path / "out" / "result.mp4"
    code = cli.main(_args(files, out, **changes(files)))
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for word in words:
        assert word in err, (word, err)
    assert not (tmp_path / "out").exists()


def test_existing_output_is_refused_before_any_work(files, tmp_path, capsys):
    out = tmp_path / "result.mp4"
    out.write_bytes(b"keep me")
    assert cli.main(_args(files, out)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "already exists" in err, err
    assert "--overwrite" in err  # the flag that replaces it
    assert out.read_bytes() == b"keep me" and not (tmp_path / "result_sheet.png").exists()


def test_bad_command_line_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--config", str(CONFIG_PATH), "--video", "x.mp4"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--checkpoint" in err and err.endswith("see python sample.py --help")


def test_json_job_list_reports_each_bad_job(files, tmp_path, capsys):
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([
        {"video": str(files / "walk.mp4"), "mask": str(files / "m4.npz"), "reference": str(files / "ref.png"),
         "out": "out/a.mp4"},
        {"video": str(files / "walk.mp4"), "mask": str(files / "mask.npz"), "out": "out/b.mp4"},
        {"case": str(files / "walk.mp4"), "mask": str(files / "mask.npz"), "out": "out/c.mp4"},
        {"video": str(files / "walk.mp4"), "mask": str(files / "mask.npz"), "reference": str(files / "ref.png"),
         "out": "out/d.mp4", "seed": "one"},
    ]))
    if not (files / "m4.npz").exists():
        np.savez(files / "m4.npz", mask=box_track(4))
    argv = ["--config", str(CONFIG_PATH), "--checkpoint", str(files / "ckpt"), "--jobs", str(jobs), "--quiet"]
    assert cli.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("error: ") for line in lines), lines
    assert "m4.npz" in lines[0] and "needs a mask and a reference" in lines[1]
    assert "case NPZ holds its mask" in lines[2] and "'seed' must be an integer" in lines[3]
    assert not (tmp_path / "out").exists()


def test_sample_py_subprocess_fails_cleanly(files, tmp_path):
    out = tmp_path / "out" / "result.mp4"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, str(ROOT / "sample.py"), *_args(files, out, **{"--mask": str(
        files / "nowhere_mask.npz")})], capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nowhere_mask.npz" in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()
