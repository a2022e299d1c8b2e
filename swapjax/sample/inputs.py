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
- reference: an image (RGBA is composited on neutral grey and its alpha marks the subject) or `.npy` / `.npz`
  `[H, W, 3 | 4]` uint8;
- reference mask (optional): an image (white subject on black; a pixel of at least half the range counts, an
  alpha channel must be opaque there too) or `.npy` / `.npz` `[H, W]` (bool, 0/1 or 0..255) at the reference's
  size; it marks the subject to cut out of the reference (`swapjax.data.reference.prepare_reference`); without
  it the alpha of an RGBA reference does, and without either the automatic cut-out of a plain background;
- condition (optional): a video or frame folder or array of rendered poses/landmarks, like the video; or
  keypoints (optional): a JSON keypoint track (`swapjax.data.tracks`), rendered at the video's size;
- text (optional): `.npy` `[Lt, text_dim]` (or `[1, Lt, text_dim]`) text-encoder embeddings.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re

import cv2
import numpy as np

from swapjax.data import keypoints as keypoint_render
from swapjax.data import tracks, video_io
from swapjax.data.validate import check_file, check_finite, check_fps, check_mask, check_reference, check_video
from swapjax.errors import InputError
from swapjax.data.reference import composite_on_grey

DEFAULT_FPS = 24.0
CASE_KEYS = ("source", "mask", "reference")


@dataclasses.dataclass(frozen=True)
class JobInputs:
    """One job's checked inputs, channels-last numpy (layouts of docs/design.md without the batch axis)."""

    name: str  # a label for messages and reports
    video: np.ndarray  # uint8 [F, H, W, 3]
    mask: np.ndarray  # uint8 [F, H, W] {0, 1}: the subject to replace
    reference: np.ndarray  # uint8 [Hr, Wr, 3] (an RGBA reference composited on grey)
    fps: float
    audio_from: pathlib.Path | None = None  # a media file whose audio is copied into the output
    condition: np.ndarray | None = None  # uint8 [F, H, W, 3] rendered pose / landmarks
    text: np.ndarray | None = None  # float32 [Lt, text_dim]
    ground_truth: np.ndarray | None = None  # uint8 [F, H, W, 3] (swap cases with a known answer)
    reference_mask: np.ndarray | None = None  # uint8 [Hr, Wr] {0, 1}: the subject in the reference (a reference
    # mask, else the alpha > 0 of an RGBA reference); None: the automatic cut-out (`prepare_reference`)
    keypoints: np.ndarray | None = None  # float32 [F, K, 3]: the keypoint track (x, y in pixels, visibility)
    keypoints_kind: str = "pose"  # its layout (`data.keypoints.render_keypoints`), when a condition video is drawn


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


