"""Mask transforms (docs/design.md, "Masks"): bbox, adaptive grid, extra shapes, blocks, hair, foreground scaling,
dilate/feather.

Every transform takes a mask track `[F, H, W]` (any dtype; nonzero = subject) and returns uint8 `[F, H, W]`
in {0, 1}, except `feather` (float32 alpha). Random transforms take an `np.random.Generator`, so a seed fixes
the output. Unless a docstring says otherwise the output is a superset of the input mask. The training
reference crop and RGBA compositing live in `reference.py` and are re-exported here.

The adaptive grid follows DreamSwapV: the *whole frame* is cut into `K_h x K_w` cells with
`K = max(1, bbox // c)`, so big subjects get fine grids and small subjects coarse ones. One `K` is used for
the whole clip (the largest per-frame box), so the cell layout does not change from frame to frame.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from swapjax.data.config import MaskConfig
from swapjax.data.reference import NEUTRAL_GREY, composite_on_grey, reference_crop  # noqa: F401 (re-exported)

_SUBPIXEL = 4  # cv2 drawing: coordinates carry 4 fractional bits


def as_mask(mask, name: str = "mask") -> np.ndarray:
    """Any `[F, H, W]` array -> bool `[F, H, W]` (nonzero = on). Raises ValueError naming `name` otherwise."""
    m = np.asarray(mask)
    if m.ndim != 3:
        raise ValueError(f"{name} has shape {m.shape}, expected [F, H, W]: add a frame axis (mask[None]) "
                         "for a single image")
    return m != 0


def boxes(mask) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame bounding boxes: (int64 `[F, 4]` as (y0, x0, y1, x1) with exclusive ends, bool `[F]` present).

    Frames without subject pixels get the box (0, 0, 0, 0) and present = False.
    """
    m = as_mask(mask)
    rows, cols = m.any(axis=2), m.any(axis=1)  # [F, H], [F, W]
    present = rows.any(axis=1)
    h, w = m.shape[1:]
    y0, x0 = rows.argmax(axis=1), cols.argmax(axis=1)
    y1, x1 = h - rows[:, ::-1].argmax(axis=1), w - cols[:, ::-1].argmax(axis=1)
    out = np.stack([y0, x0, y1, x1], axis=1).astype(np.int64)  # [F, 4]
    out[~present] = 0
    return out, present


