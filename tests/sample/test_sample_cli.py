"""`python sample.py` end to end on CPU in a subprocess, in batch mode over a folder: a video with audio, a JSON box
mask and an RGBA reference; a one-NPZ swap case; and a video without a mask, which is reported while the others
are written (H.264 at the source's fps and frame count, audio copied, a PNG sheet)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import cv2
import numpy as np

from media_fixtures import write_av_source
from sample_fixtures import CONFIG_PATH, clip, write_checkpoint
from swapjax.data import masks, tracks, video_io

ROOT = pathlib.Path(__file__).resolve().parents[2]
H, W = 32, 48


def _track(num_frames: int) -> np.ndarray:
    mask = np.zeros((num_frames, H, W), np.uint8)
    for t in range(num_frames):
        mask[t, 6:22, 8 + t:26 + t] = 1
    return mask


def test_batch_folder_end_to_end(tmp_path):
    write_checkpoint(tmp_path / "ckpt")
    clips = tmp_path / "clips"
    clips.mkdir()
    write_av_source(clips / "walk.mp4", num_frames=7, fps=12, audio=True, height=H, width=W)
    tracks.write_box_track(clips / "walk_mask.json", tracks.mask_to_boxes(_track(7)), W, H)
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[4:16, 4:16] = (200, 40, 40, 255)  # a red square cut-out; the rest transparent (composited on grey)
    video_io.write_image(clips / "walk_ref.png", rgba)
    np.savez(clips / "case.npz", source=clip(5, H, W), mask=_track(5), reference=rgba[..., :3],
             ground_truth=clip(5, H, W), notes=np.arange(3))
    video_io.write_video(clips / "lonely.mp4", clip(5, H, W), 12)  # no lonely_mask.*: a bad job

    out = tmp_path / "out"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, str(ROOT / "sample.py"), "--config", str(CONFIG_PATH), "--checkpoint",
                           str(tmp_path / "ckpt"), "--batch", str(clips), "--out-dir", str(out), "--set",
                           "sample.sampler.num_steps=2", "--set", "sample.text_len=8", "--quiet"],
                          capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr  # one job was bad, the others ran: a partly failed batch
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: ") and "lonely_mask" in errors[0], proc.stderr
    wrote = [line for line in proc.stdout.splitlines() if line.startswith("wrote ")]
    assert len(wrote) == 2 and "psnr_vs_ground_truth" in proc.stdout, proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["case.mp4", "case_sheet.png", "walk.mp4", "walk_sheet.png"]

    frames, fps, has_audio = video_io.read_video(out / "walk.mp4")
    source, source_fps, _ = video_io.read_video(clips / "walk.mp4")
    assert frames.shape == source.shape and fps == source_fps == 12 and has_audio
    keep = masks.dilate(_track(7), 3) == 0  # well outside the composite's dilated, feathered mask
    assert np.abs(frames[keep].astype(int) - source[keep]).mean() < 3  # only H.264 re-encoding noise
    case, case_fps, case_audio = video_io.read_video(out / "case.mp4")
    assert case.shape == (5, H, W, 3) and case_fps == 24 and not case_audio
    sheet = cv2.imread(str(out / "walk_sheet.png"))
    assert sheet.shape == (3 * H, 4 * W, 3)
