"""Offline scores of a swapped video: pure numpy / OpenCV / scikit-image functions, no downloaded network.

Layouts (docs/design.md, "Conventions", without the batch axis): videos are `[F, H, W, 3]` with pixel values in
0..255 (uint8, or any real dtype on that scale), masks and regions `[F, H, W]` (nonzero = in), a reference
image `[Hr, Wr, 3]` with its subject on neutral grey. Every score pools over all the pixels it looks at (not a
mean of per-frame means), so a small frame counts as much per pixel as a large one.

- `background_scores`: PSNR / SSIM / MAE against the source outside `dilate(mask, radius)`;
- `masked_scores`: PSNR / SSIM against a ground truth inside a region;
- `flicker`: mean absolute change between consecutive frames; `warp_error`: the same after warping frame
  `t + 1` back onto frame `t` along the optical flow (Farneback, `farneback_flow`);
- `seam_ratio`, `window_colours`, `colour_drift`: the long-video join scores, over any window plan (objects
  with `start` / `stop`: `swapjax.sample.windows.plan_windows` makes them; every sampling run reports them);
- `subject_colour_distances`: the mean colour of the swapped region against the reference's subject and the
  original subject; `segment_subject` + `centroid_error`: where the new subject is, against the source track;
- `embedding_similarity`: cosine similarity of the swapped subject and the reference under any embedding
  callable (an identity or image encoder the user supplies weights for);
- `media_kept`: whether a written video kept the source's fps, frame count, size and audio.

PSNR of identical pixels is `inf` (no cap); a score over an empty region is NaN.
"""

from __future__ import annotations

import math
import pathlib
from typing import Callable, Protocol, Sequence, runtime_checkable

import cv2
import numpy as np
from scipy.spatial import cKDTree
from skimage.metrics import structural_similarity

from swapjax.data import masks, video_io
from swapjax.data.reference import NEUTRAL_GREY

PIXEL_MAX = 255.0
SSIM_WINDOW = 7  # scikit-image's default window side; smaller frames use the largest odd side that fits


def _video(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"{name} has shape {x.shape}: expected a video [F, H, W, 3]")
    return x.astype(np.float64)


def _region(region: np.ndarray | None, shape: tuple[int, ...], name: str = "region") -> np.ndarray:
    """bool `[F, H, W]` (all True when `region` is None)."""
    if region is None:
        return np.ones(shape[:3], bool)
    region = np.asarray(region)
    if region.shape != tuple(shape[:3]):
        raise ValueError(f"{name} has shape {region.shape}: expected [F, H, W] = {list(shape[:3])}")
    return region != 0


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _video(a, "first video"), _video(b, "second video")
    if a.shape != b.shape:
        raise ValueError(f"videos of shapes {a.shape} and {b.shape} cannot be compared: give equal shapes")
    return a, b