def box_mask(box_yxyx: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boxes int `[F, 4]` (y0, x0, y1, x1), exclusive ends, clipped to the frame -> uint8 `[F, H, W]`."""
    b = np.asarray(box_yxyx).reshape(-1, 4)
    ys, xs = np.arange(height), np.arange(width)
    in_y = (ys[None] >= b[:, 0:1]) & (ys[None] < b[:, 2:3])  # [F, H]
    in_x = (xs[None] >= b[:, 1:2]) & (xs[None] < b[:, 3:4])  # [F, W]
    return (in_y[:, :, None] & in_x[:, None, :]).astype(np.uint8)  # [F, H, W]


def bbox_mask(mask, dilate: int = 0) -> np.ndarray:
    """Per-frame bounding box of the subject, grown by `dilate` pixels on every side. uint8 `[F, H, W]`."""
    if dilate < 0:
        raise ValueError(f"bbox dilate ({dilate}) must be >= 0")
    b, present = boxes(mask)
    b = b + np.array([-dilate, -dilate, dilate, dilate])
    b[~present] = 0
    return box_mask(b, *np.shape(mask)[1:])


def grid_counts(bbox_hw: tuple[int, int], cell_hw: int | tuple[int, int]) -> tuple[int, int]:
    """Adaptive grid size: `K = max(1, bbox // c)` per axis, e.g. ((100, 40), (24, 24)) -> (4, 1)."""
    c_h, c_w = _pair(cell_hw, "cell_hw")
    return max(1, int(bbox_hw[0]) // c_h), max(1, int(bbox_hw[1]) // c_w)


def grid_edges(length: int, count: int) -> np.ndarray:
    """Cell boundaries when `length` pixels are cut into `count` near-equal cells: int `[count + 1]`."""
    return (np.arange(count + 1) * length) // count


def subject_extent(mask) -> tuple[int, int]:
    """The subject's size for the grid rule: the largest per-frame box height and width over the clip."""
    b, present = boxes(mask)
    if not present.any():
        return 0, 0
    return int((b[:, 2] - b[:, 0]).max()), int((b[:, 3] - b[:, 1]).max())


def adaptive_grid_mask(mask, cell_hw: int | tuple[int, int]) -> np.ndarray:
    """Whole frame cut into `K_h x K_w` cells (K from `grid_counts` on the subject extent); a cell is on if
    it touches the subject. uint8 `[F, H, W]`."""
    m = as_mask(mask).astype(np.uint8)
    f, h, w = m.shape
    k_h, k_w = grid_counts(subject_extent(m), cell_hw)
    e_h, e_w = grid_edges(h, k_h), grid_edges(w, k_w)
    cells = np.maximum.reduceat(m, e_h[:-1], axis=1)  # [F, K_h, W]
    cells = np.maximum.reduceat(cells, e_w[:-1], axis=2)  # [F, K_h, K_w]
    return np.repeat(np.repeat(cells, np.diff(e_h), axis=1), np.diff(e_w), axis=2)  # [F, H, W]


def disk(radius: int) -> np.ndarray:
    """Structuring element of the pixels within `radius` (Euclidean): uint8 `[2r + 1, 2r + 1]`."""
    y, x = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return (y * y + x * x <= radius * radius).astype(np.uint8)


def dilate(mask, radius: int) -> np.ndarray:
    """Grows the mask by every pixel within `radius` (a Euclidean disk). uint8 `[F, H, W]`."""
    return _grow(mask, radius)


def _grow(mask, radius: int) -> np.ndarray:
    if radius < 0:
        raise ValueError(f"dilate radius ({radius}) must be >= 0")
    m = as_mask(mask).astype(np.uint8)
    if radius == 0 or m.size == 0:
        return m
    kernel = disk(radius)
    return np.stack([cv2.dilate(frame, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0) for frame in m])


def feather(mask, radius: int) -> np.ndarray:
    """Soft alpha: 0 outside the mask, rising linearly to 1 at `radius` pixels inside it. float32 `[F, H, W]`.

    The alpha never leaves the mask, so a composite keeps every pixel outside it. `feather(dilate(m, r), r)`
    is 1 over all of `m`. The frame border does not count as a mask edge.
    """
    if radius < 0:
        raise ValueError(f"feather radius ({radius}) must be >= 0")
    m = as_mask(mask).astype(np.uint8)
    if radius == 0:
        return m.astype(np.float32)
    alpha = np.zeros(m.shape, np.float32)
    b, present = boxes(m)
    h, w = m.shape[1:]
    for i in np.flatnonzero(present):
        # the box grown by one pixel holds the nearest background pixel of every mask pixel in it
        y0, x0, y1, x1 = max(b[i, 0] - 1, 0), max(b[i, 1] - 1, 0), min(b[i, 2] + 1, h), min(b[i, 3] + 1, w)
        crop = m[i, y0:y1, x0:x1]
        if crop.all():  # no background pixel in reach: the mask covers the whole frame
            alpha[i] = 1.0
            continue
        dist = cv2.distanceTransform(crop, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)  # [h, w] to the nearest 0
        alpha[i, y0:y1, x0:x1] = np.minimum(dist / radius, 1.0)
    return alpha


def shape_augment(mask, rng: np.random.Generator, max_shapes: int,
                  size_range: tuple[float, float] = (0.15, 0.4)) -> np.ndarray:
    """Adds 1..max_shapes circles, triangles or rectangles centred on the mask boundary. uint8 `[F, H, W]`.

    Each shape is anchored at a boundary point given relative to the subject's box (drawn once per shape)
    and sized as a fraction of the box (`size_range` of sqrt(h * w)), so it moves and scales with the box;
    in every frame the anchor snaps to the nearest boundary pixel, so the shape stays attached.
    """
    m = as_mask(mask)
    out = m.astype(np.uint8)
    b, present = boxes(m)
    frames = np.flatnonzero(present)
    if max_shapes < 1 or frames.size == 0:
        return out
    edge = {int(f): _boundary(m[f]) for f in frames}  # frame -> int [P, 2] (y, x)
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        f0 = int(rng.choice(frames))
        pick = edge[f0][rng.integers(len(edge[f0]))]
        rel = (pick - b[f0, :2] + 0.5) / (b[f0, 2:] - b[f0, :2])  # [2] in (0, 1) of the box
        kind, frac = int(rng.integers(3)), rng.uniform(*size_range)
        angle, aspect = rng.uniform(0.0, 2 * np.pi), rng.uniform(0.5, 1.0)
        tri = angle + np.array([0.0, 2.0, 4.0]) * np.pi / 3 + rng.uniform(-0.4, 0.4, 3)
        for f in frames:
            size = b[f, 2:] - b[f, :2]  # [2] (h, w)
            target = rel * size - 0.5  # anchor relative to the box origin (translation-exact)
            local = edge[int(f)] - b[f, :2]
            anchor = edge[int(f)][np.argmin(((local - target) ** 2).sum(axis=1))]  # [2] (y, x)
            radius = max(1.0, frac * math.sqrt(size[0] * size[1]))
            _draw_shape(out[f], kind, anchor, radius, angle, aspect, tri)
    return out


def shape_agnostic_blocks(mask, dilate: int, block_hw: int | tuple[int, int]) -> np.ndarray:
    """SwapAnyHead blocks: dilate by `dilate` pixels, cut the frame into `block_hw` pixel blocks from the top
    left, a block is on if any of its pixels is. uint8 `[F, H, W]`."""
    b_h, b_w = _pair(block_hw, "block_hw")
    m = _grow(mask, dilate)
    f, h, w = m.shape
    n_h, n_w = -(-h // b_h), -(-w // b_w)
    padded = np.zeros((f, n_h * b_h, n_w * b_w), np.uint8)
    padded[:, :h, :w] = m
    on = padded.reshape(f, n_h, b_h, n_w, b_w).max(axis=(2, 4))  # [F, n_h, n_w]
    return np.repeat(np.repeat(on, b_h, axis=1), b_w, axis=2)[:, :h, :w]  # [F, H, W]


def hair_enhance(cloth, hair, shoulder_rect) -> np.ndarray:
    """SwapAnyHead hair enhancement: `cloth * (1 - hair) * (1 - shoulder_rect)`, uint8 in cloth's shape.

    `hair` is a mask broadcastable to `cloth`; `shoulder_rect` is either such a mask or boxes (x0, y0, x1, y1)
    of shape [4] or [F, 4] (see `shoulder_boxes`). The result is a subset of `cloth`, not a superset.
    """
    c = np.asarray(cloth) != 0
    rect = np.asarray(shoulder_rect)
    if rect.ndim in (1, 2) and rect.shape[-1] == 4 and rect.ndim < c.ndim:
        xyxy = rect.reshape(-1, 4)
        rect = box_mask(xyxy[:, [1, 0, 3, 2]], *c.shape[-2:])  # [F|1, H, W]
        rect = rect.reshape(c.shape) if c.ndim == 2 else rect
    return (c & (np.asarray(hair) == 0) & (rect == 0)).astype(np.uint8)


def shoulder_boxes(keypoints, left: int, right: int, side: float = 0.3, down: float = 0.6) -> np.ndarray:
    """Shoulder rectangles from keypoints float `[F, K, 3]` (x, y, visibility): float `[F, 4]` (x0, y0, x1, y1).

    The box spans the two shoulders widened by `side` shoulder widths, from `side` above the higher shoulder
    to `down` below the lower one. Frames missing a shoulder get an empty box. (COCO: left 5, right 6;
    OpenPose-18: left 5, right 2.)
    """
    k = np.asarray(keypoints, np.float32)
    a, c = k[:, left], k[:, right]  # [F, 3]
    span = np.hypot(a[:, 0] - c[:, 0], a[:, 1] - c[:, 1])  # [F]
    out = np.stack([np.minimum(a[:, 0], c[:, 0]) - side * span, np.minimum(a[:, 1], c[:, 1]) - side * span,
                    np.maximum(a[:, 0], c[:, 0]) + side * span, np.maximum(a[:, 1], c[:, 1]) + down * span], 1)
    ok = (a[:, 2] > 0) & (c[:, 2] > 0)
    out[~ok] = 0.0
    return np.round(out).astype(np.float32)


def hair_enhanced_mask(train_mask, cloth, hair, shoulder_rect) -> np.ndarray:
    """The training mask with SwapAnyHead's hair enhancement: the body pixels `hair_enhance` takes out of the kept
    cloth region, `cloth · (1 − (1 − hair)·(1 − shoulder_rect))`, are regenerated too. uint8 `[F, H, W]`.

    The paper gives the kept body `cloth' = cloth · (1 − hair) · (1 − shoulder_rect)`; that the rest of `cloth`
    joins the region to regenerate is our reading of it (docs/design.md, "Our choices")."""
    m = as_mask(train_mask, "train_mask")
    removed = (np.asarray(cloth) != 0) & (hair_enhance(cloth, hair, shoulder_rect) == 0)
    return (m | removed).astype(np.uint8)


def rescale_foreground(video, subject_mask, scale: float, background=None, inpaint_radius: int = 3
                       ) -> tuple[np.ndarray, np.ndarray]:
    """SwapAnyHead's foreground scaling: the subject scaled by `scale` about the centre of its box over the clip
    and pasted on the background without it. Returns (uint8 video `[F, H, W, 3]`, uint8 subject `[F, H, W]`).

    `video` uint8 `[F, H, W, 3]`; `background` uint8 `[F, H, W, 3]` (a clean plate) or None: then each frame is
    inpainted where the subject was (OpenCV Telea, the subject dilated by one pixel). The frame is warped with
    linear interpolation, the mask with nearest neighbour; the centre is the same in every frame, so the motion
    keeps its path (scaled about that point). A pixel `d` of the output reads `c + (d − c) / scale` of the input,
    `c` the box centre in pixel-centre coordinates."""
    v = np.asarray(video)
    m = as_mask(subject_mask, "subject_mask")
    if v.dtype != np.uint8 or v.ndim != 4 or v.shape[:3] != m.shape or v.shape[-1] != 3:
        raise ValueError(f"video {v.shape} {v.dtype} must be uint8 [F, H, W, 3] matching subject_mask {m.shape}")
    if not scale > 0:
        raise ValueError(f"foreground scale ({scale}) must be > 0")
    b, present = boxes(m)
    if not present.any():
        return v.copy(), m.astype(np.uint8)
    h, w = m.shape[1:]
    cy = (b[present, 0].min() + b[present, 2].max() - 1) / 2  # box centre, pixel-centre coordinates
    cx = (b[present, 1].min() + b[present, 3].max() - 1) / 2
    warp = np.array([[scale, 0.0, cx * (1 - scale)], [0.0, scale, cy * (1 - scale)]])  # input -> output
    out_v, out_m = np.empty_like(v), np.empty(m.shape, np.uint8)
    grown = _grow(m, 1)
    for f in range(len(v)):
        fg = cv2.warpAffine(v[f], warp, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out_m[f] = cv2.warpAffine(m[f].astype(np.uint8), warp, (w, h), flags=cv2.INTER_NEAREST,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        bg = np.asarray(background[f]) if background is not None else \
            cv2.inpaint(np.ascontiguousarray(v[f]), grown[f], inpaint_radius, cv2.INPAINT_TELEA)
        out_v[f] = np.where(out_m[f][..., None] > 0, fg, bg)
    return out_v, out_m


def training_mask(subject_mask, rng: np.random.Generator, cfg: MaskConfig, return_info: bool = False):
    """DreamSwapV training mask: bbox (dilated by U{0..bbox_dilate_max}) with p_bbox, else the adaptive grid
    with `c_h, c_w ~ U{h1..h2}`; then extra shapes with p_shape_aug. uint8 `[F, H, W]`. With `cfg.blocks`
    (SwapAnyHead, for heads) the shape-agnostic blocks take the place of the bbox / grid choice (no draw).
    Before the choice, with `p_loose` (ours; off by default) the subject is dilated by U{1..loose_dilate_max}
    pixels, as a user's loose mask.

    With `return_info`, also returns a dict: kind ("bbox" | "grid" | "blocks"), dilate, cell_hw, counts, shapes,
    loose (the loose dilation, 0 = none).
    """
    info = {"kind": "bbox", "dilate": 0, "cell_hw": None, "counts": None, "shapes": False, "loose": 0}
    if not cfg.blocks and cfg.loose_dilate_max > 0 and rng.random() < cfg.p_loose:
        info["loose"] = int(rng.integers(1, cfg.loose_dilate_max + 1))
        subject_mask = dilate(subject_mask, info["loose"])
    if cfg.blocks:
        info.update(kind="blocks", dilate=cfg.block_dilate, cell_hw=(cfg.block_size, cfg.block_size))
        out = shape_agnostic_blocks(subject_mask, cfg.block_dilate, cfg.block_size)
    elif rng.random() < cfg.p_bbox:
        info["dilate"] = int(rng.integers(0, cfg.bbox_dilate_max + 1))
        out = bbox_mask(subject_mask, info["dilate"])
    else:
        cell = tuple(int(c) for c in rng.integers(cfg.grid_cell_min, cfg.grid_cell_max + 1, size=2))
        info.update(kind="grid", cell_hw=cell, counts=grid_counts(subject_extent(subject_mask), cell))
        out = adaptive_grid_mask(subject_mask, cell)
    if cfg.shape_aug_max > 0 and rng.random() < cfg.p_shape_aug:
        info["shapes"] = True
        out = shape_augment(out, rng, cfg.shape_aug_max)
    return (out, info) if return_info else out


def inference_mask(subject_mask, cfg: MaskConfig) -> np.ndarray:
    """Inference mask: the adaptive grid with the fixed cell size h3. uint8 `[F, H, W]`."""
    return adaptive_grid_mask(subject_mask, (cfg.grid_cell_infer, cfg.grid_cell_infer))


def _pair(value, name: str) -> tuple[int, int]:
    pair = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2 or any(int(v) != v or v < 1 for v in pair):
        raise ValueError(f"{name} ({value}) must be one positive integer or a pair (h, w) of them")
    return int(pair[0]), int(pair[1])


def _boundary(frame: np.ndarray) -> np.ndarray:
    """Pixels of a bool `[H, W]` frame that touch a background pixel (4-neighbourhood): int `[P, 2]` (y, x)."""
    f = frame.astype(np.uint8)
    inner = cv2.erode(f, np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8), borderType=cv2.BORDER_CONSTANT,
                      borderValue=0)
    return np.argwhere(f > inner)


def _draw_shape(frame: np.ndarray, kind: int, anchor: np.ndarray, radius: float, angle: float, aspect: float,
                tri: np.ndarray) -> None:
    """Fills one circle (0), triangle (1) or rectangle (2) into uint8 `[H, W]` `frame`, in place."""
    scale = 1 << _SUBPIXEL
    cy, cx = float(anchor[0]), float(anchor[1])
    if kind == 0:
        cv2.circle(frame, (round(cx * scale), round(cy * scale)), round(radius * scale), 1, -1, cv2.LINE_8,
                   _SUBPIXEL)
        return
    if kind == 1:
        ang = tri
        xy = np.stack([cx + radius * np.cos(ang), cy + radius * np.sin(ang)], axis=1)  # [3, 2]
    else:
        hx, hy = radius, radius * aspect
        corners = np.array([[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy]])  # [4, 2]
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        xy = corners @ rot.T + np.array([cx, cy])  # [4, 2]
    cv2.fillPoly(frame, [np.round(xy * scale).astype(np.int32)], 1, cv2.LINE_8, _SUBPIXEL)
