"""Input checks shared by every entry point: one line naming the input and the fix, exit code 2 in CLIs.

Each check raises `InputError` with one line that names the input, says what is wrong and how to fix it;
CLIs catch it and exit with code 2 before any heavy work. `name` is the caller's human label of the input,
e.g. ``"video 'clips/a.mp4'"`` or ``"reference image 'ref.png'"``; messages start with it.

Arrays follow docs/design.md "Conventions" without the batch axis: videos `[F, H, W, 3]`, masks `[F, H, W]` in {0, 1},
reference images `[H, W, 3 | 4]`, keypoints `[F, K, 3]` as (x, y, visibility).
"""

from __future__ import annotations

import math
import pathlib

import numpy as np

from swapjax.errors import InputError

VAE_TEMPORAL_FACTOR = 4  # Wan VAE: F = 4 * (f - 1) + 1 pixel frames per f latent frames
SIZE_MULTIPLE = 16  # VAE downsampling (8) times the DiT patch (2)


def _fail(message: str) -> None:
    raise InputError(message)


def _shape(x: np.ndarray) -> str:
    return "[" + ", ".join(str(d) for d in x.shape) + "]"


def check_file(path: str | pathlib.Path, name: str) -> pathlib.Path:
    """Returns `path` as a Path if it is an existing, non-empty regular file."""
    path = pathlib.Path(path)
    if not path.exists():
        _fail(f"{name} does not exist: check the path")
    if not path.is_file():
        _fail(f"{name} is not a regular file: pass the file itself, not a directory")
    if path.stat().st_size == 0:
        _fail(f"{name} is empty (0 bytes): re-export or re-download it")
    return path


def check_finite(x: np.ndarray, name: str) -> np.ndarray:
    """Fails if a floating array holds NaN or infinity; integer arrays pass unchanged."""
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.complexfloating):
        bad = ~np.isfinite(x)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            _fail(f"{name} holds {int(bad.sum())} NaN/infinite values (first at index {first}): "
                  "clean the input (e.g. np.nan_to_num) or re-export it")
    return x


def _check_dtype(x: np.ndarray, name: str) -> None:
    if x.dtype == np.uint8 or x.dtype == np.bool_ or np.issubdtype(x.dtype, np.floating):
        return
    if np.issubdtype(x.dtype, np.integer):
        return
    _fail(f"{name} has dtype {x.dtype}; pass uint8 pixels (0..255) or floats")


def check_video(video: np.ndarray, name: str) -> np.ndarray:
    """Checks an RGB video `[F, H, W, 3]`: rank, channel count, at least one frame, finite values."""
    video = np.asarray(video)
    if video.ndim != 4:
        _fail(f"{name} has shape {_shape(video)} (rank {video.ndim}); expected [frames, height, width, 3]: "
              "pass a stack of RGB frames")
    if video.shape[-1] != 3:
        _fail(f"{name} has {video.shape[-1]} channels (shape {_shape(video)}); expected 3 (RGB): "
              "convert grey or RGBA frames to RGB")
    if video.shape[0] == 0:
        _fail(f"{name} has zero frames: pass a video with at least one frame")
    if video.shape[1] == 0 or video.shape[2] == 0:
        _fail(f"{name} has empty frames (shape {_shape(video)}): pass frames of at least 1x1 pixels")
    _check_dtype(video, name)
    check_finite(video, name)
    return video


def check_frame_count(num_frames: int, name: str) -> int:
    """Checks `F ≡ 1 (mod 4)`, the Wan VAE's frame rule; the message proposes the nearest valid counts."""
    if num_frames < 1:
        _fail(f"{name} has {num_frames} frames; need at least 1")
    if num_frames % VAE_TEMPORAL_FACTOR != 1:
        lower = (num_frames - 1) // VAE_TEMPORAL_FACTOR * VAE_TEMPORAL_FACTOR + 1
        _fail(f"{name} has {num_frames} frames; the VAE needs 1 mod {VAE_TEMPORAL_FACTOR} (e.g. 5, 9, 17, 81): "
              f"trim to {lower} or pad to {lower + VAE_TEMPORAL_FACTOR} frames")
    return num_frames


