"""The sweep's plot, drawn with OpenCV (already a dependency): final loss against training compute on log-log
axes, one colour per model size, the frontier's fitted power law as a line, written as a PNG."""

from __future__ import annotations

import math
import pathlib
from typing import Sequence

import cv2
import numpy as np

from swapjax.atomic import atomic_write
from swapjax.scaling.fit import PowerLaw

SIZE = (720, 480)  # width, height in pixels
MARGIN = (80, 45, 30, 60)  # left, top, right, bottom
PALETTE = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140),
           (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23)]  # BGR
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _ticks(lo: float, hi: float) -> list[float]:
    """Ticks for a log axis over [lo, hi]: decades (or 1-2-5 steps) over wide ranges; within a decade, evenly
    spaced round values (steps of 1, 2, 2.5 or 5 times a power of ten, four to eight of them)."""
    if hi / lo >= 10:
        first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        for steps in ((1,), (1, 2, 5)):
            ticks = [m * 10.0 ** e for e in range(first, last + 1) for m in steps if lo <= m * 10.0 ** e <= hi]
            if len(ticks) >= 3:
                break
        return ticks
    for power in range(math.floor(math.log10(hi - lo)), math.floor(math.log10(hi - lo)) - 3, -1):
        for mult in (5, 2.5, 2, 1):
            step = mult * 10.0 ** power
            ticks = [k * step for k in range(math.ceil(lo / step), math.floor(hi / step) + 1)]
            if len(ticks) >= 4:
                return ticks[:8] if len(ticks) <= 8 else ticks[::2][:8]
    return [lo, hi]


def _label(v: float) -> str:
    return f"{v:.0e}".replace("e+0", "e").replace("e-0", "e-") if v >= 1e4 or v < 1e-2 else f"{round(v, 6):g}"


def plot_sweep(path: str | pathlib.Path, compute: Sequence[float], loss: Sequence[float], groups: Sequence[str],
               law: PowerLaw | None, title: str) -> pathlib.Path:
    """Writes the plot (atomically) and returns its path. `groups`: the model-size label of each point."""
    compute, loss = np.asarray(compute, np.float64), np.asarray(loss, np.float64)
    w, h = SIZE
    left, top, right, bottom = MARGIN
    img = np.full((h, w, 3), 255, np.uint8)
    cx = (compute.min() / 1.5, compute.max() * 1.5)
    ly = (loss.min() / 1.1, loss.max() * 1.1)

    def to_x(c: float) -> int:  # both axes are logarithmic
        share = (math.log(c) - math.log(cx[0])) / (math.log(cx[1]) - math.log(cx[0]))
        return int(left + share * (w - left - right))

    def to_y(v: float) -> int:
        share = (math.log(v) - math.log(ly[0])) / (math.log(ly[1]) - math.log(ly[0]))
        return int(h - bottom - share * (h - top - bottom))

    cv2.rectangle(img, (left, top), (w - right, h - bottom), (0, 0, 0), 1)
    for c in _ticks(*cx):
        cv2.line(img, (to_x(c), h - bottom), (to_x(c), h - bottom + 5), (0, 0, 0), 1)
        cv2.putText(img, _label(c), (to_x(c) - 18, h - bottom + 20), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for v in _ticks(*ly):
        cv2.line(img, (left - 5, to_y(v)), (left, to_y(v)), (0, 0, 0), 1)
        cv2.putText(img, _label(v), (left - 50, to_y(v) + 4), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "training compute (FLOPs)", (w // 2 - 90, h - 15), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "final loss", (8, top - 12), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, title, (left + 90, 20), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    if law is not None:
        xs = np.geomspace(*cx, 50)
        pts = np.array([[to_x(c), to_y(v)] for c, v in zip(xs, law(xs)) if ly[0] <= v <= ly[1]], np.int32)
        if len(pts) >= 2:
            cv2.polylines(img, [pts], False, (60, 60, 60), 1, cv2.LINE_AA)
        cv2.putText(img, law.describe().split(" (")[0], (left + 10, h - bottom - 10), FONT, 0.45, (60, 60, 60), 1,
                    cv2.LINE_AA)
    names = list(dict.fromkeys(groups))
    for i, name in enumerate(names):
        colour = PALETTE[i % len(PALETTE)]
        for c, v, g in zip(compute, loss, groups):
            if g == name:
                cv2.circle(img, (to_x(c), to_y(v)), 5, colour, -1, cv2.LINE_AA)
        y = top + 20 + 18 * i
        cv2.circle(img, (w - right - 150, y - 4), 5, colour, -1, cv2.LINE_AA)
        cv2.putText(img, name, (w - right - 138, y), FONT, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    path = pathlib.Path(path)
    with atomic_write(path) as tmp:  # tmp keeps the .png suffix, which picks OpenCV's encoder
        if not cv2.imwrite(str(tmp), img):
            raise OSError(f"OpenCV could not write the plot {str(path)!r}: pass --out in a writable folder")
    return path
