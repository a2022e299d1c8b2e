"""CLIP image preprocessing in numpy, as the pipeline's `image_processor/preprocessor_config.json` describes it:
resize (shortest side, or to a fixed size), centre crop, rescale to [0, 1], normalise with the given mean/std.

    prep = ClipPreprocess.from_folder("Wan2.1-I2V-14B-480P-Diffusers/image_processor")
    pixels = preprocess_images([reference_uint8], prep)     # float32 [B, 224, 224, 3], channels-last

The resize is the separable, antialiased resampling of PIL (which transformers' `CLIPImageProcessor` calls):
a bicubic (a = -0.5) or triangle kernel stretched by the scale factor when shrinking, weights normalised per
output pixel and rounded to 22-bit fixed point, the horizontal pass first with its result rounded and clipped
to uint8, then the vertical pass. Done this way the pixels equal transformers' output exactly for most sizes
(tests/models/test_clip_vision.py). For some size pairs the installed Pillow runs the vertical pass first; the uint8
rounding between the passes then differs, by at most a couple of levels on photo-like images (up to ~25 levels on
pure noise, where the bicubic overshoot clips). An OpenCV bicubic resize would differ everywhere (it does not
widen its kernel when shrinking, so it aliases), which is why OpenCV is not used here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from typing import Any, Callable, Sequence

import numpy as np

from swapjax.errors import CheckpointError

CONFIG_FILE = "preprocessor_config.json"
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_PRECISION_BITS = 22  # PIL's fixed-point precision for 8-bit images


def _bicubic(x: np.ndarray) -> np.ndarray:
    a = -0.5
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _triangle(x: np.ndarray) -> np.ndarray:
    return np.maximum(1.0 - np.abs(x), 0.0)


# PIL resample code -> (kernel, support in input pixels at scale 1)
FILTERS: dict[int, tuple[Callable[[np.ndarray], np.ndarray], float]] = {3: (_bicubic, 2.0), 2: (_triangle, 1.0)}


@dataclasses.dataclass(frozen=True)
class ClipPreprocess:
    """The steps of a transformers `CLIPImageProcessor` config (defaults: OpenAI CLIP at 224)."""

    shortest_edge: int | None = 224  # resize so the shorter side is this ...
    size_hw: tuple[int, int] | None = None  # ... or to exactly (height, width)
    resample: int = 3  # PIL code: 3 bicubic, 2 bilinear
    crop_hw: tuple[int, int] | None = (224, 224)  # None: no centre crop
    rescale_factor: float | None = 1 / 255  # None: no rescale
    mean: tuple[float, float, float] | None = OPENAI_CLIP_MEAN  # None: no normalisation
    std: tuple[float, float, float] | None = OPENAI_CLIP_STD

    def __post_init__(self):
        if self.resample not in FILTERS:
            raise CheckpointError(f"image processor resample = {self.resample}: only 3 (bicubic) and 2 (bilinear) "
                                  "are supported")

    @classmethod
    def from_json(cls, d: dict[str, Any], where: str = "preprocessor_config.json") -> "ClipPreprocess":
        """From a `preprocessor_config.json` dict; a value it cannot use raises `CheckpointError` naming `where`."""
        try:
            size = d.get("size", {"shortest_edge": 224}) if d.get("do_resize", True) else None
            if isinstance(size, int):
                size = {"shortest_edge": size}
            crop = d.get("crop_size", 224) if d.get("do_center_crop", True) else None
            if isinstance(crop, int):
                crop = {"height": crop, "width": crop}
            norm = d.get("do_normalize", True)
            return cls(shortest_edge=None if size is None else size.get("shortest_edge"),
                       size_hw=None if size is None or "shortest_edge" in size else (int(size["height"]),
                                                                                    int(size["width"])),
                       resample=int(d.get("resample", 3)),
                       crop_hw=None if crop is None else (int(crop["height"]), int(crop["width"])),
                       rescale_factor=float(d.get("rescale_factor", 1 / 255)) if d.get("do_rescale", True) else None,
                       mean=tuple(float(v) for v in d.get("image_mean", OPENAI_CLIP_MEAN)) if norm else None,
                       std=tuple(float(v) for v in d.get("image_std", OPENAI_CLIP_STD)) if norm else None)
        except (TypeError, ValueError, KeyError, AttributeError) as err:
            raise CheckpointError(f"{where} cannot be used ({type(err).__name__}: {err}): use the image_processor "
                                  "folder that came with the pipeline") from None

    @classmethod
    def from_folder(cls, folder: str | pathlib.Path) -> "ClipPreprocess":
        """From `folder/preprocessor_config.json` (a pipeline's `image_processor/`)."""
        path = pathlib.Path(folder) / CONFIG_FILE
        if not path.is_file():
            raise CheckpointError(f"{str(path)!r} does not exist: pass the pipeline's image_processor folder")
        try:
            d = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CheckpointError(f"{str(path)!r} is not valid JSON ({err}): use the file that came with the "
                                  "pipeline") from None
        return cls.from_json(d, str(path))

    def output_hw(self, height: int, width: int) -> tuple[int, int]:
        """The size an image of `height x width` is resized to (transformers' rule: the long side truncated)."""
        if self.size_hw is not None:
            return self.size_hw
        if self.shortest_edge is None:
            return height, width
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(self.shortest_edge * long / short)
        return (new_long, self.shortest_edge) if width <= height else (self.shortest_edge, new_long)


def _taps(in_size: int, out_size: int, resample: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output pixel: input indices `[out, K]` and fixed-point weights `[out, K]` (PIL's coefficients)."""
    kernel, support = FILTERS[resample]
    scale = in_size / out_size
    stretch = max(scale, 1.0)  # shrinking widens the kernel (antialiasing)
    reach = support * stretch
    rows = []
    for i in range(out_size):
        centre = (i + 0.5) * scale
        lo = max(int(centre - reach + 0.5), 0)
        hi = min(int(centre + reach + 0.5), in_size)
        w = kernel((np.arange(lo, hi) - centre + 0.5) / stretch)
        total = w.sum()
        rows.append((lo, w / total if total != 0.0 else w))
    width = max(len(w) for _, w in rows)
    index = np.zeros((out_size, width), np.int64)
    fixed = np.zeros((out_size, width), np.int64)
    for i, (lo, w) in enumerate(rows):
        index[i, :len(w)] = np.arange(lo, lo + len(w))
        scaled = w * (1 << _PRECISION_BITS)
        fixed[i, :len(w)] = np.where(scaled < 0, np.trunc(scaled - 0.5), np.trunc(scaled + 0.5))
    return index, fixed


def _resample_axis(image: np.ndarray, out_size: int, axis: int, resample: int) -> np.ndarray:
    """uint8 image resampled along `axis` (0 rows, 1 columns) to `out_size`; rounded and clipped to uint8."""
    if image.shape[axis] == out_size:
        return image
    index, fixed = _taps(image.shape[axis], out_size, resample)
    moved = np.moveaxis(image, axis, 0).astype(np.int64)  # [in, other, C]
    acc = np.full((out_size, *moved.shape[1:]), 1 << (_PRECISION_BITS - 1), np.int64)
    for k in range(index.shape[1]):
        acc += moved[index[:, k]] * fixed[:, k, None, None]
    out = np.clip(acc >> _PRECISION_BITS, 0, 255).astype(np.uint8)
    return np.moveaxis(out, 0, axis)


def resize(image: np.ndarray, height: int, width: int, resample: int = 3) -> np.ndarray:
    """uint8 `[H, W, C]` -> uint8 `[height, width, C]`: columns first, then rows (PIL's order and rounding)."""
    return _resample_axis(_resample_axis(image, width, 1, resample), height, 0, resample)


def centre_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The centred `height x width` window; an image smaller than it is centred on zeros first (transformers)."""
    h, w = image.shape[:2]
    if h < height or w < width:
        ph, pw = max(height, h), max(width, w)
        canvas = np.zeros((ph, pw, *image.shape[2:]), image.dtype)
        top, left = math.ceil((ph - h) / 2), math.ceil((pw - w) / 2)
        canvas[top:top + h, left:left + w] = image
        image, h, w = canvas, ph, pw
    top, left = (h - height) // 2, (w - width) // 2
    return image[top:top + height, left:left + width]


def preprocess_image(image: np.ndarray, cfg: ClipPreprocess) -> np.ndarray:
    """uint8 `[H, W, 3]` (or greyscale `[H, W]`) -> float32 `[h, w, 3]` ready for the CLIP vision tower."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"CLIP preprocessing takes uint8 RGB images [H, W, 3]; got {image.dtype} "
                         f"{list(image.shape)}: composite RGBA cut-outs onto grey first (data/reference.py)")
    image = resize(image, *cfg.output_hw(*image.shape[:2]), cfg.resample)
    if cfg.crop_hw is not None:
        image = centre_crop(image, *cfg.crop_hw)
    pixels = image.astype(np.float64)
    if cfg.rescale_factor is not None:
        pixels = pixels * cfg.rescale_factor
    pixels = pixels.astype(np.float32)
    if cfg.mean is not None:
        pixels = (pixels - np.asarray(cfg.mean, np.float32)) / np.asarray(cfg.std, np.float32)
    return pixels  # [h, w, 3]


def preprocess_images(images: Sequence[np.ndarray], cfg: ClipPreprocess) -> np.ndarray:
    """A batch of uint8 images (any sizes) -> float32 `[B, h, w, 3]`."""
    return np.stack([preprocess_image(image, cfg) for image in images])