def check_resolution(height: int, width: int, name: str, multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    """Checks that `height` and `width` are positive multiples of `multiple` (16 for VAE + patch)."""
    if height < multiple or width < multiple or height % multiple or width % multiple:
        fix_h = max(multiple, round(height / multiple) * multiple)
        fix_w = max(multiple, round(width / multiple) * multiple)
        _fail(f"{name} is {height}x{width} (HxW); height and width must be multiples of {multiple}: "
              f"resize or pad to {fix_h}x{fix_w}")
    return height, width


def check_mask(mask: np.ndarray, name: str, video: np.ndarray | None = None, *,
               num_frames: int | None = None, size: tuple[int, int] | None = None,
               video_name: str = "the video") -> np.ndarray:
    """Checks a mask track `[F, H, W]`: binary {0, 1}, not empty, finite, and matching the video.

    The frame count and frame size are compared with `video` (`[F, H, W, 3]`) when given, else with
    `num_frames` / `size` (H, W) when given. Returns the mask as uint8.
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        _fail(f"{name} has shape {_shape(mask)} (rank {mask.ndim}); expected [frames, height, width]: "
              "pass one single-channel mask per frame")
    if mask.shape[0] == 0:
        _fail(f"{name} has zero frames: pass one mask per video frame")
    _check_dtype(mask, name)
    check_finite(mask, name)
    values = np.unique(mask)
    if not np.isin(values, (0, 1)).all():
        shown = ", ".join(f"{v:g}" for v in values[:6].tolist()) + (", ..." if len(values) > 6 else "")
        _fail(f"{name} is not binary: it holds values {{{shown}}}; expected only 0 and 1: "
              "threshold it, e.g. (mask > 0.5)")
    if not values.any():
        _fail(f"{name} is empty (no pixel is 1 in any frame): mark the subject to swap with 1")
    if video is not None:
        video = np.asarray(video)
        num_frames, size = video.shape[0], tuple(video.shape[1:3])
    if num_frames is not None and mask.shape[0] != num_frames:
        _fail(f"{name} has {mask.shape[0]} frames but {video_name} has {num_frames}: "
              "pass one mask frame per video frame")
    if size is not None and tuple(mask.shape[1:]) != tuple(size):
        _fail(f"{name} is {mask.shape[1]}x{mask.shape[2]} (HxW) but {video_name} is {size[0]}x{size[1]}: "
              "export the mask at the video's resolution")
    return mask.astype(np.uint8)


def check_reference(ref: np.ndarray, name: str) -> np.ndarray:
    """Checks a reference image `[H, W, 3]` (RGB) or `[H, W, 4]` (RGBA, composited on grey by the reader)."""
    ref = np.asarray(ref)
    if ref.ndim != 3:
        _fail(f"{name} has shape {_shape(ref)} (rank {ref.ndim}); expected one image [height, width, 3 or 4]: "
              "pass a single RGB or RGBA image, not a batch or a grey image")
    if ref.shape[-1] not in (3, 4):
        _fail(f"{name} has {ref.shape[-1]} channels (shape {_shape(ref)}); expected 3 (RGB) or 4 (RGBA): "
              "convert it to RGB")
    if ref.shape[0] == 0 or ref.shape[1] == 0:
        _fail(f"{name} is empty (shape {_shape(ref)}): pass an image of at least 1x1 pixels")
    _check_dtype(ref, name)
    check_finite(ref, name)
    return ref


def check_keypoints(kps: np.ndarray, name: str, num_frames: int | None = None,
                    video_name: str = "the video") -> np.ndarray:
    """Checks keypoints `[F, K, 3]` as (x, y, visibility): rank, finite values, frame count."""
    kps = np.asarray(kps)
    if kps.ndim != 3 or kps.shape[-1] != 3:
        _fail(f"{name} has shape {_shape(kps)}; expected [frames, points, 3] as (x, y, visibility)")
    if not (np.issubdtype(kps.dtype, np.floating) or np.issubdtype(kps.dtype, np.integer)):
        _fail(f"{name} has dtype {kps.dtype}; expected numbers (x, y, visibility)")
    check_finite(kps, name)
    if num_frames is not None and kps.shape[0] != num_frames:
        _fail(f"{name} has {kps.shape[0]} frames but {video_name} has {num_frames}: "
              "pass one keypoint set per video frame (null for frames without a detection)")
    return kps.astype(np.float32)


def check_fps(fps: float, name: str) -> float:
    """Checks a frame rate: a finite number > 0."""
    if not isinstance(fps, (int, float, np.floating, np.integer)) or not math.isfinite(fps) or fps <= 0:
        _fail(f"{name} has frame rate {fps!r}; expected a positive number of frames per second (e.g. 24)")
    return float(fps)
