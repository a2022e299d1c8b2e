"""Wan2.1 VAE checkpoints -> `(VAEConfig, nnx.State)` for `swapjax.models.vae.WanVAE`.

Two source layouts are read, one tensor at a time through `TensorReader`:
- diffusers `AutoencoderKLWan` (a directory with `config.json` + `*.safetensors`): names such as
  `encoder.down_blocks.0.conv1.weight`, `decoder.up_blocks.1.upsamplers.0.resample.1.weight`;
- the original Wan2.1 release (`Wan2.1_VAE.pth`, or the same keys in a `.safetensors`): names such as
  `encoder.downsamples.0.residual.2.weight`, `decoder.upsamples.3.resample.1.weight`, `conv1.weight`.
Every swapjax parameter path has exactly one name in each layout (derived from the model structure, so any
`num_res_blocks` / `dim_mult` works). All shapes are checked against `nnx.eval_shape` of the model before any
tensor is read; one `CheckpointError` lists every missing, unexpected or mis-shaped parameter.

PyTorch -> swapjax layouts: Conv3d `[O, I, kt, kh, kw] -> [kt, kh, kw, I, O]`, Conv2d `[O, I, kh, kw] ->
[kh, kw, I, O]`, RMS_norm gamma `[C, 1, 1(, 1)] -> [C]`, biases unchanged.
"""

from __future__ import annotations

import pathlib
import warnings
from typing import Any

import numpy as np
from flax import nnx

from swapjax.errors import ConfigError
from swapjax.models.vae_config import VAEConfig
from swapjax.convert.checkpoint_io import ConversionWarning, TensorReader, check_shapes, config_from_json, is_finite, json_value, warn_nonfinite
from swapjax.errors import CheckpointError
from swapjax.models.layers import DTYPES
from swapjax.models.vae import abstract_vae

# diffusers residual-block child -> original Wan child
_RESIDUAL_ORIGINAL = {"norm1": "residual.0", "conv1": "residual.2", "norm2": "residual.3",
                      "conv2": "residual.6", "conv_shortcut": "shortcut"}
_TOP_ORIGINAL = {"quant_conv": "conv1", "post_quant_conv": "conv2"}
_PART_ORIGINAL = {"conv_in": "conv1", "norm_out": "head.0", "conv_out": "head.2"}


def vae_config_from_diffusers(d: dict, **overrides: Any) -> VAEConfig:
    """diffusers `AutoencoderKLWan` config.json dict -> `VAEConfig` (`overrides`: e.g. dtype="bfloat16").

    Missing fields take diffusers' defaults (the Wan2.1 VAE). Latent statistics that do not fit `z_dim` are
    replaced by mean 0 / std 1, with a `ConversionWarning`: diffusers writes its 16-entry defaults for any
    `z_dim` and never reads them. Missing statistics for a `z_dim` other than 16 are mean 0 / std 1 too."""
    name = json_value(d, "_class_name", "str", "AutoencoderKLWan")
    if name != "AutoencoderKLWan":
        raise CheckpointError(f"VAE config is for {name!r}, not AutoencoderKLWan: pass the Wan VAE's directory "
                              "(the 'vae' folder of a Wan diffusers export)")
    wan22 = [k for k in ("is_residual", "patch_size") if d.get(k)]
    if d.get("decoder_base_dim") not in (None, d.get("base_dim", 96)):
        wan22.append("decoder_base_dim")
    wan22 += [k for k in ("in_channels", "out_channels") if d.get(k, 3) != 3]
    if wan22:
        raise CheckpointError(f"VAE config sets Wan2.2-only options {wan22}: only the Wan2.1 VAE is supported; "
                              "use a Wan2.1 VAE checkpoint")
    z_dim = json_value(d, "z_dim", "int", 16)
    fields = dict(base_dim=json_value(d, "base_dim", "int", 96), z_dim=z_dim,
                  dim_mult=tuple(json_value(d, "dim_mult", "[int]", (1, 2, 4, 4))),
                  num_res_blocks=json_value(d, "num_res_blocks", "int", 2),
                  attn_scales=tuple(float(s) for s in json_value(d, "attn_scales", "[number]", ())),
                  temperal_downsample=tuple(json_value(d, "temperal_downsample", "[bool]", (False, True, True))))
    replaced = []
    for key, neutral in (("latents_mean", 0.0), ("latents_std", 1.0)):
        values = json_value(d, key, "[number]", None)
        if values is not None and len(values) != z_dim:
            replaced.append(f"{len(values)}-entry {key}")
            values = None
        if values is not None:
            fields[key] = tuple(float(v) for v in values)
        elif z_dim != 16 or replaced:  # no statistics for this latent width: leave latents unscaled
            fields[key] = (neutral,) * z_dim
    if replaced:
        warnings.warn(ConversionWarning(
            f"VAE config has z_dim = {z_dim} but {' and '.join(replaced)} (diffusers writes its 16-channel "
            f"defaults for any z_dim and never reads them): replaced by mean 0 / std 1 for the {z_dim} latent "
            "channels"), stacklevel=2)
    fields.update(overrides)
    try:
        return VAEConfig(**fields)
    except ConfigError as err:
        raise CheckpointError(f"VAE config.json is not a valid Wan2.1 VAE config: {err}") from err


