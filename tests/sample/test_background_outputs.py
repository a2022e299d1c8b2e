"""How exactly the written outputs keep the background (README "The demo"): the composite keeps the source's
background pixels bit for bit in memory and in the PNG sheet (lossless), while the H.264 MP4 that
`write_outputs` writes (yuv420p, crf 18: the writer's defaults) brings them back with a small error, pinned here
under the bounds the README states with margin. The clips are 64x64 synthetic swap pairs (the new subject
rendered on the old one's path) composited with the default inference radii."""

from __future__ import annotations

import numpy as np
import pytest

from swapjax.data import video_io
from swapjax.data.config import MaskConfig
from swapjax.data.synthetic import SyntheticClips
from swapjax.sample import outputs
from swapjax.sample.composite import composite, composite_alpha
from swapjax.sample.inputs import JobInputs
from swapjax.sample.pipeline import SwapResult

# Measured on these three clips (64x64, 17 frames, 24 fps; libx264 of PyAV 18.1): over the background, mean |error|
# 2.9-3.8, 99th percentile 16-47, max 90-177 (README "The demo"). The bounds leave room for other x264 builds;
# the minimum says the MP4 is not lossless.
MEAN_BOUND, P99_BOUND, MAX_BOUND = 6.0, 64, 230


def _swap(i: int) -> tuple[JobInputs, SwapResult, np.ndarray]:
    """(inputs, result, background) of a swap whose generated video is the ground truth: the composite of pair
    `i`, and where its weight is 0 (the pixels that must be the source's)."""
    clips = SyntheticClips(64, 64, 17, 8, seed=0, backgrounds=("gradient", "blobs"))
    pair = clips.swap_pair(i, 32)
    mask_cfg = MaskConfig()
    alpha = composite_alpha(pair["mask"], mask_cfg.dilate_infer, mask_cfg.feather)  # [F, H, W]
    frames = composite(pair["video"], pair["target"], alpha)  # [F, H, W, 3]
    inputs = JobInputs(f"pair{i}", pair["video"], pair["mask"], pair["reference"], 24.0)
    return inputs, SwapResult(frames, alpha, region=(alpha > 0).astype(np.uint8), report={}), alpha == 0


@pytest.mark.parametrize("i", [0, 1, 2])
def test_background_is_exact_in_memory_and_png_and_close_through_h264(tmp_path, i):
    inputs, result, background = _swap(i)
    assert 0.5 < background.mean() < 1.0  # a real swap: most of the frame is background, some is not
    np.testing.assert_array_equal(result.frames[background], inputs.video[background])  # in memory: bit-exact
    assert not np.array_equal(result.frames, inputs.video)

    outputs.write_outputs(tmp_path / "out.mp4", inputs, result, sheet_rows=3)
    sheet = video_io.read_image(outputs.sheet_path(tmp_path / "out.mp4"))  # PNG: lossless
    picks = np.unique(np.linspace(0, 16, 3).round().astype(int))
    width = inputs.video.shape[2]
    for row, t in enumerate(picks):
        line = sheet[row * 64:(row + 1) * 64]
        np.testing.assert_array_equal(line[:, :width], inputs.video[t])
        np.testing.assert_array_equal(line[:, 3 * width:], result.frames[t])  # the result column, exactly

    frames, fps, _ = video_io.read_video(tmp_path / "out.mp4")
    assert frames.shape == inputs.video.shape and fps == 24
    error = np.abs(frames.astype(np.int16) - inputs.video.astype(np.int16))[background]  # 0..255 per channel
    assert 0 < error.mean() < MEAN_BOUND, error.mean()
    assert np.percentile(error, 99) < P99_BOUND and error.max() < MAX_BOUND, (np.percentile(error, 99), error.max())
