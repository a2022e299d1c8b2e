"""Small media files for the data-layer tests: smooth test videos, an AAC source, directory snapshots."""

from __future__ import annotations

import pathlib

import av
import numpy as np


def smooth_video(num_frames: int = 5, height: int = 32, width: int = 48, seed: int = 0) -> np.ndarray:
    """uint8 `[F, H, W, 3]` with smooth gradients that survive H.264 almost unchanged."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40, 200, size=3)
    frames = [np.stack([base[c] + 30 * np.sin(xs / 9 + t / 3 + c) + 20 * np.cos(ys / 7 - t / 4)
                        for c in range(3)], axis=-1) for t in range(num_frames)]
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)  # [F, H, W, 3]


def box_mask(num_frames: int = 5, height: int = 32, width: int = 48) -> np.ndarray:
    """uint8 `[F, H, W]` {0, 1}: a box moving right by 2 pixels a frame."""
    mask = np.zeros((num_frames, height, width), np.uint8)
    for t in range(num_frames):
        mask[t, height // 4: height // 2 + 2, 4 + 2 * t: width // 2 + 2 * t] = 1
    return mask


def write_av_source(path: pathlib.Path, num_frames: int = 12, fps: int = 12, audio: bool = True,
                    height: int = 32, width: int = 48, video: bool = True) -> None:
    """An MP4 made directly with PyAV (not through swapjax): H.264 video and/or a 440 Hz AAC sine."""
    rate = 16000
    with av.open(str(path), "w") as out:
        if video:
            vs = out.add_stream("libx264", rate=fps)
            vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        if audio:
            aus = out.add_stream("aac", rate=rate)
            aus.layout = "mono"
        if video:
            for frame in smooth_video(num_frames, height, width):
                for packet in vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    out.mux(packet)
            for packet in vs.encode():
                out.mux(packet)
        if audio:
            t = np.arange(int(rate * num_frames / fps)) / rate
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]  # [1, T]
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = rate
            for packet in list(aus.encode(frame)) + list(aus.encode(None)):
                out.mux(packet)


def snapshot(folder: pathlib.Path) -> dict[str, tuple[int, int]]:
    """Every path under `folder` (hidden ones included) -> (size, mtime_ns); to check nothing changed."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}
