"""Small media for the data and sampling tests: smooth test videos, an AAC source, directory snapshots, a sprite
pasted on a plain canvas (reference images)."""

from __future__ import annotations

import pathlib

import av
import numpy as np

from helpers import smooth_video  # the data tests import it from here, beside the other media fixtures


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


def sprite(scale: int = 1):
    """uint8 `[40s, 30s, 3]` and bool `[40s, 30s]`: a striped body and a two-tone head with hard edges."""
    yy, xx = np.mgrid[0:40, 0:30]
    body = ((yy - 26) / 13.5) ** 2 + ((xx - 14.5) / 14.5) ** 2 <= 1
    head = (yy >= 2) & (yy < 14) & (xx >= 8) & (xx < 22)
    image = np.zeros((40, 30, 3), np.uint8)
    image[body] = (200, 60, 40)
    image[body & ((xx // 4) % 2 == 0)] = (230, 150, 30)
    image[head] = (40, 90, 200)
    image[head & (yy > 8)] = (20, 160, 90)
    grow = lambda a: np.repeat(np.repeat(a, scale, 0), scale, 1)  # noqa: E731 (nearest-neighbour zoom)
    return grow(image), grow(body | head)


def framed(canvas_hw, colour, top, left, scale: int = 1):
    """The sprite pasted (subject pixels only) at (top, left) on a plain canvas: uint8 image, bool mask."""
    image, subject = sprite(scale)
    out = np.empty((*canvas_hw, 3), np.uint8)
    out[...] = colour
    mask = np.zeros(canvas_hw, bool)
    h, w = subject.shape
    out[top:top + h, left:left + w][subject] = image[subject]
    mask[top:top + h, left:left + w] = subject
    return out, mask
