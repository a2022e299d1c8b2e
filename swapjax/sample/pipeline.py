"""One swap job from checked inputs to the output frames (docs/design.md, "Sampling"):

    validated inputs -> geometry (tunnel crop, resize, pad) -> the inference mask rule -> per window: VAE-encode
    the agnostic video, the condition video, the reference and the anchor -> prefix caches of every guidance
    branch -> sampler steps -> decode -> cross-fade the windows -> undo the geometry -> composite -> uint8 frames

    result = swap_video(engine, inputs, sample_cfg, mask_cfg)
    result.frames        # uint8 [F, H0, W0, 3]: exactly the source's frame count and size
    result.report        # geometry, windows, seam ratio, colour drift (and PSNR when a ground truth is known)

The model regenerates the inference mask (the adaptive grid over the subject, a superset of it); the composite
then keeps the source outside the user's mask dilated by `composite_dilate` and feathered by `composite_feather`,
bit for bit. Widen `sample.composite_dilate` when the new subject is larger than the old one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import cv2
import jax
import numpy as np

from swapjax import metrics
from swapjax.data import masks
from swapjax.data.config import DataConfig, MaskConfig
from swapjax.data.keypoints import render_keypoints
from swapjax.data.pipeline import fixed_keypoints
from swapjax.errors import InputError
from swapjax.models.conditions import data_needs
from swapjax.data.reference import NEUTRAL_GREY, prepare_reference
from swapjax.models.reference_frame import fit_reference
from swapjax.models.fused_inputs import anchor_index
from swapjax.sample import windows as win_lib
from swapjax.sample.composite import composite, composite_alpha, composite_float, to_uint8, to_unit
from swapjax.sample.config import SampleConfig
from swapjax.sample.engine import Engine, WindowInputs
from swapjax.sample.geometry import Geometry, pad_frames, plan_geometry
from swapjax.sample.inputs import JobInputs


@dataclasses.dataclass(frozen=True)
class SwapResult:
    """What one job produced (numpy, no batch axis)."""

    frames: np.ndarray  # uint8 [F, H0, W0, 3]
    alpha: np.ndarray  # float32 [F, H0, W0]: the composite weight of the generated video (0 = source pixel)
    region: np.ndarray  # uint8 [F, H0, W0]: the inference mask the model regenerated, in source coordinates
    report: dict[str, Any]
    generated: np.ndarray | None = None  # uint8 [F, H0, W0, 3]: the model's video before the composite


def letterbox(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 `[h, w, 3]` -> `[height, width, 3]`: scaled to fit, centred on neutral grey (sheets and tiles; the
    model's reference slot is `reference_frame`)."""
    h, w = image.shape[:2]
    scale = min(height / h, width / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(image, (nw, nh), interpolation=interp).reshape(nh, nw, 3)
    out = np.full((height, width, 3), NEUTRAL_GREY, np.uint8)
    top, left = (height - nh) // 2, (width - nw) // 2
    out[top:top + nh, left:left + nw] = resized
    return out


def reference_square(inputs: JobInputs, ref_size: int) -> np.ndarray:
    """The prepared reference, float32 `[S, S, 3]` in [-1, 1], as training prepares it: `prepare_reference` (the
    subject cut out by the reference mask, the alpha or the automatic cut-out, boxed, squared on grey, resized to
    `ref_size` = the run's `data.ref_size`). The identity condition embeds this square, as in training."""
    return to_unit(prepare_reference(inputs.reference, inputs.reference_mask, size=ref_size,
                                     name=f"reference image of {inputs.name!r}"))  # [S, S, 3]


def reference_frame(inputs: JobInputs, ref_size: int, height: int, width: int) -> np.ndarray:
    """The reference slot's frame, float32 `[height, width, 3]` in [-1, 1]: `reference_square` -> `fit_reference`."""
    return np.asarray(fit_reference(reference_square(inputs, ref_size)[None], height, width)[0])  # [H, W, 3]


def _keypoints_for(engine: Engine, inputs: JobInputs) -> JobInputs:
    """The job's keypoints as training feeds them: drawn into the condition video when a condition reads its latent
    and the job gave none (training renders it then too); padded with invisible points to the count the model's
    conditions read (`data.pipeline.fixed_keypoints`), or dropped when none reads keypoints."""
    needs = data_needs(engine.swap)
    if inputs.keypoints is not None and inputs.condition is None and needs.condition_video:
        drawn = render_keypoints(inputs.keypoints, *inputs.video.shape[1:3], inputs.keypoints_kind)  # [F, H, W, 3]
        inputs = dataclasses.replace(inputs, condition=drawn)
    count = needs.keypoints
    if inputs.keypoints is None or count == 0:
        return dataclasses.replace(inputs, keypoints=None)
    try:
        kps = fixed_keypoints(inputs.keypoints, count, f"the keypoint track of {inputs.name!r}",
                              "the model's points condition reads conditions.points.num_points; it needs")
    except ValueError as err:
        raise InputError(str(err)) from None
    return dataclasses.replace(inputs, keypoints=kps)


def composite_radii(cfg: SampleConfig, mask_cfg: MaskConfig) -> tuple[int, int]:
    """(dilate, feather) of the composite: the sample config's, else the mask config's inference values."""
    dilate = mask_cfg.dilate_infer if cfg.composite_dilate is None else cfg.composite_dilate
    feather = mask_cfg.feather if cfg.composite_feather is None else cfg.composite_feather
    return dilate, feather


def guidance_scales(cfg: SampleConfig, guidance: float | None = None, text_guidance: float | None = None
                    ) -> np.ndarray:
    """float32 `[2]` (reference scale, text scale) handed to the compiled step as traced values."""
    ref = cfg.sampler.guidance_scale if guidance is None else guidance
    text = cfg.sampler.text_guidance_scale if text_guidance is None else text_guidance
    return np.array([ref, 1.0 if text is None else text], np.float32)


def _model_space(inputs: JobInputs, geo: Geometry, mask_cfg: MaskConfig) -> dict[str, np.ndarray | None]:
    """The video, masks and condition at model resolution (uint8)."""
    subject = geo.mask_to_model(inputs.mask)  # [F, H, W]
    region = np.maximum(masks.inference_mask(subject, mask_cfg), subject)  # the inference rule, then the subject
    return {"video": geo.to_model(inputs.video), "subject": subject, "region": region,
            "condition": None if inputs.condition is None else geo.to_model(inputs.condition),
            "keypoints": None if inputs.keypoints is None else geo.points_to_model(inputs.keypoints)}


def swap_video(engine: Engine, inputs: JobInputs, cfg: SampleConfig, mask_cfg: MaskConfig, *,
               guidance: float | None = None, text_guidance: float | None = None,
               seed: int | None = None, image_context: np.ndarray | None = None,
               null_text: np.ndarray | None = None, ref_size: int = DataConfig.ref_size) -> SwapResult:
    """Runs one job (see the module docstring); `guidance` / `text_guidance` / `seed` override the config's.
    `ref_size`: the reference square's side the model was trained with (the run config's `data.ref_size`).
    `image_context`: CLIP tokens of the reference `[Li, image_dim]` (I2V-based models, `swapjax.encoding`);
    `null_text`: the negative prompt's embeddings for the null guidance branch (default: zeros)."""
    num_frames = inputs.video.shape[0]
    inputs = _keypoints_for(engine, inputs)
    geo = plan_geometry(inputs.video.shape[1:3], inputs.mask, cfg)
    model = _model_space(inputs, geo, mask_cfg)
    height, width = geo.model_hw
    dilate, feather = composite_radii(cfg, mask_cfg)
    alpha_model = composite_alpha(model["subject"], dilate, feather)  # [F, H, W] for the anchor frames
    square = reference_square(inputs, ref_size)  # [S, S, 3], prepared once (a cut-out warning is said once)
    reference = engine.encode_image(np.asarray(fit_reference(square[None], height, width)[0]))  # [1, 1, h, w, z]
    embedding = None if engine.encoder is None else engine.embed_reference(square)
    shared = WindowInputs(pixels=None, mask=None, condition=None, reference=reference, anchor=None, text=inputs.text,
                          image=image_context, null_text=null_text, reference_embedding=embedding)
    scales = guidance_scales(cfg, guidance, text_guidance)
    blended, plan = _sample_windows(engine, model, shared, alpha_model, cfg, scales,
                                    jax.random.key(cfg.seed if seed is None else seed))
    back = to_uint8(geo.from_model(blended))  # [F, y1 - y0, x1 - x0, 3]
    generated_src = geo.paste(inputs.video, back)  # [F, H0, W0, 3]
    alpha = composite_alpha(inputs.mask, dilate, feather)  # [F, H0, W0]
    frames = composite(inputs.video, generated_src, alpha)
    region = np.maximum(geo.mask_from_model(model["region"]), inputs.mask)  # [F, H0, W0]
    report = _report(inputs, frames, alpha, plan, geo, scales)
    return SwapResult(frames, alpha, region, report, generated_src)


def _sample_windows(engine: Engine, model: dict[str, np.ndarray | None], shared: WindowInputs,
                    alpha_model: np.ndarray, cfg: SampleConfig, scales: np.ndarray, key: jax.Array
                    ) -> tuple[np.ndarray, list]:
    """Every window of the video at model resolution, cross-faded -> (float32 `[F, H, W, 3]`, the plan).

    Each window after the first is anchored on its predecessor as training draws the anchor
    (`fused_inputs.anchor_index`, docs/design.md "Long videos"): the previous window's last generated latent frame
    is handed over as is (latent space, no decode/encode), or, when the anchor is latent frame 0 (overlap 1: the
    window starts on the previous one's last frame), that frame's pixels composited on the source are encoded
    alone, as the causal VAE encodes a clip's first frame."""
    num_frames, height, width = model["video"].shape[:3]
    aligned = engine.swap.anchor
    index = anchor_index(cfg.overlap_frames, engine.swap.frames_per_latent) if aligned else 0
    plan = win_lib.plan_windows(num_frames, cfg.window_frames, cfg.overlap_frames, aligned=aligned)
    weights = win_lib.blend_weights(plan, num_frames)  # [n, F]
    blended = np.zeros((num_frames, height, width, 3), np.float32)  # host memory: device memory stays flat
    anchor, cond, points = None, model["condition"], model.get("keypoints")
    for k, w in enumerate(plan):
        span = slice(w.start, w.stop)
        window = shared._replace(
            pixels=to_unit(pad_frames(model["video"][span], w.length)),
            mask=pad_frames(model["region"][span], w.length).astype(np.float32),
            condition=None if cond is None else to_unit(pad_frames(cond[span], w.length)),
            keypoints=None if points is None else pad_frames(points[span], w.length), anchor=anchor)
        pixels, latents = engine.generate_window(window, jax.random.fold_in(key, k), scales)
        generated = pixels[:w.stop - w.start]  # [n, H, W, 3]
        if index > 0:
            anchor = latents[:, -1:]  # [1, 1, h, w, z]: covers the next window's latent frame `index`
        else:
            last = w.stop - 1
            anchor = composite_float(to_unit(model["video"][last]), generated[-1], alpha_model[last])
        blended[span] += weights[k, span, None, None, None] * generated
        del latents  # only the handed-over frame stays on the device: memory is the same for every window
    return blended, plan


def _report(inputs: JobInputs, frames: np.ndarray, alpha: np.ndarray, plan: list, geo: Geometry,
            scales: np.ndarray) -> dict[str, Any]:
    swapped = alpha > 0  # [F, H0, W0]: the pixels the composite took (partly) from the model
    colours = metrics.window_colours(frames, swapped, plan)
    report = {
        "name": inputs.name, "frames": int(frames.shape[0]), "source_hw": list(geo.source_hw),
        "model_hw": list(geo.model_hw), "tunnel": geo.tunnel, "crop_box_yxyx": list(geo.box),
        "windows": [[w.start, w.stop] for w in plan], "guidance": [float(s) for s in scales],
        "seam_ratio": metrics.seam_ratio(frames, swapped, plan),
        "window_colours": np.round(colours, 2).tolist(), "colour_drift": metrics.colour_drift(colours),
    }
    if inputs.ground_truth is not None:
        err = (frames.astype(np.float64) - inputs.ground_truth.astype(np.float64)) ** 2
        mse = float(err.mean())
        report["psnr_vs_ground_truth"] = float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))
    return report

