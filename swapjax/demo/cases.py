"""The demo's swap cases: synthetic clips training never reads, each with its ground-truth swap, in two sets, with
masks and references as users make them.

Sets (`swapjax.evaluate.cases.SETS`; file `folder/SET_KKKK.npz`, `count` cases each):
- `heldout` (only when `data.held_out_families` names some): clips of the held-out source
  (`make_source(data, seed, split="held_out")`), every one drawing a family training never sees (a background,
  shape or motion family);
- `infamily`: clips of the training source past its training clips: training reads clips
  `0 .. num_synthetic_clips - 1` of `make_source(data, seed)`, and the same source extended by `count` clips gives
  clips `num_synthetic_clips ..`, which no training batch contains but whose families training draws.
Both sets take the clip indices `num_synthetic_clips ..` of their source, so no case is a training clip even
if the two sources shared their random streams.

Case `k` of a set takes the mask style `MASK_STYLES[k % 5]` and the reference framing `FRAMINGS[k % 3]`, so the
15 pairings all appear within 15 cases:
- mask styles (the `mask` the sampler gets): `exact` (the subject's visible pixels), `dilated` (those grown by
  3-6 px at 32 px frames, in proportion at other sizes), `box` (the subject's box in each frame), `union` (the
  source's and the ground truth's silhouettes together) and `grid` (the adaptive grid with the inference cell
  `data.mask.grid_cell_infer`);
- framings (the `reference` the sampler gets): `crop` (the new sprite cropped on grey like a training
  reference), `canvas` (the new sprite drawn small on a plain canvas of a random flat colour, no mask: a user's
  photo, which the sampler's automatic cut-out `prepare_reference(image)` must find) and `truth_frame` (the new
  subject's box with a margin of background, cut from a frame of the ground-truth video, with its target mask as
  `reference_mask`).

Arrays of a case NPZ (the format `sample.py` and `python -m swapjax.evaluate` read, plus the scoring keys of
`swapjax.evaluate.cases.case_extras`):
  source uint8 [F, H, W, 3]       mask uint8 [F, H, W] (the style's)      ground_truth uint8 [F, H, W, 3]
  reference uint8 [Hr, Wr, 3]     reference_mask uint8 [Hr, Wr] (truth_frame only)
  subject_mask uint8 [F, H, W]: the subject's exact visible pixels, which the colour and centroid scores read
  subject_reference uint8 [S, S, 3]: the new sprite on grey (the crop framing's reference), whose colours the
    scores compare with
  keypoints float32 [F, 5, 3], keypoints_kind; set, mask_style, reference_framing: strings; clip_index: int;
  families: the clip's families, comma-separated ("background:gradient,texture:flat,...", `Scene.families`)
"""

from __future__ import annotations

import dataclasses
import pathlib

import cv2
import numpy as np
from scipy import ndimage

from swapjax.atomic import atomic_write
from swapjax.data import masks
from swapjax.data.config import DataConfig, MaskConfig
from swapjax.data.pipeline import make_source
from swapjax.data.reference import BACKGROUND_TOLERANCE, NEUTRAL_GREY
from swapjax.evaluate.cases import SETS
from swapjax.metrics import reference_subject

MASK_STYLES = ("exact", "dilated", "box", "union", "grid")
FRAMINGS = ("crop", "canvas", "truth_frame")
DILATE_PX = (3, 6)  # the dilated style's radius range at 32 px frames (scaled with the shorter side)
CANVAS_SCALE = (0.35, 0.5)  # the canvas framing: the sprite's longer side as a share of the canvas side (2 S)
_STREAM = {"heldout": 1, "infamily": 0}  # part of each case's random stream


def clip_indices(data: DataConfig, count: int) -> range:
    """The clip indices of a set's `count` cases: the `count` clips after the training clips."""
    return range(data.num_synthetic_clips, data.num_synthetic_clips + count)


def case_sets(data: DataConfig) -> tuple[str, ...]:
    """The sets `write_cases` writes: `heldout` first when `data.held_out_families` names some, then `infamily`."""
    return SETS if data.held_out_families else SETS[1:]


