"""Reading and checking one swap job's inputs: every problem is one `InputError` line naming the
input, what is wrong and the fix, raised before any model work.

    inputs = read_inputs(video="walk.mp4", mask="walk_mask.json", reference="cat.png")
    inputs = read_case("case.npz")          # one NPZ with source, mask, reference (+ ground_truth)

Accepted files:
- video: a video file (`.mp4`, `.mov`, ...; fps and audio come from it), a folder of frame images (natural name
  order), or `.npz` / `.npy` holding `[F, H, W, 3]` uint8 (or floats in [-1, 1]) under `video` or as its only
  array; frame folders and arrays play at `fps` (default 24);
- mask: anything `swapjax.data.video_io.read_mask` reads (video, PNG folder, single PNG, NPZ/NPY, JSON box
  track), one frame per video frame at the video's size;
- reference: an image (RGBA is composited on neutral grey) or `.npy` / `.npz` `[H, W, 3 | 4]` uint8;
- condition (optional): a video or frame folder or array of rendered poses/landmarks, like the video; or
  keypoints (optional): a JSON keypoint track (`swapjax.data.tracks`), rendered at the video's size;
- text (optional): `.npy` `[Lt, text_dim]` (or `[1, Lt, text_dim]`) text-encoder embeddings.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re

import numpy as np

from swapjax.data import keypoints as keypoint_render
from swapjax.data import tracks, video_io
from swapjax.data.validate import (InputError, check_file, check_finite, check_fps, check_mask, check_reference,
                                   check_video)
from swapjax.data.reference import composite_on_grey

DEFAULT_FPS = 24.0
CASE_KEYS = ("source", "mask", "reference")


@dataclasses.dataclass(frozen=True)
class JobInputs:
    """One job's checked inputs, channels-last numpy (layouts of docs/design.md without the batch axis)."""

    name: str  # a label for messages and reports
    video: np.ndarray  # uint8 [F, H, W, 3]
    mask: np.ndarray  # uint8 [F, H, W] {0, 1}: the subject to replace
    reference: np.ndarray  # uint8 [Hr, Wr, 3]
    fps: float
    audio_from: pathlib.Path | None = None  # a media file whose audio is copied into the output
    condition: np.ndarray | None = None  # uint8 [F, H, W, 3] rendered pose / landmarks
    text: np.ndarray | None = None  # float32 [Lt, text_dim]
    ground_truth: np.ndarray | None = None  # uint8 [F, H, W, 3] (swap cases with a known answer)


def _pixels(array: np.ndarray, name: str) -> np.ndarray:
    """uint8 pixels, or floats in [-1, 1] -> uint8 (the project's convention); anything else is an error."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        check_finite(array, name)
        lo, hi = float(array.min(initial=0.0)), float(array.max(initial=0.0))
        if lo < -1.0 or hi > 1.0:
            raise InputError(f"{name} holds floats in [{lo:g}, {hi:g}]; float pixels must lie in [-1, 1]: pass "
                             "uint8 0..255 or rescale to [-1, 1]")
        return np.clip(np.round((array + 1.0) * 127.5), 0, 255).astype(np.uint8)
    raise InputError(f"{name} has dtype {array.dtype}; pass uint8 pixels (0..255) or floats in [-1, 1]")


def _load_array(path: pathlib.Path, name: str, key: str) -> np.ndarray:
    """The array under `key` (or the only array) of an `.npz`, or the array of an `.npy`."""
    check_file(path, name)
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise InputError(f"{name} cannot be read as a numpy file ({err}): re-save it with np.save / np.savez") \
            from None
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        keys = list(loaded.keys())
        if key not in keys and len(keys) != 1:
            raise InputError(f"{name} holds arrays {keys} and none is named {key!r}: save it as "
                             f"np.savez(path, {key}=...)")
        try:
            return loaded[key if key in keys else keys[0]]
        except (OSError, ValueError, EOFError) as err:
            raise InputError(f"{name} cannot be read ({err}): re-save it with np.savez") from None


def _natural_key(path: pathlib.Path) -> list:
    """`f2.png` sorts before `f10.png`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _read_frame_folder(path: pathlib.Path, name: str) -> np.ndarray:
    files = sorted((f for f in path.iterdir() if f.is_file() and not f.name.startswith(".")
                    and f.suffix.lower() in video_io.IMAGE_SUFFIXES), key=_natural_key)
    if not files:
        raise InputError(f"{name} is a folder without frame images ({', '.join(video_io.IMAGE_SUFFIXES)}): put "
                         "one image per frame in it")
    frames = [video_io.read_image(f) for f in files]
    if len({f.shape for f in frames}) > 1:
        raise InputError(f"{name} holds frames of different sizes {sorted({f.shape[:2] for f in frames})}: export "
                         "every frame at one size")
    return np.stack(frames)  # [F, H, W, 3]


def read_video(path: str | pathlib.Path, fps: float | None = None, *, what: str = "video"
               ) -> tuple[np.ndarray, float, pathlib.Path | None]:
    """(uint8 `[F, H, W, 3]`, fps, the file to take audio from or None) from any accepted video input."""
    path = pathlib.Path(path)
    name = f"{what} {str(path)!r}"
    if not path.exists():
        raise InputError(f"{name} does not exist: check the path")
    suffix = path.suffix.lower()
    if path.is_dir():
        frames, rate, audio = _read_frame_folder(path, name), fps or DEFAULT_FPS, None
    elif suffix in (".npz", ".npy"):
        frames, rate, audio = _pixels(_load_array(path, name, "video"), name), fps or DEFAULT_FPS, None
    elif suffix in video_io.VIDEO_SUFFIXES:
        frames, rate, has_audio = video_io.read_video(path)
        rate, audio = fps or rate, path if has_audio else None
    else:
        raise InputError(f"{name} has unsupported format {path.suffix!r}: pass a video file "
                         f"({', '.join(video_io.VIDEO_SUFFIXES)}), a folder of frames, or .npz / .npy")
    return check_video(frames, name), check_fps(rate, name), audio


