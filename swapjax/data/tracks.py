"""JSON track files: subject box tracks (a mask source) and keypoint tracks (a condition source).

Box track (`read_box_track`, also accepted by `video_io.read_mask`)::

    {"width": 832, "height": 480,
     "frames": [[x0, y0, x1, y1], null, [x0, y0, x1, y1], ...]}

One entry per video frame, in pixels of a `width` x `height` frame: origin top-left, x to the right, y down,
(x0, y0) inclusive and (x1, y1) exclusive; fractional values cover every pixel they touch. `null` means the
subject is absent in that frame. Boxes are clipped to the frame; a box with x1 <= x0 or y1 <= y0 or lying
wholly outside the frame is an error. Read at another size, the boxes are scaled to it.

Keypoint track (`read_keypoints`)::

    {"kind": "pose",
     "frames": [[[x, y, visibility], ...], null, ...]}

One entry per video frame holding the same number K of points in video pixels (visibility in [0, 1]; 0 =
not drawn); `null` = no detection in that frame (all K points invisible). `kind` is one of `KEYPOINT_KINDS`
(default "pose") and selects the skeleton used to render the condition video (`keypoints.render_keypoints`),
so K must fit it (e.g. 18 or 17 body points for "pose", 21 per hand, 68 or 5 face landmarks).
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any

import numpy as np

from swapjax.data import keypoints
from swapjax.atomic import atomic_write
from swapjax.data.validate import check_file
from swapjax.errors import InputError

KEYPOINT_KINDS = keypoints.KINDS


def _load_json(path: str | pathlib.Path, name: str) -> dict[str, Any]:
    path = check_file(path, name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise InputError(f"{name} is not UTF-8 text: save it as a JSON text file") from err
    except json.JSONDecodeError as err:
        raise InputError(f"{name} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}): "
                         "fix the syntax") from err
    if not isinstance(data, dict):
        raise InputError(f"{name} must hold a JSON object with a 'frames' list, not a {type(data).__name__}")
    if not isinstance(data.get("frames"), list) or not data["frames"]:
        raise InputError(f"{name} needs a non-empty 'frames' list with one entry per video frame")
    return data


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _positive_int(data: dict, key: str, name: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InputError(f"{name} needs '{key}' as a positive integer (the frame {key} in pixels), got {value!r}")
    return value


def read_box_track(path: str | pathlib.Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Reads a JSON box track and draws it as uint8 `[F, H, W]` {0, 1}, at `size` (H, W) when given."""
    name = f"mask {str(path)!r}"
    data = _load_json(path, name)
    width, height = _positive_int(data, "width", name), _positive_int(data, "height", name)
    out_h, out_w = size if size is not None else (height, width)
    sy, sx = out_h / height, out_w / width
    mask = np.zeros((len(data["frames"]), out_h, out_w), np.uint8)  # [F, H, W]
    for i, box in enumerate(data["frames"]):
        if box is None:
            continue
        if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
            raise InputError(f"{name}: frame {i} box {box!r} must be null or 4 finite numbers [x0, y0, x1, y1]")
        x0, y0, x1, y1 = box
        if x1 <= x0 or y1 <= y0:
            raise InputError(f"{name}: frame {i} box {box} has x1 <= x0 or y1 <= y0: give [x0, y0, x1, y1] "
                             "with the top-left corner first")
        c0, c1 = max(0, math.floor(x0 * sx)), min(out_w, math.ceil(x1 * sx))
        r0, r1 = max(0, math.floor(y0 * sy)), min(out_h, math.ceil(y1 * sy))
        if c1 <= c0 or r1 <= r0:
            raise InputError(f"{name}: frame {i} box {box} lies outside the {width}x{height} frame: "
                             "check the coordinates and the declared width/height")
        mask[i, r0:r1, c0:c1] = 1
    return mask


def write_box_track(path: str | pathlib.Path, boxes: list, width: int, height: int) -> None:
    """Writes a JSON box track (`boxes`: per frame `[x0, y0, x1, y1]` or None), atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps({"width": width, "height": height, "frames": boxes}))


def mask_to_boxes(mask: np.ndarray) -> list:
    """Per-frame bounding boxes `[x0, y0, x1, y1]` (None where empty) of a mask `[F, H, W]`."""
    boxes = []
    for frame in np.asarray(mask):
        rows, cols = np.flatnonzero(frame.any(axis=1)), np.flatnonzero(frame.any(axis=0))
        boxes.append(None if rows.size == 0 else
                     [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1])
    return boxes


def read_keypoints(path: str | pathlib.Path, num_frames: int | None = None) -> tuple[np.ndarray, str]:
    """Reads a JSON keypoint track: returns (float32 `[F, K, 3]` as (x, y, visibility), kind)."""
    name = f"keypoints {str(path)!r}"
    data = _load_json(path, name)
    kind = data.get("kind", "pose")
    if kind not in KEYPOINT_KINDS:
        raise InputError(f"{name} has kind {kind!r}; use one of {KEYPOINT_KINDS}")
    frames = data["frames"]
    if num_frames is not None and len(frames) != num_frames:
        raise InputError(f"{name} has {len(frames)} frames but the video has {num_frames}: "
                         "give one entry per video frame (null where nothing was detected)")
    counts = {len(f) for f in frames if isinstance(f, list)}
    if len(counts) > 1:
        raise InputError(f"{name} has frames with different point counts {sorted(counts)}: every frame needs "
                         "the same K points (visibility 0 for missing ones)")
    num_points = counts.pop() if counts else 0
    if num_points:
        try:
            keypoints.default_skeleton(kind, num_points)
        except ValueError as err:
            raise InputError(f"{name} has {num_points} points per frame, which the {kind!r} skeleton cannot draw: "
                             "use 17 or 18 (pose), 21 per hand, 68 or 5 (face), or kind 'sprite' (any K)") from err
    kps = np.zeros((len(frames), num_points, 3), np.float32)  # [F, K, 3]
    for i, points in enumerate(frames):
        if points is None:
            continue
        if not isinstance(points, list):
            raise InputError(f"{name}: frame {i} must be null or a list of [x, y, visibility] points")
        for k, point in enumerate(points):
            if not isinstance(point, list) or len(point) != 3 or not all(_is_number(v) for v in point):
                raise InputError(f"{name}: frame {i} point {k} is {point!r}; expected 3 finite numbers "
                                 "[x, y, visibility]")
            kps[i, k] = point
    return kps, kind


def write_keypoints(path: str | pathlib.Path, kps: np.ndarray, kind: str = "pose") -> None:
    """Writes keypoints `[F, K, 3]` as a JSON keypoint track, atomically."""
    if kind not in KEYPOINT_KINDS:
        raise InputError(f"keypoint kind {kind!r} for {str(path)!r}: use one of {KEYPOINT_KINDS}")
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps({"kind": kind, "frames": np.asarray(kps, np.float64).tolist()}))