def write_cases(data: DataConfig, seed: int, count: int, folder: str | pathlib.Path) -> list[pathlib.Path]:
    """Writes `count` cases per set, `folder/heldout_0000.npz ...` then `folder/infamily_0000.npz ...` (see the
    module docstring); returns their paths in that order. Existing cases are kept (they are a pure function of the
    data config, the seed, the set and the index)."""
    if data.source != "synthetic":
        raise ValueError(f"the demo's held-out cases come from the synthetic source, not {data.source!r}: "
                         "set data.source=synthetic")
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    indices = clip_indices(data, count)
    paths = []
    for name in case_sets(data):
        extended = dataclasses.replace(data, num_synthetic_clips=indices.stop)
        clips = make_source(extended, seed, split="held_out") if name == "heldout" else make_source(extended, seed)
        for k, i in enumerate(indices):
            path = folder / f"{name}_{k:04d}.npz"
            if not path.exists():
                case = build_case(clips, i, k, name, data, seed)
                with atomic_write(path) as tmp, open(tmp, "wb") as f:
                    np.savez(f, **case)
            paths.append(path)
    return paths


def build_case(clips, index: int, ordinal: int, set_name: str, data: DataConfig, seed: int) -> dict[str, np.ndarray]:
    """The arrays of case `ordinal` of set `set_name` from clip `index` of `clips` (a `SyntheticClips`-like source
    with `swap_pair`); see the module docstring for the keys."""
    pair = clips.swap_pair(index, data.ref_size)
    every = slice(None, None, data.frame_stride)  # the frames a training clip of this config takes
    rng = np.random.default_rng((seed, index, _STREAM[set_name], 1 << 21))
    style, framing = MASK_STYLES[ordinal % len(MASK_STYLES)], FRAMINGS[ordinal % len(FRAMINGS)]
    subject = pair["mask"][every]  # [F, H, W]
    case = {"source": pair["video"][every], "ground_truth": pair["target"][every],
            "mask": user_mask(style, subject, pair["target_mask"][every], data.mask, rng), "subject_mask": subject,
            "subject_reference": pair["reference"], "keypoints": pair["keypoints"][every],
            "keypoints_kind": np.asarray(clips.keypoints_kind)}  # keypoints: read when a condition reads them
    case.update(user_reference(framing, pair, rng))
    case.update(set=np.asarray(set_name), mask_style=np.asarray(style), reference_framing=np.asarray(framing),
                clip_index=np.asarray(index), families=np.asarray(pair.get("families", "")))
    return case


def user_mask(style: str, subject: np.ndarray, target: np.ndarray, mask_cfg: MaskConfig, rng: np.random.Generator
              ) -> np.ndarray:
    """The mask a user would give in `style` (`MASK_STYLES`) for the subject uint8 `[F, H, W]` whose ground-truth
    replacement shows at `target` `[F, H, W]`: uint8 `[F, H, W]` {0, 1}, covering the subject."""
    if style == "exact":
        return (subject != 0).astype(np.uint8)
    if style == "dilated":
        scale = min(subject.shape[1:]) / 32
        return masks.dilate(subject, max(1, round(int(rng.integers(DILATE_PX[0], DILATE_PX[1] + 1)) * scale)))
    if style == "box":
        return masks.bbox_mask(subject)
    if style == "union":
        return ((subject != 0) | (target != 0)).astype(np.uint8)
    if style == "grid":
        return masks.inference_mask(subject, mask_cfg)
    raise ValueError(f"unknown mask style {style!r}: pick one of {MASK_STYLES}")


