"""Exports of a trained swap DiT: an inference checkpoint and a diffusers-layout safetensors folder.

- `inference_params(state, lora_scale)`: the weights to sample with: the EMA of the trained leaves laid over
  the parameters, LoRA adapters merged into their kernels.
- `export_inference(out, params, dit, swap, dtype)`: those weights cast to `dtype` (bfloat16 by default) in the
  converted-model format (`swapjax.convert.saved`), so `load_converted` / the sampler read them.
- `export_diffusers(out, params, dit)`: `config.json` + `diffusion_pytorch_model.safetensors` that diffusers'
  `WanTransformer3DModel` loads (train on TPU, sample anywhere). diffusers has no prefix frames or swap
  conditions: the export is the backbone (with the widened patch embedding, `in_channels` = the fused
  channels), which equals our model on a plain video stream; the condition modules' parameters are left out.

Both write through `swapjax.atomic` (the folder appears only when complete) from process 0; parameters sharded
over several processes are gathered first.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Mapping

import jax
import ml_dtypes
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from swapjax.atomic import atomic_write
from swapjax.convert.dit import dit_config_to_diffusers, param_table
from swapjax.convert.saved import save_converted
from swapjax.models.dit_config import DiTConfig
from swapjax.models.swap import abstract_swap
from swapjax.models.swap_config import SwapConfig
from swapjax.train.lora import merge_lora
from swapjax.train.state import TrainState, overlay

SAFETENSORS = "diffusion_pytorch_model.safetensors"


def inference_params(state: TrainState, lora_scale: float) -> dict:
    """EMA over the parameters, adapters merged -> the model's pure parameter dict."""
    params = overlay(state.params, state.ema) if state.ema else state.params
    return merge_lora(params["model"], params.get("lora", {}), lora_scale)


def to_host(tree: Mapping) -> dict:
    """Device arrays (possibly spread over processes) -> numpy on every process."""
    if jax.process_count() > 1:
        return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
    return jax.tree.map(np.asarray, jax.device_get(tree))


def export_inference(out: str | pathlib.Path, params: Mapping, dit: DiTConfig, swap: SwapConfig,
                     dtype: str = "bfloat16") -> pathlib.Path:
    """Writes `params` as a converted swap model with parameter dtype `dtype`; returns the folder."""
    cfg = dataclasses.replace(dit, param_dtype=dtype)
    _, state = abstract_swap(cfg, swap)
    np_dtype = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
    host = jax.tree.map(lambda x: np.asarray(x).astype(np_dtype), to_host(params))
    nnx.replace_by_pure_dict(state, host)
    return save_converted(out, "swap", (cfg, swap), state, source="swapjax.train export (EMA)")


def diffusers_tensors(params: Mapping, dit: DiTConfig) -> dict[str, np.ndarray]:
    """The backbone parameters in diffusers' names and layouts (inverse of `swapjax.convert.dit`)."""
    host = to_host(params)
    tensors = {}
    for e in param_table(dit):
        value = host
        for key in e.path:
            value = value[key]
        value = np.asarray(value if e.layer is None else value[e.layer], np.float32)
        if e.kind == "linear":
            value = value.T
        elif e.kind == "conv":
            value = value.transpose(4, 3, 0, 1, 2)  # [pt, ph, pw, C, D] -> [D, C, pt, ph, pw]
        elif e.kind == "table":
            value = value[None]  # [k, D] -> [1, k, D]
        tensors[e.diffusers] = np.ascontiguousarray(value)
    return tensors


def export_diffusers(out: str | pathlib.Path, params: Mapping, dit: DiTConfig) -> pathlib.Path | None:
    """Writes a diffusers `WanTransformer3DModel` folder (float32) from process 0; returns it (None elsewhere)."""
    from safetensors.numpy import save_file

    tensors = diffusers_tensors(params, dit)
    if jax.process_index() != 0:
        return None
    out = pathlib.Path(out)
    with atomic_write(out) as tmp:
        tmp.mkdir()
        save_file(tensors, str(tmp / SAFETENSORS))
        (tmp / "config.json").write_text(json.dumps(dit_config_to_diffusers(dit), indent=2) + "\n")
    return out
