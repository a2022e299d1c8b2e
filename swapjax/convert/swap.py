"""Base Wan2.1 DiT parameters (I2V-14B; T2V for the 1.3B) -> swap model parameters.

The swap DiT has the base's parameter tree plus the optional condition modules; only the patch embedding
changes shape: its input-channel axis grows from the base's `C_base` (36 for I2V, 16 for T2V) to the fused
width (52). The base's columns stay where they are (I2V's [z_t | mask | image latent] are the swap model's
[z_t | mask | agnostic latent]; T2V's [z_t] is z_t) and the new columns start at zero, so on inputs whose
extra channels are zero the swap model computes exactly what the base computes. The condition modules
(pose, identity, points) come from a fresh initialisation; their output-side weights start at zero where
that keeps the loaded model equal to the base (see `models/conditions/`).

    cfg = load_config("configs/swap_wan2_1_14b.py")
    dit_cfg, state = convert_swap("Wan2.1-I2V-14B-480P-Diffusers/transformer", cfg)
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import numpy as np
from flax import nnx

from swapjax.config import Config
from swapjax.errors import ConfigError
from swapjax.models.dit_config import DiTConfig
from swapjax.models.swap_config import SwapConfig
from swapjax.convert.checkpoint_io import TensorReader, config_from_json
from swapjax.errors import CheckpointError
from swapjax.convert.dit import convert_dit, dit_config_from_json
from swapjax.models.execution import architecture
from swapjax.models.layers import DTYPES
from swapjax.models.swap import abstract_swap, build_adapters

PATCH_KERNEL = ("patch_embed", "kernel")


def check_base(base: DiTConfig, cfg: DiTConfig) -> None:
    """Raises `CheckpointError` listing every architecture field where the base differs from the swap DiT."""
    theirs, ours = architecture(base), architecture(cfg)
    diffs = [f"{name}: base {theirs[name]!r}, swap {ours[name]!r}" for name in ours
             if name != "in_channels" and theirs[name] != ours[name]]
    if base.in_channels > cfg.in_channels:
        diffs.append(f"in_channels: base {base.in_channels} > swap {cfg.in_channels}")
    if diffs:
        raise CheckpointError("base DiT does not fit the swap config (" + "; ".join(diffs) + "): convert the "
                              "matching base (I2V-14B for swap_wan2_1_14b, T2V-1.3B for swap_wan2_1_1_3b)")


def widen_patch_kernel(kernel: np.ndarray, in_channels: int) -> np.ndarray:
    """Patch kernel `[pt, ph, pw, C_base, D]` -> `[pt, ph, pw, in_channels, D]`, new input columns zero."""
    out = np.zeros((*kernel.shape[:3], in_channels, kernel.shape[4]), kernel.dtype)
    out[:, :, :, :kernel.shape[3]] = kernel
    return out


def swap_state_from_base(base_cfg: DiTConfig, base_state: nnx.State, cfg: DiTConfig, swap: SwapConfig,
                         key: jax.Array) -> nnx.State:
    """The swap model's state: base parameters (patch kernel widened) + freshly initialised condition modules.

    Leaves are numpy arrays in `cfg.param_dtype`; base arrays already in that dtype are shared, not copied.
    """
    check_base(base_cfg, cfg)
    dtype = np.dtype(DTYPES[cfg.param_dtype])
    _, state = abstract_swap(cfg, swap)
    base = {path: var.get_value() for path, var in nnx.to_flat_state(base_state)}
    fresh = {}
    for name, module in build_adapters(cfg, swap, nnx.Rngs(params=key)).items():
        if module is not None:
            fresh.update({(name, *path): var.get_value() for path, var in nnx.to_flat_state(nnx.state(module))})
    targets = dict(nnx.to_flat_state(state))
    missing = sorted(set(targets) - set(fresh) - set(base))
    if missing:
        raise CheckpointError(f"base DiT state lacks {len(missing)} parameters of the swap model, e.g. {missing[:3]}")
    for path, var in targets.items():
        if path in fresh:
            value = np.asarray(fresh[path], dtype)
        elif path == PATCH_KERNEL:
            value = widen_patch_kernel(np.asarray(base[path], dtype), cfg.in_channels)
        else:
            value = np.asarray(base[path], dtype)
        if value.shape != var.shape:
            raise CheckpointError(f"parameter {'/'.join(map(str, path))}: base has shape {value.shape}, the swap "
                                  f"model needs {var.shape}")
        var.set_value(value)
    return state


def convert_swap(src: str | pathlib.Path, config: Config, *, key: jax.Array | None = None,
                 allow_pickle: bool = False) -> tuple[DiTConfig, nnx.State]:
    """Reads a Wan2.1 transformer checkpoint (see `convert_dit`) and widens it to `config`'s swap DiT.

    The base architecture is the checkpoint's config.json when it has one, else `config.dit` with the
    checkpoint's patch-embedding width; `key` seeds the condition modules (default: `config.seed`).
    """
    if config.swap is None:
        raise ConfigError(f"config {config.name!r} has no swap section: use a configs/swap_*.py config")
    base_cfg = _base_config(src, config.dit, allow_pickle)
    base_cfg, base_state = convert_dit(src, cfg=base_cfg, allow_pickle=allow_pickle)
    key = jax.random.key(config.seed) if key is None else key
    return config.dit, swap_state_from_base(base_cfg, base_state, config.dit, config.swap, key)


def _base_config(src: str | pathlib.Path, cfg: DiTConfig, allow_pickle: bool) -> DiTConfig:
    execution = {f: getattr(cfg, f) for f in ("param_dtype", "dtype", "attention", "remat_policy", "scan_layers")}
    src = pathlib.Path(src)
    if ((src if src.is_dir() else src.parent) / "config.json").is_file():
        return config_from_json(src, dit_config_from_json, **execution)
    # No config.json (an original single file): the architecture is the swap config's, at the base's width.
    for key, shape in TensorReader(src, allow_pickle=allow_pickle).shapes().items():
        if key.endswith("patch_embedding.weight"):
            return dataclasses.replace(cfg, in_channels=int(shape[1]))
    raise CheckpointError(f"{str(src)!r} has no patch_embedding.weight: pass a Wan2.1 transformer checkpoint")