def user_reference(framing: str, pair: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The reference a user would give in `framing` (`FRAMINGS`) for a `swap_pair`: `{"reference": uint8
    [Hr, Wr, 3]}`, with `"reference_mask"` uint8 `[Hr, Wr]` for `truth_frame`."""
    if framing == "crop":
        return {"reference": pair["reference"]}
    if framing == "canvas":
        return {"reference": plain_canvas(pair["reference"], rng)[0]}
    if framing == "truth_frame":
        crop, mask = truth_frame_crop(pair["target"], pair["target_mask"], rng)
        return {"reference": crop, "reference_mask": mask}
    raise ValueError(f"unknown reference framing {framing!r}: pick one of {FRAMINGS}")


def plain_canvas(reference: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A user's photo of the new subject: the sprite of a training-like `reference` uint8 `[S, S, 3]` (its pixels
    off neutral grey, holes filled) shrunk to `CANVAS_SCALE` of a `2S` canvas and drawn at a random place, at
    least 2 px from the border, on a random flat colour away from grey and from the sprite's colours.
    Returns (uint8 `[2S, 2S, 3]`, the sprite's coverage float32 `[2S, 2S]` in [0, 1])."""
    side = 2 * reference.shape[0]
    sprite = ndimage.binary_fill_holes(reference_subject(reference))  # [S, S]
    ys, xs = np.nonzero(sprite)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    longer = max(y1 - y0, x1 - x0)
    scale = min(rng.uniform(*CANVAS_SCALE) * side, side - 4) / longer
    h, w = max(1, round((y1 - y0) * scale)), max(1, round((x1 - x0) * scale))
    rgb = cv2.resize(reference[y0:y1, x0:x1], (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)  # [h, w, 3]
    cover = cv2.resize(sprite[y0:y1, x0:x1].astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)  # [h, w]
    top, left = int(rng.integers(2, side - h - 1)), int(rng.integers(2, side - w - 1))
    colour = _flat_colour(reference[sprite].astype(np.float32), rng)  # [3]
    canvas = np.broadcast_to(colour, (side, side, 3)).copy()  # [2S, 2S, 3]
    alpha = np.zeros((side, side), np.float32)
    alpha[top:top + h, left:left + w] = cover
    canvas[top:top + h, left:left + w] = cover[..., None] * rgb + (1 - cover[..., None]) * colour
    return np.clip(np.round(canvas), 0, 255).astype(np.uint8), alpha


def _flat_colour(pixels: np.ndarray, rng: np.random.Generator, tries: int = 32) -> np.ndarray:
    """float32 `[3]`: a random colour at least twice the cut-out's background tolerance from neutral grey and
    from all but 2 % of `pixels` `[N, 3]` (the best of `tries` draws when none is)."""
    far = 2 * BACKGROUND_TOLERANCE
    best, best_score = np.zeros(3, np.float32), np.inf
    for _ in range(tries):
        colour = rng.integers(0, 256, 3).astype(np.float32)
        near = float((np.linalg.norm(pixels - colour, axis=-1) <= far).mean()) if len(pixels) else 0.0
        score = near + (np.linalg.norm(colour - NEUTRAL_GREY) < far)
        if score < best_score:
            best, best_score = colour, score
        if score <= 0.02:
            break
    return best


def truth_frame_crop(target: np.ndarray, target_mask: np.ndarray, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The new subject cut from a frame of the ground truth `target` uint8 `[F, H, W, 3]` where its mask
    `target_mask` `[F, H, W]` shows at least 3/4 of its largest area: its box grown by a quarter of its longer
    side (at least 2 px; clipped to the frame). Returns (uint8 `[h, w, 3]`, its mask uint8 `[h, w]`)."""
    area = (target_mask != 0).sum(axis=(1, 2))  # [F]
    if area.max() == 0:
        raise ValueError("truth_frame_crop: the ground truth's subject shows in no frame")
    t = int(rng.choice(np.flatnonzero(area >= 0.75 * area.max())))
    y0, x0, y1, x1 = (int(v) for v in masks.boxes(target_mask[t:t + 1])[0][0])  # exclusive ends
    margin = max(2, round(0.25 * max(y1 - y0, x1 - x0)))
    height, width = target_mask.shape[1:]
    y0, x0, y1, x1 = max(0, y0 - margin), max(0, x0 - margin), min(height, y1 + margin), min(width, x1 + margin)
    return target[t, y0:y1, x0:x1].copy(), (target_mask[t, y0:y1, x0:x1] != 0).astype(np.uint8)
