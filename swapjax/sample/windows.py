"""Long videos as overlapping windows of one fixed length, cross-faded, and the two numbers that judge the joins.

    plan = plan_windows(num_frames, window_frames, overlap_frames)   # [Window(start, stop, length), ...]
    weights = blend_weights(plan, num_frames)                          # [n, F], every column sums to 1

A video no longer than a window is one window, its length padded to 1 mod 4. A longer one is cut into windows
of exactly `window_frames` frames starting every `window_frames - overlap_frames` frames; the last starts at
`F - window_frames`, so it ends on the last frame (it may overlap its neighbour by more). Every window has the
same shape, so one compiled step serves them all and device memory does not grow with the number of windows.
Each window after the first is anchored on the last latent frame the previous one generated (the swap model's
anchor slot; `aligned` plans keep every window on its predecessor's latent-frame grid, see `plan_windows`). In an overlap the earlier window fades out and the later one fades in linearly; the weights of every
frame sum to 1, so each frame of the output is made exactly once.

Judging the joins (reported with every run; the scores live in `swapjax.metrics`, which takes any plan):
- `seam_ratio`: the mean frame-to-frame change in the swapped region at the joins (the frames where a window
  starts or stops contributing) over the mean change inside windows; ~1 means no visible seam.
- `colour_drift`: the mean colour of the swapped region in each window, and the largest distance (0..255 RGB
  units) of a window's mean colour from the first window's.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from swapjax.sample.geometry import vae_frame_count


@dataclasses.dataclass(frozen=True)
class Window:
    """Frames `[start, stop)` of the video; the model sees `length` frames (the tail padded when shorter)."""

    start: int
    stop: int
    length: int


def plan_windows(num_frames: int, window_frames: int, overlap_frames: int, *, aligned: bool = False
                 ) -> list[Window]:
    """The windows covering `num_frames` frames (see the module docstring). `aligned` (models with an anchor
    slot): every window starts a whole stride after the previous one, the last included, and the last is padded
    past the end instead of starting earlier, so each window's anchor latent frame covers exactly the source
    frames of its predecessor's last latent frame (`fused_inputs.anchor_index`)."""
    if num_frames < 1:
        raise ValueError(f"plan_windows: a video needs at least one frame, got {num_frames}")
    if num_frames <= window_frames:
        return [Window(0, num_frames, vae_frame_count(num_frames))]
    stride = window_frames - overlap_frames
    if aligned:
        starts = list(range(0, num_frames - overlap_frames, stride))
        return [Window(s, min(s + window_frames, num_frames), window_frames) for s in starts]
    starts = list(range(0, num_frames - window_frames, stride)) + [num_frames - window_frames]
    return [Window(s, s + window_frames, window_frames) for s in starts]


def blend_weights(plan: list[Window], num_frames: int) -> np.ndarray:
    """float32 `[n, F]`: the share of window `i`'s output in frame `t` (0 outside the window; columns sum to 1).

    Inside a window the weight rises over the overlap with the previous window as `(j + 1) / (n + 1)` and falls
    symmetrically over the overlap with the next one; each column is then divided by its sum.
    """
    weights = np.zeros((len(plan), num_frames), np.float64)
    for i, win in enumerate(plan):
        t = np.arange(win.start, win.stop)
        rise = plan[i - 1].stop - win.start if i > 0 else 0
        fall = win.stop - plan[i + 1].start if i + 1 < len(plan) else 0
        up = np.minimum((t - win.start + 1) / (rise + 1), 1.0)
        down = np.minimum((win.stop - t) / (fall + 1), 1.0)
        weights[i, win.start:win.stop] = np.minimum(up, down)
    total = weights.sum(axis=0)  # [F]
    if (total <= 0).any():
        raise ValueError(f"blend_weights: frames {np.flatnonzero(total <= 0).tolist()} are in no window")
    return (weights / total).astype(np.float32)