def mae(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
    """Mean absolute difference of videos `[F, H, W, 3]` over the pixels of `region` `[F, H, W]` (0..255)."""
    a, b = _pair(a, b)
    m = _region(region, a.shape)
    return float(np.abs(a - b)[m].mean()) if m.any() else math.nan


def psnr(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
    """PSNR in dB, `10 log10(255^2 / MSE)`, of videos `[F, H, W, 3]` over `region` `[F, H, W]`; inf if equal."""
    a, b = _pair(a, b)
    m = _region(region, a.shape)
    if not m.any():
        return math.nan
    mse = float(((a - b) ** 2)[m].mean())
    return math.inf if mse == 0 else float(10 * np.log10(PIXEL_MAX ** 2 / mse))


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM of videos `[F, H, W, 3]` -> float `[F, H, W]` (channels averaged).

    scikit-image's SSIM (uniform 7x7 window, K1 = 0.01, K2 = 0.03, data range 255) per frame and channel,
    keeping the full map (border windows mirror the frame); frames under 7 pixels use a smaller odd window.
    """
    a, b = _pair(a, b)
    side = min(SSIM_WINDOW, *a.shape[1:3])
    side -= 1 - side % 2  # odd
    if side < 3:
        raise ValueError(f"SSIM needs frames of at least 3x3 pixels, got {a.shape[1]}x{a.shape[2]}")
    out = np.empty(a.shape[:3])
    for t in range(a.shape[0]):
        _, full = structural_similarity(a[t], b[t], win_size=side, channel_axis=-1, data_range=PIXEL_MAX,
                                        full=True)  # [H, W, 3]
        out[t] = full.mean(axis=-1)
    return out


def ssim(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
    """Mean of `ssim_map` over `region` `[F, H, W]` of videos `[F, H, W, 3]`, with `a`'s pixels outside the region
    replaced by `b`'s first, so that only differences inside the region count (SSIM windows reach across its
    edge). 1 when the videos agree in the region."""
    a, b = _pair(a, b)
    m = _region(region, a.shape)
    if not m.any():
        return math.nan
    return float(ssim_map(np.where(m[..., None], a, b), b)[m].mean())


def background_region(mask: np.ndarray, dilate: int) -> np.ndarray:
    """bool `[F, H, W]`: the pixels farther than `dilate` pixels from the mask `[F, H, W]`."""
    return masks.dilate(mask, dilate) == 0


def background_scores(result: np.ndarray, source: np.ndarray, mask: np.ndarray, dilate: int) -> dict[str, float]:
    """How well `result` kept the background: PSNR, SSIM and MAE against `source` (videos `[F, H, W, 3]`)
    outside `dilate(mask, dilate)` (`mask` `[F, H, W]`). Keys `bg_psnr`, `bg_ssim`, `bg_mae`."""
    keep = background_region(mask, dilate)
    return {"bg_psnr": psnr(result, source, keep), "bg_ssim": ssim(result, source, keep),
            "bg_mae": mae(result, source, keep)}


def masked_scores(result: np.ndarray, truth: np.ndarray, region: np.ndarray) -> dict[str, float]:
    """PSNR and SSIM of `result` against a ground-truth video (`[F, H, W, 3]`) inside `region` `[F, H, W]`.
    Keys `masked_psnr`, `masked_ssim`."""
    return {"masked_psnr": psnr(result, truth, region), "masked_ssim": ssim(result, truth, region)}


def flicker(frames: np.ndarray, region: np.ndarray | None = None) -> float:
    """Mean absolute change `|x[t+1] - x[t]|` of a video `[F, H, W, 3]` (0..255) over the pixels in `region`
    `[F, H, W]` at `t` or `t + 1`; NaN for fewer than 2 frames."""
    x = _video(frames, "video")
    m = _region(region, x.shape)
    step = m[:-1] | m[1:]  # [F - 1, H, W]
    if not step.any():
        return math.nan
    return float(np.abs(x[1:] - x[:-1])[step].mean())


def _grey(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.clip(np.round(frame), 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)


def farneback_flow(frames: np.ndarray) -> np.ndarray:
    """Dense optical flow from each frame to the next (OpenCV Farneback on grey levels): float32 `[F-1, H, W, 2]`
    (dx, dy), so that frame `t` at `(x, y)` shows what frame `t + 1` shows at `(x + dx, y + dy)`. Equal grey
    frames get zero flow (Farneback itself returns a few hundredths of a pixel of noise there)."""
    x = _video(frames, "video")
    grey = [_grey(f) for f in x]
    flows = [np.zeros((*p.shape, 2), np.float32) if np.array_equal(p, n) else
             cv2.calcOpticalFlowFarneback(p, n, None, pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5,
                                          poly_sigma=1.2, flags=0) for p, n in zip(grey[:-1], grey[1:])]
    return np.stack(flows).astype(np.float32) if flows else np.zeros((0, *x.shape[1:3], 2), np.float32)


def warp_error(frames: np.ndarray, flow: np.ndarray | None = None, region: np.ndarray | None = None) -> float:
    """Mean absolute difference between frame `t` and frame `t + 1` warped back along `flow` `[F-1, H, W, 2]`
    (default `farneback_flow(frames)`; bilinear), over the pixels of `region` `[F, H, W]` at `t` whose flow
    stays inside the frame. Videos `[F, H, W, 3]` in 0..255; 0 for a video whose motion the flow explains."""
    x = _video(frames, "video")
    m = _region(region, x.shape)
    flow = farneback_flow(x) if flow is None else np.asarray(flow, np.float32)
    if flow.shape != (x.shape[0] - 1, *x.shape[1:3], 2):
        raise ValueError(f"flow has shape {flow.shape}: expected [F - 1, H, W, 2] = "
                         f"{[x.shape[0] - 1, *x.shape[1:3], 2]}")
    ys, xs = np.mgrid[0:x.shape[1], 0:x.shape[2]].astype(np.float32)
    total, count = 0.0, 0
    for t in range(x.shape[0] - 1):
        map_x, map_y = xs + flow[t, ..., 0], ys + flow[t, ..., 1]  # [H, W]
        back = cv2.remap(x[t + 1].astype(np.float32), map_x, map_y, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)  # [H, W, 3]
        inside = (map_x >= 0) & (map_x <= x.shape[2] - 1) & (map_y >= 0) & (map_y <= x.shape[1] - 1)
        use = inside & m[t]
        total += float(np.abs(back.astype(np.float64) - x[t])[use].sum())
        count += int(use.sum()) * 3
    return total / count if count else math.nan


@runtime_checkable  # plan annotations are checked at run time in the tests (beartype)
class Span(Protocol):
    """A window of a plan: frames `[start, stop)` (`swapjax.sample.windows.Window` is one)."""

    start: int
    stop: int


def join_transitions(plan: Sequence[Span]) -> list[int]:
    """Indices `t` of the frame changes `t -> t + 1` where a window starts or stops contributing."""
    joins = set()
    for prev, win in zip(plan[:-1], plan[1:]):
        joins.update({win.start - 1, prev.stop - 1})
    return sorted(t for t in joins if 0 <= t < plan[-1].stop - 1)


def seam_ratio(frames: np.ndarray, region: np.ndarray, plan: Sequence[Span]) -> float | None:
    """Mean change in `region` `t -> t + 1` at the joins of `plan` over the mean change elsewhere.

    `frames` `[F, H, W, 3]`, `region` `[F, H, W]` (the swapped region); ~1 means no visible seam; None for a
    single window or when nothing changes inside windows."""
    joins = join_transitions(plan)
    frames = np.asarray(frames)
    if not joins or frames.shape[0] < 3:
        return None
    x = frames.astype(np.float32)
    inside_region = (np.asarray(region[:-1]) != 0) | (np.asarray(region[1:]) != 0)  # [F - 1, H, W]
    diff = np.abs(x[1:] - x[:-1]).mean(axis=-1)  # [F - 1, H, W]
    per_step = (diff * inside_region).sum(axis=(1, 2)) / np.maximum(inside_region.sum(axis=(1, 2)), 1)  # [F - 1]
    inside = np.setdiff1d(np.arange(per_step.shape[0]), joins)
    if inside.size == 0 or per_step[inside].mean() == 0:
        return None
    return float(per_step[joins].mean() / per_step[inside].mean())


def window_colours(frames: np.ndarray, region: np.ndarray, plan: Sequence[Span]) -> np.ndarray:
    """Mean RGB of `region` per window: float `[n, 3]` (NaN for a window whose region is empty)."""
    frames = np.asarray(frames)
    out = np.full((len(plan), 3), np.nan)
    for i, win in enumerate(plan):
        m = np.asarray(region[win.start:win.stop]) != 0  # [w, H, W]
        if m.any():
            out[i] = frames[win.start:win.stop][m].astype(np.float64).mean(axis=0)
    return out


def colour_drift(colours: np.ndarray) -> float:
    """The largest RGB distance (0..255 units) of a window's mean colour (`window_colours`) from the first
    window's (0 for one window)."""
    valid = colours[~np.isnan(colours).any(axis=1)]
    if len(valid) < 2:
        return 0.0
    return float(np.linalg.norm(valid - valid[0], axis=1).max())


def reference_subject(reference: np.ndarray, tolerance: int = 6) -> np.ndarray:
    """bool `[Hr, Wr]`: the reference's subject, every pixel differing from neutral grey by more than
    `tolerance` in some channel (references carry their subject on flat grey)."""
    ref = np.asarray(reference)
    if ref.ndim != 3 or ref.shape[-1] != 3:
        raise ValueError(f"reference has shape {ref.shape}: expected an RGB image [H, W, 3]")
    return (np.abs(ref.astype(np.int32) - NEUTRAL_GREY) > tolerance).any(axis=-1)


def _reference_colours(reference: np.ndarray) -> np.ndarray:
    """float `[N, 3]`: the reference's subject pixels (all pixels if none differs from grey)."""
    ref = np.asarray(reference, np.float64)
    subject = reference_subject(reference)
    return ref[subject] if subject.any() else ref.reshape(-1, 3)


def subject_colour_distances(result: np.ndarray, source: np.ndarray, mask: np.ndarray, reference: np.ndarray
                             ) -> dict[str, float]:
    """RGB distances (0..255 units) of the mean colour of `result` inside `mask` `[F, H, W]` (the swapped
    subject) from the mean colour of the reference's subject (`colour_to_reference`) and from the mean colour
    of `source` inside `mask` (the original subject, `colour_to_source`). Videos `[F, H, W, 3]`."""
    r, s = _pair(result, source)
    m = _region(mask, r.shape, "mask")
    if not m.any():
        return {"colour_to_reference": math.nan, "colour_to_source": math.nan}
    swapped = r[m].mean(axis=0)  # [3]
    return {"colour_to_reference": float(np.linalg.norm(swapped - _reference_colours(reference).mean(axis=0))),
            "colour_to_source": float(np.linalg.norm(swapped - s[m].mean(axis=0)))}


def segment_subject(frames: np.ndarray, region: np.ndarray, reference: np.ndarray, ring: int = 3) -> np.ndarray:
    """Where the reference's subject shows in a video: uint8 `[F, H, W]`.

    A pixel of `region` `[F, H, W]` (where the new subject may be) is subject when its colour lies nearer to
    some colour of the reference's subject than to every colour of the frame's ring of pixels just outside
    the region (up to `ring` pixels away: the surrounding background). Without a ring (the region fills the
    frame) every region pixel counts. Meant for subjects whose colours differ from their surroundings, such
    as the synthetic data's sprites.
    """
    x = _video(frames, "video")
    inside = _region(region, x.shape)
    around = (masks.dilate(inside, ring) != 0) & ~inside  # [F, H, W]
    ref_tree = cKDTree(_reference_colours(reference))
    out = np.zeros(x.shape[:3], np.uint8)
    for t in range(x.shape[0]):
        pixels = x[t][inside[t]]  # [P, 3]
        if not len(pixels):
            continue
        if not around[t].any():
            out[t][inside[t]] = 1
            continue
        to_ref, _ = ref_tree.query(pixels)
        to_bg, _ = cKDTree(x[t][around[t]]).query(pixels)
        out[t][inside[t]] = to_ref < to_bg
    return out


def centroids(mask: np.ndarray) -> np.ndarray:
    """Centroid (x, y) in pixels of each frame of a mask `[F, H, W]`: float `[F, 2]`, NaN for empty frames."""
    m = _region(mask, np.shape(mask), "mask").astype(np.float64)
    area = m.sum(axis=(1, 2))  # [F]
    ys, xs = np.arange(m.shape[1]), np.arange(m.shape[2])
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = (m.sum(axis=1) * xs).sum(axis=1) / area
        cy = (m.sum(axis=2) * ys).sum(axis=1) / area
    return np.stack([cx, cy], axis=1)  # [F, 2]


def centroid_error(mask: np.ndarray, track: np.ndarray) -> float:
    """Mean distance in pixels between the centroids of two mask tracks `[F, H, W]` over the frames where both
    are non-empty (NaN when there is none): how far a swapped subject strays from the source's path."""
    a, b = centroids(mask), centroids(track)
    both = ~np.isnan(a).any(axis=1) & ~np.isnan(b).any(axis=1)
    return float(np.linalg.norm(a[both] - b[both], axis=1).mean()) if both.any() else math.nan


def square_on_grey(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 `[h, w, 3]` -> `[size, size, 3]`: centred on a neutral-grey square of side `max(h, w)`, resized."""
    h, w = image.shape[:2]
    side = max(h, w)
    square = np.full((side, side, 3), NEUTRAL_GREY, np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    square[top:top + h, left:left + w] = image
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interp).reshape(size, size, 3)


def subject_crops(frames: np.ndarray, region: np.ndarray, size: int) -> np.ndarray:
    """uint8 `[N, size, size, 3]`: per frame with region pixels, the region's box with everything outside the
    region painted neutral grey, `square_on_grey` (the reference's look)."""
    x = np.clip(np.round(_video(frames, "video")), 0, 255).astype(np.uint8)
    m = _region(region, x.shape)
    crops = []
    for t in np.flatnonzero(m.any(axis=(1, 2))):
        rows, cols = np.flatnonzero(m[t].any(axis=1)), np.flatnonzero(m[t].any(axis=0))
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        cut = np.where(m[t, y0:y1, x0:x1, None], x[t, y0:y1, x0:x1], np.uint8(NEUTRAL_GREY))  # [h, w, 3]
        crops.append(square_on_grey(cut, size))
    return np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)


Embedder = Callable[[np.ndarray], np.ndarray]  # uint8 images [N, H, W, 3] -> embeddings [N, E]


def embedding_similarity(embed: Embedder, frames: np.ndarray, region: np.ndarray, reference: np.ndarray) -> float:
    """Mean cosine similarity between `embed` of the reference `[Hr, Wr, 3]` and of the swapped subject of each
    frame (`subject_crops` of `frames` `[F, H, W, 3]` in `region` `[F, H, W]`), both squared on grey at the
    reference's longer side."""
    ref = np.asarray(reference, np.uint8)
    size = max(ref.shape[:2])
    crops = subject_crops(frames, region, size)  # [N, S, S, 3]
    if not len(crops):
        return math.nan
    square = square_on_grey(ref, size)  # [S, S, 3]
    vectors = np.asarray(embed(np.concatenate([square[None], crops])), np.float64)  # [1 + N, E]
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return float((unit[1:] @ unit[0]).mean())


def media_kept(path: str | pathlib.Path, *, fps: float, num_frames: int, height: int, width: int, audio: bool
               ) -> dict[str, bool]:
    """Reads a written video with `swapjax.data.video_io` and checks it kept the source's frame rate (to 0.1 %),
    frame count, frame size and whether it has audio. Keys `fps_kept`, `frames_kept`, `size_kept`,
    `audio_kept`."""
    frames, got_fps, has_audio = video_io.read_video(path)
    return {"fps_kept": abs(got_fps - fps) <= 1e-3 * fps, "frames_kept": frames.shape[0] == num_frames,
            "size_kept": tuple(frames.shape[1:3]) == (height, width), "audio_kept": has_audio == audio}