def read_reference(path: str | pathlib.Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(uint8 `[H, W, 3]`, its alpha mask uint8 `[H, W]` or None) from an image file or an `.npy` / `.npz` array;
    RGBA is composited on grey and, unless fully opaque, its `alpha > 0` is the subject's mask."""
    path = pathlib.Path(path)
    name = f"reference image {str(path)!r}"
    if path.suffix.lower() in (".npy", ".npz"):
        ref = _pixels(check_reference(_load_array(path, name, "reference"), name), name)
        return composite_on_grey(ref), _alpha_mask(ref, name)
    if not path.exists():
        raise InputError(f"{name} does not exist: check the path")
    rgb = video_io.read_image(path)  # [H, W, 3]
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # read_image decoded it; this keeps the alpha channel
    return rgb, _alpha_mask(raw, name)


def _alpha_mask(image: np.ndarray, name: str) -> np.ndarray | None:
    """uint8 `[H, W]` {0, 1} = alpha > 0 of an RGBA image that is not fully opaque, else None."""
    if image.ndim != 3 or image.shape[-1] != 4:
        return None
    alpha = image[..., 3]
    if (alpha == np.iinfo(alpha.dtype).max).all():
        return None  # an opaque alpha channel marks nothing
    if not alpha.any():
        raise InputError(f"{name} is fully transparent (alpha 0 everywhere): export the subject with an opaque alpha")
    return (alpha > 0).astype(np.uint8)


def read_reference_mask(path: str | pathlib.Path, reference_hw: tuple[int, int], reference_name: str) -> np.ndarray:
    """uint8 `[H, W]` {0, 1}: the subject in the reference image of size `reference_hw` (formats in the module
    docstring)."""
    path = pathlib.Path(path)
    name = f"reference mask {str(path)!r}"
    suffix = path.suffix.lower()
    check_file(path, name)
    if suffix in video_io.IMAGE_SUFFIXES:
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if raw is None:
            raise InputError(f"{name} cannot be decoded as an image: save it as a PNG, white subject on black")
        half = (np.iinfo(raw.dtype).max + 1) // 2 if np.issubdtype(raw.dtype, np.integer) else 0.5
        lit = raw >= half
        mask = lit if raw.ndim == 2 else lit[..., :3].any(axis=-1) & (lit[..., 3] if raw.shape[-1] == 4 else True)
    elif suffix in (".npy", ".npz"):
        mask = _mask_values(np.asarray(_load_array(path, name, "mask")), name)
    else:
        raise InputError(f"{name} has unsupported format {path.suffix!r}: pass an image "
                         f"({', '.join(video_io.IMAGE_SUFFIXES)}) or .npy / .npz")
    return check_reference_mask(mask, name, reference_hw, reference_name)


def _mask_values(array: np.ndarray, name: str) -> np.ndarray:
    """bool from a mask array: bool, 0/1, floats in [0, 1] (>= 0.5) or uint8 0..255 (>= 128)."""
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype == np.bool_:
        return array
    if np.issubdtype(array.dtype, np.floating):
        check_finite(array, name)
        if array.size and (array.min() < 0 or array.max() > 1):
            raise InputError(f"{name} holds floats outside [0, 1]: save 0/1 (or bool) with the subject as 1")
        return array >= 0.5
    if np.issubdtype(array.dtype, np.integer) and array.size and array.min() >= 0 and array.max() <= 255:
        return array >= (1 if array.max() <= 1 else 128)
    raise InputError(f"{name} has dtype {array.dtype} with values outside 0..255: save 0/1 (or bool) with the "
                     "subject as 1")


def check_reference_mask(mask: np.ndarray, name: str, reference_hw: tuple[int, int], reference_name: str
                         ) -> np.ndarray:
    """A reference mask at the reference image's size that marks some pixel -> uint8 `[H, W]` {0, 1}."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(f"{name} has shape [{', '.join(map(str, mask.shape))}]; expected one [height, width] "
                         "mask: save a single-channel image or a 2-D array")
    if mask.shape != tuple(reference_hw):
        raise InputError(f"{name} is {mask.shape[0]}x{mask.shape[1]} (HxW) but {reference_name} is "
                         f"{reference_hw[0]}x{reference_hw[1]}: save the mask at the reference image's size")
    if not mask.any():
        raise InputError(f"{name} is empty (no pixel marks the subject): paint the subject white (1) on black (0), "
                         "or leave the reference mask out for the automatic cut-out")
    return mask.astype(np.uint8)


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
                text_dim: int | None = None, reference_mask: str | pathlib.Path | None = None) -> JobInputs:
    """Reads and checks one job's files (see the module docstring); raises `InputError` on the first problem."""
    if condition is not None and keypoints is not None:
        raise InputError("both a condition video and keypoints were given: pass one of them")
    frames, rate, audio = read_video(video, fps)
    num_frames, size = frames.shape[0], frames.shape[1:3]
    track = video_io.read_mask(mask, num_frames=num_frames, size=size)
    ref, ref_mask = read_reference(reference)
    if reference_mask is not None:
        ref_mask = read_reference_mask(reference_mask, ref.shape[:2], f"reference image {str(reference)!r}")
    cond = None
    if condition is not None:
        cond, _, _ = read_video(condition, fps, what="condition video")
        cond = _check_like_video(cond, frames, f"condition video {str(condition)!r}")
    if keypoints is not None:
        kps, kind = tracks.read_keypoints(keypoints, num_frames=num_frames)
        cond = keypoint_render.render_keypoints(kps, size[0], size[1], kind)  # [F, H, W, 3]
    emb = None if text is None else read_text(text, text_dim)
    return JobInputs(pathlib.Path(video).stem, frames, track, ref, rate, audio, cond, emb, reference_mask=ref_mask,
                     keypoints=None if keypoints is None else np.asarray(kps, np.float32),
                     keypoints_kind=kind if keypoints is not None else "pose")


def read_case(path: str | pathlib.Path, *, fps: float | None = None, text: str | pathlib.Path | None = None,
              text_dim: int | None = None) -> JobInputs:
    """One swap case from a single NPZ: `source` `[F, H, W, 3]`, `mask` `[F, H, W]`, `reference` `[H, W, 3|4]`
    (+ optional `ground_truth` like `source`, `reference_mask` `[H, W]` like a reference mask file, and `keypoints`
    `[F, K, 3]` of the source's subject with a `keypoints_kind` string, used when the model's conditions read them;
    other arrays are ignored)."""
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
        arrays = {k: loaded[k] for k in (*CASE_KEYS, "ground_truth", "reference_mask", "keypoints", "keypoints_kind")
                  if k in loaded.files}
    frames = check_video(_pixels(arrays["source"], f"{name} source"), f"{name} source")
    raw_mask = np.asarray(arrays["mask"])
    if raw_mask.ndim == 4 and raw_mask.shape[-1] == 1:
        raw_mask = raw_mask[..., 0]
    track = check_mask(raw_mask, f"{name} mask", frames, video_name="its source")
    ref = _pixels(check_reference(arrays["reference"], f"{name} reference"), f"{name} reference")
    ref_mask = _alpha_mask(ref, f"{name} reference")
    ref = composite_on_grey(ref)
    if "reference_mask" in arrays:
        ref_mask = check_reference_mask(_mask_values(np.asarray(arrays["reference_mask"]), f"{name} reference_mask"),
                                        f"{name} reference_mask", ref.shape[:2], "its reference")
    truth = None
    if "ground_truth" in arrays:
        truth = check_video(_pixels(arrays["ground_truth"], f"{name} ground_truth"), f"{name} ground_truth")
        truth = _check_like_video(truth, frames, f"{name} ground_truth")
    emb = None if text is None else read_text(text, text_dim)
    kps = None
    if "keypoints" in arrays:
        kps = check_finite(np.asarray(arrays["keypoints"], np.float32), f"{name} keypoints")
        if kps.ndim != 3 or kps.shape[0] != frames.shape[0] or kps.shape[2] != 3:
            raise InputError(f"{name} keypoints have shape {list(kps.shape)}: save them as [F = {frames.shape[0]}, "
                             "K, 3] (x, y in pixels, visibility)")
    kind = str(arrays["keypoints_kind"]) if "keypoints_kind" in arrays else "pose"
    return JobInputs(path.stem, frames, track, ref, check_fps(fps or DEFAULT_FPS, name), None, None, emb, truth,
                     ref_mask, keypoints=kps, keypoints_kind=kind)