def read_reference(path: str | pathlib.Path) -> np.ndarray:
    """uint8 `[H, W, 3]` from an image file (RGBA composited on grey) or an `.npy` / `.npz` array."""
    path = pathlib.Path(path)
    name = f"reference image {str(path)!r}"
    if path.suffix.lower() in (".npy", ".npz"):
        ref = check_reference(_load_array(path, name, "reference"), name)
        return composite_on_grey(_pixels(ref, name))
    if not path.exists():
        raise InputError(f"{name} does not exist: check the path")
    return video_io.read_image(path)


def read_text(path: str | pathlib.Path, text_dim: int | None = None) -> np.ndarray:
    """float32 `[Lt, text_dim]` text embeddings from an `.npy` / `.npz` (a leading batch of 1 is dropped)."""
    path = pathlib.Path(path)
    name = f"text embedding {str(path)!r}"
    text = np.asarray(_load_array(path, name, "text"))
    if text.ndim == 3 and text.shape[0] == 1:
        text = text[0]
    if text.ndim != 2 or text.shape[0] == 0 or not np.issubdtype(text.dtype, np.floating):
        raise InputError(f"{name} is {text.dtype} {list(text.shape)}; expected floats [tokens, width] from the text "
                         "encoder (umT5 for Wan)")
    if text_dim is not None and text.shape[1] != text_dim:
        raise InputError(f"{name} has width {text.shape[1]} but the model reads {text_dim}: encode the prompt with "
                         "the model's text encoder")
    return check_finite(text, name).astype(np.float32)


def _check_like_video(array: np.ndarray, video: np.ndarray, name: str) -> np.ndarray:
    if array.shape != video.shape:
        raise InputError(f"{name} is [{', '.join(map(str, array.shape))}] but the video is "
                         f"[{', '.join(map(str, video.shape))}]: give one frame per video frame at the video's size")
    return array


def read_inputs(video: str | pathlib.Path, mask: str | pathlib.Path, reference: str | pathlib.Path, *,
                condition: str | pathlib.Path | None = None, keypoints: str | pathlib.Path | None = None,
                text: str | pathlib.Path | None = None, fps: float | None = None,
                text_dim: int | None = None) -> JobInputs:
    """Reads and checks one job's files (see the module docstring); raises `InputError` on the first problem."""
    if condition is not None and keypoints is not None:
        raise InputError("both a condition video and keypoints were given: pass one of them")
    frames, rate, audio = read_video(video, fps)
    num_frames, size = frames.shape[0], frames.shape[1:3]
    track = video_io.read_mask(mask, num_frames=num_frames, size=size)
    ref = read_reference(reference)
    cond = None
    if condition is not None:
        cond, _, _ = read_video(condition, fps, what="condition video")
        cond = _check_like_video(cond, frames, f"condition video {str(condition)!r}")
    if keypoints is not None:
        kps, kind = tracks.read_keypoints(keypoints, num_frames=num_frames)
        cond = keypoint_render.render_keypoints(kps, size[0], size[1], kind)  # [F, H, W, 3]
    emb = None if text is None else read_text(text, text_dim)
    return JobInputs(pathlib.Path(video).stem, frames, track, ref, rate, audio, cond, emb)


def read_case(path: str | pathlib.Path, *, fps: float | None = None, text: str | pathlib.Path | None = None,
              text_dim: int | None = None) -> JobInputs:
    """One swap case from a single NPZ: `source` `[F, H, W, 3]`, `mask` `[F, H, W]`, `reference` `[H, W, 3|4]`
    (+ optional `ground_truth` like `source`; other arrays are ignored)."""
    path = pathlib.Path(path)
    name = f"swap case {str(path)!r}"
    check_file(path, name)
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise InputError(f"{name} cannot be read as an NPZ ({err}): save it with np.savez") from None
    if isinstance(loaded, np.ndarray):
        raise InputError(f"{name} is a single array: save a case as np.savez(path, source=..., mask=..., "
                         "reference=...)")
    with loaded:
        missing = [k for k in CASE_KEYS if k not in loaded.files]
        if missing:
            raise InputError(f"{name} lacks {missing} (it holds {loaded.files}): a case needs source, mask and "
                             "reference arrays")
        arrays = {k: loaded[k] for k in (*CASE_KEYS, "ground_truth") if k in loaded.files}
    frames = check_video(_pixels(arrays["source"], f"{name} source"), f"{name} source")
    raw_mask = np.asarray(arrays["mask"])
    if raw_mask.ndim == 4 and raw_mask.shape[-1] == 1:
        raw_mask = raw_mask[..., 0]
    track = check_mask(raw_mask, f"{name} mask", frames, video_name="its source")
    ref = check_reference(arrays["reference"], f"{name} reference")
    ref = composite_on_grey(_pixels(ref, f"{name} reference"))
    truth = None
    if "ground_truth" in arrays:
        truth = check_video(_pixels(arrays["ground_truth"], f"{name} ground_truth"), f"{name} ground_truth")
        truth = _check_like_video(truth, frames, f"{name} ground_truth")
    emb = None if text is None else read_text(text, text_dim)
    return JobInputs(path.stem, frames, track, ref, check_fps(fps or DEFAULT_FPS, name), None, None, emb, truth)
