"""Tiny random diffusers `WanTransformer3DModel` references for the DiT parity and converter tests."""

from __future__ import annotations

import pathlib

import numpy as np
import torch
from diffusers import WanTransformer3DModel


def build_reference(seed: int, **config) -> WanTransformer3DModel:
    """A tiny `WanTransformer3DModel` in eval mode with every parameter redrawn at random.

    diffusers starts some tensors at zero or one (biases, norm weights) and `proj_out`/`scale_shift_table` at
    values that would hide a wrong mapping; here matrices get N(0, 1/fan_in), vectors N(0, 0.3²), norm
    weights 1 + N(0, 0.3²), modulation tables N(0, 0.5²).
    """
    torch.manual_seed(seed)
    model = WanTransformer3DModel(**config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2 and "scale_shift_table" not in name:
                p.normal_(0.0, 1.0 / np.sqrt(np.prod(p.shape[1:])))
            elif "scale_shift_table" in name:
                p.normal_(0.0, 0.5)
            elif "norm" in name and name.endswith("weight"):
                p.normal_(1.0, 0.3)
            else:
                p.normal_(0.0, 0.3)
    return model


def save_reference(model: WanTransformer3DModel, directory: pathlib.Path) -> pathlib.Path:
    """Writes config.json + diffusion_pytorch_model.safetensors; returns the directory."""
    model.save_pretrained(directory, safe_serialization=True)
    return directory


def run_reference(model: WanTransformer3DModel, latents: np.ndarray, t: np.ndarray, context: np.ndarray,
                  image_context: np.ndarray | None = None) -> np.ndarray:
    """diffusers forward on swapjax-layout inputs: latents `[B, f, h, w, C]`, t in [0, 1] (`[B]` or `[B, L]`)
    -> velocity `[B, f, h, w, C_out]` (transposed to and from diffusers' `[B, C, F, H, W]`, t·1000)."""
    with torch.no_grad():
        out = model(torch.from_numpy(np.ascontiguousarray(np.moveaxis(latents, -1, 1))),
                    torch.from_numpy(t) * 1000.0, torch.from_numpy(context),
                    None if image_context is None else torch.from_numpy(image_context), return_dict=False)[0]
    return np.moveaxis(out.numpy(), 1, -1)
