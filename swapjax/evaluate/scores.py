"""The scores of one swapped case (`swapjax.metrics` applied to the sampler's result), as one table row.

Regions, all in source pixels `[F, H, W]`:
- the *mask*: the user's mask (what was asked to be swapped: the subject's pixels, or a box, a dilation or a
  grid around them);
- the *subject*: the subject's exact visible pixels, the case's `subject_mask` when it carries one
  (`evaluate/cases.py`), else the mask;
- the *swapped region*: where the composite took model pixels (`alpha > 0`, the mask dilated by the
  composite's radius);
- the *kept background*: farther than `background_dilate` pixels from the region the model regenerated (the
  inference mask, a superset of the mask). `bg_*` score the final video there (the composite copies the
  source, so these are ideal unless something is wrong); `bg_*_raw` score the model's video before the
  composite, which tells whether the DiT and VAE damaged what they were told to keep; `bg_psnr_vae` scores the
  VAE's own reconstruction of the source there (`baseline.py`), the ceiling of `bg_psnr_raw`: the gap between
  the two is what the DiT did to the background.
The *reference's subject colours* come from the case's `subject_reference` when it carries one (the new subject
alone on grey), else from the reference the sampler got.

Columns (`COLUMNS`): `name`, `status` (ok / failed), the case's labels `set`, `mask_style`, `reference_framing`
(`evaluate/cases.LABELS`, empty for cases without them), `seconds` (the case's wall time; the first case's
includes compilation), `frames`; media checks of the written MP4 (`fps_kept`, `frames_kept`, `size_kept`,
`audio_kept`); `bg_psnr`, `bg_ssim`, `bg_mae` and their `_raw` twins, `bg_psnr_vae`; with a ground truth,
`masked_psnr` / `masked_ssim` in the swapped region; `flicker` and `warp_error` of the result in the swapped region
next to the source's (`flicker_source`, `warp_error_source`); the sampler's `seam_ratio` and `colour_drift`
between windows; `colour_to_reference` / `colour_to_source` (the mean colour inside the subject against the
reference's subject and the original subject) and `closer_to_reference`; `centroid_error`: the new subject
(`metrics.segment_subject` in the swapped region) against the subject's centroids, and with a ground truth
`centroid_error_truth`, the same measured on the ground truth (the floor this segmentation reaches);
`embedding_similarity` with an embedder.
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

from swapjax import metrics
from swapjax.data.reference import NEUTRAL_GREY
from swapjax.evaluate.cases import LABELS
from swapjax.sample.inputs import JobInputs
from swapjax.sample.pipeline import SwapResult, letterbox

MEDIA = ("fps_kept", "frames_kept", "size_kept", "audio_kept")
COLUMNS = ("name", "status", *LABELS, "seconds", "frames", *MEDIA, "bg_psnr", "bg_ssim", "bg_mae", "bg_psnr_raw",
           "bg_ssim_raw", "bg_mae_raw", "bg_psnr_vae", "masked_psnr", "masked_ssim", "flicker", "flicker_source",
           "warp_error", "warp_error_source", "seam_ratio", "colour_drift", "colour_to_reference", "colour_to_source",
           "closer_to_reference", "centroid_error", "centroid_error_truth", "embedding_similarity", "error")


def score_case(inputs: JobInputs, result: SwapResult, out: str | pathlib.Path, *, background_dilate: int,
               embed: metrics.Embedder | None = None, reconstruction: np.ndarray | None = None,
               subject_mask: np.ndarray | None = None, subject_reference: np.ndarray | None = None
               ) -> dict[str, Any]:
    """The row of one case (see the module docstring); `out` is the MP4 the case was written to;
    `reconstruction` uint8 `[F, H, W, 3]` is the VAE's reconstruction of the source (`baseline.py`);
    `subject_mask` uint8 `[F, H, W]` and `subject_reference` uint8 `[S, S, 3]`: the case's exact subject and
    new subject on grey (default: the user's mask and reference)."""
    source, frames = inputs.video, result.frames  # uint8 [F, H, W, 3]
    subject = inputs.mask if subject_mask is None else subject_mask  # [F, H, W]
    reference = inputs.reference if subject_reference is None else subject_reference  # [S, S, 3]
    num_frames, height, width = source.shape[:3]
    swapped = result.alpha > 0  # [F, H, W]
    row: dict[str, Any] = {"frames": num_frames}
    row.update(metrics.media_kept(out, fps=inputs.fps, num_frames=num_frames, height=height, width=width,
                                  audio=inputs.audio_from is not None))
    row.update(metrics.background_scores(frames, source, result.region, background_dilate))
    if result.generated is not None:
        raw = metrics.background_scores(result.generated, source, result.region, background_dilate)
        row.update({f"{k}_raw": v for k, v in raw.items()})
    if reconstruction is not None:
        keep = metrics.background_region(result.region, background_dilate)  # the pixels bg_* score
        row["bg_psnr_vae"] = metrics.psnr(reconstruction, source, keep)
    if inputs.ground_truth is not None:
        row.update(metrics.masked_scores(frames, inputs.ground_truth, swapped))
    row["flicker"], row["flicker_source"] = metrics.flicker(frames, swapped), metrics.flicker(source, swapped)
    row["warp_error"] = metrics.warp_error(frames, region=swapped)
    row["warp_error_source"] = metrics.warp_error(source, region=swapped)
    row["seam_ratio"], row["colour_drift"] = result.report["seam_ratio"], result.report["colour_drift"]
    colours = metrics.subject_colour_distances(frames, source, subject, reference)
    row.update(colours)
    row["closer_to_reference"] = bool(colours["colour_to_reference"] < colours["colour_to_source"])
    new_subject = metrics.segment_subject(frames, swapped, reference)  # [F, H, W]
    row["centroid_error"] = metrics.centroid_error(new_subject, subject)
    if inputs.ground_truth is not None:
        truth_subject = metrics.segment_subject(inputs.ground_truth, swapped, reference)
        row["centroid_error_truth"] = metrics.centroid_error(truth_subject, subject)
    if embed is not None:
        row["embedding_similarity"] = metrics.embedding_similarity(embed, frames, subject, reference)
    return row


def contact_row(inputs: JobInputs, result: SwapResult, tile: int) -> np.ndarray:
    """uint8 `[tile, 5 * tile, 3]`: the middle frame's source | swapped region (white) | reference | result |
    ground truth (grey when there is none), each letterboxed on neutral grey."""
    t = inputs.video.shape[0] // 2
    region = np.repeat(np.round(result.alpha[t, :, :, None] * 255), 3, axis=-1).astype(np.uint8)  # [H, W, 3]
    truth = inputs.ground_truth[t] if inputs.ground_truth is not None else None
    tiles = [inputs.video[t], region, inputs.reference, result.frames[t], truth]
    return np.concatenate([letterbox(x, tile, tile) if x is not None else
                           np.full((tile, tile, 3), NEUTRAL_GREY, np.uint8) for x in tiles], axis=1)
