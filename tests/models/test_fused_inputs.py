"""Fused inputs (swapjax.models.fused_inputs): mask packing in Wan I2V's polarity, channel order of the fused inputs, prefix frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from swapjax.models.swap_config import SwapConfig
from swapjax.models.fused_inputs import (agnostic_video, anchor_inputs, fuse_video_inputs, pack_mask, prefix_inputs,
                                         reference_inputs)
from swapjax.models.swap import null_prefix


def _diffusers_i2v_mask(b: int, frames: int, lh: int, lw: int) -> np.ndarray:
    """The mask diffusers' WanImageToVideoPipeline.prepare_latents builds (first frame known, the rest generated),
    transcribed step by step, returned channels-last `[B, f, h, w, 4]`."""
    mask = torch.ones(b, 1, frames, lh, lw)
    mask[:, :, list(range(1, frames))] = 0
    first = torch.repeat_interleave(mask[:, :, 0:1], dim=2, repeats=4)
    mask = torch.concat([first, mask[:, :, 1:, :]], dim=2)
    mask = mask.view(b, -1, 4, lh, lw).transpose(1, 2)  # [B, 4, f, h, w]
    return mask.numpy().transpose(0, 2, 3, 4, 1)


def test_pack_mask_is_the_i2v_mask_when_only_the_first_frame_is_known():
    m = np.ones((2, 9, 32, 48), np.float32)  # 1 = regenerate
    m[:, 0] = 0.0  # the first frame is the known image
    packed = np.asarray(pack_mask(m))
    assert packed.shape == (2, 3, 4, 6, 4)
    np.testing.assert_array_equal(packed, _diffusers_i2v_mask(2, 9, 4, 6))


def test_pack_mask_hand_example():
    """One hole pixel in frame 0 (shared by the 4 channels of latent frame 0, the first frame being repeated) and
    one in frame 2 (latent frame 1, channel 1): each turns exactly its 8x8 cell to 0."""
    m = np.zeros((1, 5, 16, 16), np.float32)
    m[0, 0, 9, 1] = 1.0  # row 9 -> cell row 1, col 1 -> cell col 0
    m[0, 2, 3, 12] = 1.0  # frame 2 = padded frame 5 = latent frame 1, channel 1; cell (0, 1)
    expected = np.ones((1, 2, 2, 2, 4), np.float32)
    expected[0, 0, 1, 0, :] = 0.0
    expected[0, 1, 0, 1, 1] = 0.0
    np.testing.assert_array_equal(np.asarray(pack_mask(m)), expected)


@pytest.mark.parametrize("shape, match", [((1, 6, 16, 16), "6 frames: need F = 1 mod 4"),
                                          ((1, 5, 16, 12), "multiples of 8"),
                                          ((5, 16, 16), r"expected \[B, F, H, W\]")])
def test_pack_mask_errors_name_the_problem(shape, match, unchecked):
    with pytest.raises(ValueError, match=match):
        pack_mask(np.zeros(shape, np.float32))


def test_fused_channel_order_and_zero_condition():
    rng = np.random.default_rng(0)
    z, mask, agn, cond = (rng.standard_normal((2, 3, 4, 4, c)).astype(np.float32) for c in (16, 4, 16, 16))
    fused = np.asarray(fuse_video_inputs(z, mask, agn, cond))
    assert fused.shape == (2, 3, 4, 4, 52)
    for part, (lo, hi) in zip((z, mask, agn, cond), ((0, 16), (16, 20), (20, 36), (36, 52))):
        np.testing.assert_array_equal(fused[..., lo:hi], part)
    no_cond = np.asarray(fuse_video_inputs(z, mask, agn, None))
    np.testing.assert_array_equal(no_cond[..., :36], fused[..., :36])
    assert not no_cond[..., 36:].any()
    assert np.asarray(fuse_video_inputs(z, mask, agn, None, condition_channels=0)).shape[-1] == 36


def test_fuse_errors_name_the_input(unchecked):
    z = np.zeros((2, 3, 4, 4, 16), np.float32)
    with pytest.raises(ValueError, match="agnostic_latent has shape"):
        fuse_video_inputs(z, np.zeros((2, 3, 4, 4, 4)), np.zeros((2, 2, 4, 4, 16)))
    with pytest.raises(ValueError, match="guide_latent has shape"):
        fuse_video_inputs(z, np.zeros((2, 3, 4, 4, 4)), z, np.zeros((2, 3, 4, 4, 8)))


def test_reference_and_anchor_frames_are_fully_known_clean_frames():
    rng = np.random.default_rng(1)
    z_r, z_a = (rng.standard_normal((2, 1, 4, 4, 16)).astype(np.float32) for _ in range(2))
    ref = np.asarray(reference_inputs(z_r))
    assert ref.shape == (2, 1, 4, 4, 52)
    np.testing.assert_array_equal(ref[..., :16], z_r)
    np.testing.assert_array_equal(ref[..., 16:20], 1.0)
    np.testing.assert_array_equal(ref[..., 20:36], z_r)
    np.testing.assert_array_equal(ref[..., 36:], 0.0)

    anchor = np.asarray(anchor_inputs(z_a, np.array([True, False])))
    np.testing.assert_array_equal(anchor[0], np.asarray(reference_inputs(z_a))[0])
    np.testing.assert_array_equal(anchor[1], 0.0)  # a dropped anchor is an unknown, empty frame

    prefix = np.asarray(prefix_inputs(z_r, z_a))
    np.testing.assert_array_equal(prefix[:, 0:1], ref)  # reference first, then the anchor
    np.testing.assert_array_equal(prefix[:, 1:2], np.asarray(reference_inputs(z_a)))

    null = np.asarray(null_prefix(z_r, SwapConfig(anchor=True), z_a))
    np.testing.assert_array_equal(null[:, 0], np.asarray(reference_inputs(np.zeros_like(z_r)))[:, 0])
    np.testing.assert_array_equal(null[:, 1], prefix[:, 1])  # guidance drops the reference, keeps the anchor


def test_reference_of_two_frames_is_named(unchecked):
    with pytest.raises(ValueError, match="one latent frame"):
        reference_inputs(np.zeros((2, 2, 4, 4, 16), np.float32))


def test_agnostic_video_zeroes_the_hole():
    video = np.full((1, 5, 16, 16, 3), 0.5, np.float32)
    mask = np.zeros((1, 5, 16, 16), np.float32)
    mask[0, :, :8] = 1.0
    out = np.asarray(agnostic_video(video, mask))
    assert not out[0, :, :8].any() and (out[0, :, 8:] == 0.5).all()
