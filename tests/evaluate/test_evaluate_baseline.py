"""The VAE-reconstruction baseline of the evaluation (`bg_psnr_vae`): it goes through the sampler's geometry and
back, and it is scored on exactly the pixels `bg_psnr_raw` scores."""

from __future__ import annotations

import numpy as np

from swapjax import metrics
from swapjax.evaluate.baseline import vae_reconstruction
from swapjax.evaluate.scores import score_case
from swapjax.sample.config import SampleConfig
from swapjax.sample.engine import Engine
from swapjax.sample.inputs import JobInputs
from swapjax.sample.pipeline import SwapResult


class _LosslessEngine(Engine):
    """Stands in for `Engine`: its "latents" are the pixels, so a reconstruction must equal the model input."""

    def __init__(self):  # no models
        pass

    def encode(self, video, desc="encode"):
        assert video.shape[1] % 4 == 1, "the VAE takes 1 mod 4 frames"
        return np.asarray(video)

    def decode(self, z):
        return np.asarray(z)


def _inputs(frames: int, height: int, width: int) -> JobInputs:
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    mask = np.zeros((frames, height, width), np.uint8)
    mask[:, 20:30, 24:36] = 1
    return JobInputs("case", video, mask, np.full((16, 16, 3), 128, np.uint8), fps=12.0)


def test_reconstruction_goes_through_the_geometry_and_back():
    inputs = _inputs(6, 48, 64)  # 6 frames: padded to 9 for the VAE and cut back
    whole = vae_reconstruction(_LosslessEngine(), inputs, SampleConfig(area=48 * 64, tunnel_threshold=0.0))
    np.testing.assert_array_equal(whole, inputs.video)  # no resize: a lossless VAE gives the source back
    tunnel = vae_reconstruction(_LosslessEngine(), inputs, SampleConfig(area=64 * 64, tunnel_threshold=0.5))
    assert tunnel.shape == inputs.video.shape
    box = np.zeros(inputs.mask.shape, bool)
    box[:, 20:30, 24:36] = True
    assert not np.array_equal(tunnel, inputs.video)  # the crop was resized up and back down
    assert np.abs(tunnel[box].astype(int) - inputs.video[box]).mean() < 40


def test_bg_psnr_vae_scores_the_pixels_bg_psnr_raw_scores(tmp_path):
    from swapjax.data import video_io

    inputs = _inputs(5, 48, 64)
    region = np.zeros_like(inputs.mask)
    region[:, 16:32, 16:40] = 1
    generated = inputs.video.copy()
    generated[:, :4] = 0  # damage the background the model was told to keep
    reconstruction = inputs.video.copy()
    reconstruction[:, :, :2] = 255
    result = SwapResult(frames=inputs.video, alpha=inputs.mask.astype(np.float32), region=region, report={
        "seam_ratio": None, "colour_drift": 0.0}, generated=generated)
    out = tmp_path / "case.mp4"
    video_io.write_video(out, inputs.video, inputs.fps)
    row = score_case(inputs, result, out, background_dilate=2, reconstruction=reconstruction)
    keep = metrics.background_region(region, 2)
    assert row["bg_psnr_raw"] == metrics.psnr(generated, inputs.video, keep)
    assert row["bg_psnr_vae"] == metrics.psnr(reconstruction, inputs.video, keep)
    err = (reconstruction.astype(float) - inputs.video)[keep] ** 2  # by hand
    assert np.isclose(row["bg_psnr_vae"], 10 * np.log10(255.0 ** 2 / err.mean()))
    assert "bg_psnr_vae" not in score_case(inputs, result, out, background_dilate=2)


def _labelled_case(tmp_path):
    """A case whose user mask is a loose box around a 6 px red subject and whose user reference shows the new blue
    subject on a green canvas; its `subject_mask` and `subject_reference` are the exact subject and blue on grey.
    The result paints the subject blue: (job, inputs, result, exact subject mask)."""
    from sample_fixtures import clip
    from swapjax.sample.jobs import Job

    video = clip(5)
    exact = np.zeros((5, 32, 32), np.uint8)
    exact[:, 12:18, 12:18] = 1
    box = np.zeros_like(exact)
    box[:, 8:22, 8:22] = 1
    video[exact == 1] = (200, 0, 0)
    canvas = np.full((32, 32, 3), (0, 200, 0), np.uint8)
    canvas[10:22, 10:22] = (0, 0, 200)
    on_grey = np.full((16, 16, 3), 128, np.uint8)
    on_grey[4:12, 4:12] = (0, 0, 200)
    np.savez(tmp_path / "case.npz", source=video, mask=box, reference=canvas, subject_mask=exact,
             subject_reference=on_grey, set=np.asarray("heldout"), mask_style=np.asarray("box"),
             reference_framing=np.asarray("canvas"))
    job = Job(name="case", out=tmp_path / "case.mp4", case=tmp_path / "case.npz")
    inputs = job.read(None)
    frames = video.copy()
    frames[exact == 1] = (0, 0, 200)
    alpha = box.astype(np.float32)
    result = SwapResult(frames=frames, alpha=alpha, region=box, report={"seam_ratio": None, "colour_drift": 0.0},
                        generated=frames)
    return job, inputs, result, exact


def test_scores_read_the_exact_subject_and_the_subject_reference(tmp_path):
    from swapjax.data import video_io

    _, inputs, result, exact = _labelled_case(tmp_path)
    out = tmp_path / "case.mp4"
    video_io.write_video(out, result.frames, inputs.fps)
    on_grey = np.load(tmp_path / "case.npz")["subject_reference"]
    row = score_case(inputs, result, out, background_dilate=1, subject_mask=exact, subject_reference=on_grey)
    assert row["colour_to_reference"] < 1.0 and row["closer_to_reference"]  # the exact subject is all blue
    assert row["centroid_error"] < 0.01  # the blue square found where the source's subject was
    want = metrics.subject_colour_distances(result.frames, inputs.video, exact, on_grey)
    assert row["colour_to_reference"] == want["colour_to_reference"]
    loose = score_case(inputs, result, out, background_dilate=1)  # the user's box and green canvas instead
    assert loose["colour_to_reference"] > 20 * max(row["colour_to_reference"], 1.0)
    assert loose["bg_psnr"] == row["bg_psnr"]  # the regions the sampler used are the same


def test_case_scorer_labels_its_row_and_scores_the_exact_subject(tmp_path):
    from swapjax.data import video_io
    from swapjax.evaluate.cli import CaseScorer
    from swapjax.sample.runner import Swapped

    job, inputs, result, exact = _labelled_case(tmp_path)
    video_io.write_video(job.out, result.frames, inputs.fps)
    engine = _LosslessEngine()
    engine.cfg = SampleConfig(area=32 * 32, tunnel_threshold=0.0)
    scorer = CaseScorer(background_dilate=1, embed=None)
    row = scorer(Swapped(job, inputs, result, engine, started=0.0))
    assert (row["set"], row["mask_style"], row["reference_framing"]) == ("heldout", "box", "canvas")
    assert row["colour_to_reference"] < 1.0 and row["centroid_error"] < 0.01
    assert scorer.tiles[0][0] == "case"
