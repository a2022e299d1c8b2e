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