def diffusers_name(path: tuple) -> str:
    """swapjax parameter path -> diffusers tensor name (e.g. ('encoder', 'conv_in', 'conv', 'kernel') ->
    'encoder.conv_in.weight')."""
    parts = [str(p) for p in path if p != "conv"]  # CausalConv3d wraps its Conv as `.conv`
    parts[-1] = {"kernel": "weight"}.get(parts[-1], parts[-1])
    if "resample" in parts:  # diffusers' resample is Sequential(pad|upsample, Conv2d): the conv is item 1
        parts.insert(parts.index("resample") + 1, "1")
    return ".".join(parts)


def original_name(name: str, cfg: VAEConfig) -> str:
    """diffusers tensor name -> original Wan2.1 tensor name."""
    parts = name.split(".")
    if parts[0] in _TOP_ORIGINAL:
        return ".".join([_TOP_ORIGINAL[parts[0]], *parts[1:]])
    side, rest = parts[0], parts[1:]
    if rest[0] in _PART_ORIGINAL:
        return ".".join([side, _PART_ORIGINAL[rest[0]], *rest[1:]])
    if rest[0] == "mid_block":  # resnets.0 -> middle.0, attentions.0 -> middle.1, resnets.1 -> middle.2
        index = 1 if rest[1] == "attentions" else 2 * int(rest[2])
        rest = ["middle", str(index), *rest[3:]]
    elif rest[0] == "down_blocks":
        rest = ["downsamples", *rest[1:]]
    elif rest[0] == "up_blocks":  # each level: num_res_blocks + 1 residual blocks then its upsampler, flat
        level, kind, j = int(rest[1]), rest[2], int(rest[3])
        index = level * (cfg.num_res_blocks + 2) + (j if kind == "resnets" else cfg.num_res_blocks + 1)
        rest = ["upsamples", str(index), *rest[4:]]
    if len(rest) >= 3 and rest[2] in _RESIDUAL_ORIGINAL:
        rest = [*rest[:2], _RESIDUAL_ORIGINAL[rest[2]], *rest[3:]]
    return ".".join([side, *rest])


def _to_swapjax_shape(shape: tuple[int, ...], ndim: int) -> tuple[int, ...]:
    """PyTorch tensor shape -> the shape it takes in swapjax layout (for a parameter of rank `ndim`)."""
    if len(shape) >= 3 and ndim == len(shape):  # conv weight [O, I, *window] -> [*window, I, O]
        return (*shape[2:], shape[1], shape[0])
    if ndim == 1 and len(shape) > 1 and all(s == 1 for s in shape[1:]):  # gamma [C, 1, 1(, 1)]
        return (shape[0],)
    return tuple(shape)


