"""Tiny random diffusers `AutoencoderKLWan` references for the VAE parity and converter tests."""

from __future__ import annotations

import numpy as np
import torch
from diffusers import AutoencoderKLWan


def build_reference(seed: int, **config) -> AutoencoderKLWan:
    """A tiny random AutoencoderKLWan in eval mode. Every parameter is random: RMS_norm gammas (initialised
    to ones) are redrawn so that a wrong gamma mapping cannot hide; no Wan2.1 parameter starts at zero."""
    torch.manual_seed(seed)
    z_dim = config.setdefault("z_dim", 4)
    config.setdefault("latents_mean", [0.1 * i for i in range(z_dim)])
    config.setdefault("latents_std", [1.0 + 0.1 * i for i in range(z_dim)])
    model = AutoencoderKLWan(**config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("gamma"):
                param.uniform_(0.5, 1.5)
            if bool((param == 0).all()):
                raise AssertionError(f"reference parameter {name} is all zeros: re-initialise it in the test")
    return model


def to_torch_video(video: np.ndarray) -> torch.Tensor:
    """`[B, F, H, W, C]` -> `[B, C, F, H, W]`."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(video, -1, 1)))


def from_torch_video(video: torch.Tensor) -> np.ndarray:
    """`[B, C, F, H, W]` -> `[B, F, H, W, C]`."""
    return np.moveaxis(video.detach().numpy(), 1, -1)

