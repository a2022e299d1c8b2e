"""Writing one job's outputs, each atomically (a temporary name, renamed when complete):

    OUT.mp4          H.264 yuv420p at the source's fps, with its frame count and its audio stream copied
    OUT_sheet.png    a few frames as rows of source | mask | reference | result

`check_outputs` runs before any model work, so an unusable path fails first and nothing is left behind.
"""

from __future__ import annotations

import pathlib

import numpy as np

from swapjax.atomic import check_output
from swapjax.data import video_io
from swapjax.errors import InputError, OutputError
from swapjax.sample.inputs import JobInputs
from swapjax.sample.pipeline import SwapResult, letterbox


def sheet_path(out: str | pathlib.Path) -> pathlib.Path:
    """Where the PNG sheet of `OUT.mp4` goes: `OUT_sheet.png` beside it."""
    out = pathlib.Path(out)
    return out.with_name(f"{out.stem}_sheet.png")


def check_new(path: str | pathlib.Path, *, flag: str = "--out", overwrite: bool = False) -> pathlib.Path:
    """`atomic.check_output` for a command with `--overwrite`: an existing file is refused with a message that
    names the flag that replaces it. Returns the path (absolute)."""
    path = pathlib.Path(path).absolute()
    if path.exists() and not overwrite:
        raise OutputError(f"{flag} {str(path)!r} already exists: pass --overwrite to replace it, or choose another "
                          f"{flag.split()[0]}")
    return check_output(path, flag=flag, replace=True)


def check_outputs(out: str | pathlib.Path, *, overwrite: bool = False, flag: str = "--out") -> pathlib.Path:
    """Checks that the video and its sheet can be written; returns the video path (absolute)."""
    out = pathlib.Path(out)
    if out.suffix.lower() not in video_io.WRITE_VIDEO_SUFFIXES:
        raise InputError(f"{flag} {str(out)!r} has suffix {out.suffix!r}: write a video, one of "
                         f"{video_io.WRITE_VIDEO_SUFFIXES}")
    path = check_new(out, flag=flag, overwrite=overwrite)
    check_new(sheet_path(out), flag=f"{flag} sheet", overwrite=overwrite)
    return path


def make_sheet(inputs: JobInputs, result: SwapResult, rows: int) -> np.ndarray:
    """uint8 `[rows * H, 4 * W, 3]`: for `rows` evenly spaced frames, source | mask (the composite weight, white =
    generated) | reference | result."""
    num_frames, height, width = inputs.video.shape[:3]
    picks = np.unique(np.linspace(0, num_frames - 1, min(rows, num_frames)).round().astype(int))
    reference = letterbox(inputs.reference, height, width)  # [H, W, 3]
    lines = []
    for i in picks:
        mask = np.repeat(np.round(result.alpha[i, :, :, None] * 255), 3, axis=-1).astype(np.uint8)  # [H, W, 3]
        lines.append(np.concatenate([inputs.video[i], mask, reference, result.frames[i]], axis=1))
    return np.concatenate(lines, axis=0)


def write_outputs(out: str | pathlib.Path, inputs: JobInputs, result: SwapResult, *, sheet_rows: int) -> None:
    """Writes `OUT` (video, source fps and audio) and `OUT_sheet.png`; odd frame sizes repeat an edge row/column.
    A missing output folder is created (only now, when there is something to put in it)."""
    pathlib.Path(out).parent.mkdir(parents=True, exist_ok=True)
    video_io.write_video(out, result.frames, inputs.fps, audio_from=inputs.audio_from, pad_to_even=True)
    video_io.write_image(sheet_path(out), make_sheet(inputs, result, sheet_rows))