def _to_swapjax(array: np.ndarray, ndim: int) -> np.ndarray:
    if array.ndim >= 3 and ndim == array.ndim:
        return np.transpose(array, (*range(2, array.ndim), 1, 0))
    if ndim == 1:
        return array.reshape(array.shape[0])
    return array


def _detect_layout(names: list[str]) -> str:
    if any(n.startswith(("encoder.down_blocks.", "encoder.conv_in.")) for n in names):
        return "diffusers"
    if any(n.startswith(("encoder.downsamples.", "encoder.conv1.")) for n in names):
        return "original"
    raise CheckpointError(f"checkpoint holds no Wan VAE encoder tensors (first names: {names[:3]}): pass an "
                          "AutoencoderKLWan directory or a Wan2.1_VAE file")


def convert_vae(src: str | pathlib.Path, *, allow_pickle: bool = False,
                cfg: VAEConfig | None = None) -> tuple[VAEConfig, nnx.State]:
    """Reads a Wan2.1 VAE checkpoint (diffusers directory, or an original-layout `.pth` / `.safetensors`).

    The config comes from `cfg` if given, else from `config.json` in/next to `src`, else the Wan2.1
    defaults (`VAEConfig()`). Returns the config and an `nnx.State` for `WanVAE(cfg)` in `cfg.param_dtype`
    with numpy leaves (as `convert_dit`), carrying the logical-axis annotations. Raises `CheckpointError`
    listing every mismatched parameter when the checkpoint does not fit the config.
    """
    src = pathlib.Path(src)
    reader = TensorReader(src, allow_pickle=allow_pickle)
    source = "given config"
    if cfg is None:
        json_path = (src if src.is_dir() else src.parent) / "config.json"
        cfg = config_from_json(src, vae_config_from_diffusers) if json_path.is_file() else VAEConfig()
        source = "config.json" if json_path.is_file() else "Wan2.1 defaults (no config.json; pass cfg=)"
    layout = _detect_layout(reader.keys())

    abstract = abstract_vae(cfg)[1]
    flat = dict(nnx.to_flat_state(abstract))
    names = reference_names(cfg, layout, flat)
    found = {n: _to_swapjax_shape(s, len(flat[names[n]].shape)) if n in names else s
             for n, s in reader.shapes().items()}
    check_shapes({n: tuple(flat[p].shape) for n, p in names.items()}, found,
                 what=f"VAE checkpoint {str(src)!r} ({layout} layout, config from {source}; shapes in swapjax "
                      "channels-last layout)")

    dtype = np.dtype(DTYPES[cfg.param_dtype])
    values: dict[tuple, Any] = {}
    nonfinite = []
    for name, path in names.items():
        tensor = np.asarray(reader.get(name))
        if not is_finite(tensor):
            nonfinite.append(name)
        values[path] = np.asarray(_to_swapjax(tensor, len(flat[path].shape)), dtype=dtype)
    warn_nonfinite(nonfinite, f"VAE checkpoint {str(src)!r}")
    return cfg, _fill(abstract, values)


def _fill(abstract: nnx.State, values: dict[tuple, Any]) -> nnx.State:
    """Abstract state + {path: array} -> concrete state with the same Variable types and metadata."""
    pure: dict = {}
    for path, value in values.items():
        node = pure
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    nnx.replace_by_pure_dict(abstract, pure)
    return abstract


def reference_names(cfg: VAEConfig, layout: str = "diffusers", flat: dict | None = None) -> dict[str, tuple]:
    """{checkpoint tensor name: swapjax parameter path} for `cfg` in `layout` ("diffusers" or "original")."""
    if flat is None:
        flat = dict(nnx.to_flat_state(abstract_vae(cfg)[1]))
    out = {}
    for path in flat:
        name = diffusers_name(path)
        out[original_name(name, cfg) if layout == "original" else name] = path
    return out
