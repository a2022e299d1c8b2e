"""Wan2.1 transformer checkpoints (diffusers or original layout) -> `(DiTConfig, nnx.State)` for `WanDiT`.

Two key layouts are read: diffusers' `WanTransformer3DModel` (`blocks.0.attn1.to_q.weight`, ...) and the
original Wan2.1 release (`blocks.0.self_attn.q.weight`, `head.head.weight`, `img_emb.proj.1.weight`, ...,
optionally under a `model.diffusion_model.` prefix). One table (`param_table`) names every parameter in
both layouts and says where it goes in the swapjax state and how its layout changes:

- `linear`: torch `[out, in]` -> kernel `[in, out]`;
- `conv`:   torch Conv3d `[D, C, pt, ph, pw]` -> `[pt, ph, pw, C, D]`;
- `table`:  modulation `[1, k, D]` -> `[k, D]`;
- `vector`: unchanged (biases, norm weights).

Conversion streams: the abstract state (`nnx.eval_shape`) fixes every target shape; all checkpoint shapes are
checked against it first (one `CheckpointError` listing every mismatch); then each tensor is read once and
written into a preallocated numpy array (the per-layer tensors into their slot of the stacked `layers` array),
so peak memory is one copy of the model plus one tensor.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, NamedTuple

import numpy as np
from flax import nnx

from swapjax.models.dit_config import DiTConfig
from swapjax.convert.checkpoint_io import TensorReader, check_shapes, config_from_json, is_finite, json_value, warn_nonfinite
from swapjax.errors import CheckpointError
from swapjax.models.dit import abstract_dit
from swapjax.models.layers import DTYPES

DIFFUSERS_CLASS = "WanTransformer3DModel"
ORIGINAL_CLASS = "WanModel"
ORIGINAL_PREFIX = "model.diffusion_model."
# Keys a diffusers checkpoint may carry that no Wan2.1 model uses (diffusers ignores them as well).
IGNORED_KEYS = ("norm_added_q",)


class Entry(NamedTuple):
    """One checkpoint tensor: its names in both layouts, its swapjax path, layer slot and layout change."""

    diffusers: str
    original: str
    path: tuple[str, ...]
    layer: int | None
    kind: str  # linear | conv | table | vector


def _linear(d: str, o: str, path: tuple[str, ...], layer: int | None = None) -> list[Entry]:
    return [Entry(f"{d}.weight", f"{o}.weight", (*path, "kernel"), layer, "linear"),
            Entry(f"{d}.bias", f"{o}.bias", (*path, "bias"), layer, "vector")]


def _norm(d: str, o: str, path: tuple[str, ...], layer: int | None = None, bias: bool = False) -> list[Entry]:
    out = [Entry(f"{d}.weight", f"{o}.weight", (*path, "scale"), layer, "vector")]
    if bias:
        out.append(Entry(f"{d}.bias", f"{o}.bias", (*path, "bias"), layer, "vector"))
    return out


def param_table(cfg: DiTConfig) -> list[Entry]:
    """Every parameter of `WanDiT(cfg)` with its diffusers and original checkpoint names."""
    ce = "condition_embedder"
    t = [Entry("patch_embedding.weight", "patch_embedding.weight", ("patch_embed", "kernel"), None, "conv"),
         Entry("patch_embedding.bias", "patch_embedding.bias", ("patch_embed", "bias"), None, "vector")]
    t += _linear(f"{ce}.time_embedder.linear_1", "time_embedding.0", ("time_embed", "linear_1"))
    t += _linear(f"{ce}.time_embedder.linear_2", "time_embedding.2", ("time_embed", "linear_2"))
    t += _linear(f"{ce}.time_proj", "time_projection.1", ("time_embed", "proj"))
    t += _linear(f"{ce}.text_embedder.linear_1", "text_embedding.0", ("text_embed", "mlp", "fc1"))
    t += _linear(f"{ce}.text_embedder.linear_2", "text_embedding.2", ("text_embed", "mlp", "fc2"))
    if cfg.is_i2v:
        ie = f"{ce}.image_embedder"
        t += _norm(f"{ie}.norm1", "img_emb.proj.0", ("image_embed", "norm_in"), bias=True)
        t += _linear(f"{ie}.ff.net.0.proj", "img_emb.proj.1", ("image_embed", "mlp", "fc1"))
        t += _linear(f"{ie}.ff.net.2", "img_emb.proj.3", ("image_embed", "mlp", "fc2"))
        t += _norm(f"{ie}.norm2", "img_emb.proj.4", ("image_embed", "norm_out"), bias=True)
    for i in range(cfg.num_layers):
        d, o, b = f"blocks.{i}", f"blocks.{i}", ("blocks",)
        t.append(Entry(f"{d}.scale_shift_table", f"{o}.modulation", (*b, "modulation"), i, "table"))
        for dattn, oattn, attn in (("attn1", "self_attn", "self_attn"), ("attn2", "cross_attn", "cross_attn")):
            for dn, on in (("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "o")):
                t += _linear(f"{d}.{dattn}.{dn}", f"{o}.{oattn}.{on}", (*b, attn, on), i)
            t += _norm(f"{d}.{dattn}.norm_q", f"{o}.{oattn}.norm_q", (*b, attn, "norm_q"), i)
            t += _norm(f"{d}.{dattn}.norm_k", f"{o}.{oattn}.norm_k", (*b, attn, "norm_k"), i)
        if cfg.is_i2v:
            t += _linear(f"{d}.attn2.add_k_proj", f"{o}.cross_attn.k_img", (*b, "cross_attn", "k_img"), i)
            t += _linear(f"{d}.attn2.add_v_proj", f"{o}.cross_attn.v_img", (*b, "cross_attn", "v_img"), i)
            t += _norm(f"{d}.attn2.norm_added_k", f"{o}.cross_attn.norm_k_img", (*b, "cross_attn", "norm_k_img"), i)
        if cfg.cross_attn_norm:  # the cross-attention norm is `norm2` in diffusers, `norm3` in the original
            t += _norm(f"{d}.norm2", f"{o}.norm3", (*b, "cross_norm"), i, bias=True)
        t += _linear(f"{d}.ffn.net.0.proj", f"{o}.ffn.0", (*b, "ffn", "fc1"), i)
        t += _linear(f"{d}.ffn.net.2", f"{o}.ffn.2", (*b, "ffn", "fc2"), i)
    t.append(Entry("scale_shift_table", "head.modulation", ("head_modulation",), None, "table"))
    t += _linear("proj_out", "head.head", ("proj_out",))
    return t


# --------------------------------------------------------------------------------------- layout changes
def to_swapjax(tensor: np.ndarray, kind: str) -> np.ndarray:
    """Checkpoint tensor -> swapjax layout (see module docstring)."""
    if kind == "linear":
        return tensor.T
    if kind == "conv":
        return tensor.transpose(2, 3, 4, 1, 0)
    if kind == "table":
        return tensor.reshape(tensor.shape[1:])
    return tensor


def checkpoint_shape(shape: tuple[int, ...], kind: str) -> tuple[int, ...]:
    """The checkpoint-side shape of a swapjax parameter of `shape` (inverse of `to_swapjax`)."""
    if kind == "linear":
        return (shape[1], shape[0])
    if kind == "conv":
        return (shape[4], shape[3], shape[0], shape[1], shape[2])
    if kind == "table":
        return (1, *shape)
    return tuple(shape)


# ------------------------------------------------------------------------------------------- configs
def dit_config_from_diffusers(d: dict[str, Any], **overrides: Any) -> DiTConfig:
    """diffusers `WanTransformer3DModel` config.json dict -> `DiTConfig` (execution fields from `overrides`).

    Raises `CheckpointError` for a missing key or a value of the wrong type, `ConfigError` for values the
    config refuses."""
    if d.get("pos_embed_seq_len") is not None:
        raise CheckpointError(f"config has pos_embed_seq_len = {d['pos_embed_seq_len']} (Wan2.1 FLF2V), which "
                              "swapjax does not support: use a T2V or I2V checkpoint")
    in_channels = json_value(d, "in_channels", "int")
    fields = dict(patch_size=tuple(json_value(d, "patch_size", "[int]", (1, 2, 2))),
                  num_heads=json_value(d, "num_attention_heads", "int"),
                  head_dim=json_value(d, "attention_head_dim", "int"), in_channels=in_channels,
                  out_channels=json_value(d, "out_channels", "int", in_channels),
                  text_dim=json_value(d, "text_dim", "int"), freq_dim=json_value(d, "freq_dim", "int"),
                  ffn_dim=json_value(d, "ffn_dim", "int"), num_layers=json_value(d, "num_layers", "int"),
                  cross_attn_norm=json_value(d, "cross_attn_norm", "bool", True),
                  eps=float(json_value(d, "eps", "number", 1e-6)), image_dim=json_value(d, "image_dim", "int", None),
                  added_kv_proj_dim=json_value(d, "added_kv_proj_dim", "int", None))
    return DiTConfig(**{**fields, **overrides})


def dit_config_to_diffusers(cfg: DiTConfig) -> dict[str, Any]:
    """`DiTConfig` -> diffusers `WanTransformer3DModel` config dict (loadable with `from_config`)."""
    return {"_class_name": DIFFUSERS_CLASS, "patch_size": list(cfg.patch_size),
            "num_attention_heads": cfg.num_heads, "attention_head_dim": cfg.head_dim,
            "in_channels": cfg.in_channels, "out_channels": cfg.out_channels, "text_dim": cfg.text_dim,
            "freq_dim": cfg.freq_dim, "ffn_dim": cfg.ffn_dim, "num_layers": cfg.num_layers,
            "cross_attn_norm": cfg.cross_attn_norm, "qk_norm": "rms_norm_across_heads", "eps": cfg.eps,
            "image_dim": cfg.image_dim, "added_kv_proj_dim": cfg.added_kv_proj_dim,
            "rope_max_seq_len": 1024, "pos_embed_seq_len": None}


def dit_config_from_original(d: dict[str, Any], **overrides: Any) -> DiTConfig:
    """Original Wan2.1 `WanModel` config.json dict (`dim`, `num_heads`, `model_type`, ...) -> `DiTConfig`."""
    model_type = json_value(d, "model_type", "str", "t2v")
    if model_type not in ("t2v", "i2v"):
        raise CheckpointError(f"original Wan config has model_type = {model_type!r}; swapjax supports 't2v' and "
                              "'i2v' checkpoints")
    dim, heads = json_value(d, "dim", "int"), json_value(d, "num_heads", "int")
    if heads <= 0 or dim % heads:
        raise CheckpointError(f"original Wan config has dim = {dim} and num_heads = {heads}: dim must be a "
                              "positive multiple of num_heads; use the config.json that came with the checkpoint")
    i2v = model_type == "i2v"
    fields = dict(patch_size=tuple(json_value(d, "patch_size", "[int]", (1, 2, 2))), num_heads=heads,
                  head_dim=dim // heads, in_channels=json_value(d, "in_dim", "int"),
                  out_channels=json_value(d, "out_dim", "int"), text_dim=json_value(d, "text_dim", "int", 4096),
                  freq_dim=json_value(d, "freq_dim", "int"), ffn_dim=json_value(d, "ffn_dim", "int"),
                  num_layers=json_value(d, "num_layers", "int"),
                  cross_attn_norm=json_value(d, "cross_attn_norm", "bool", True),
                  eps=float(json_value(d, "eps", "number", 1e-6)),
                  image_dim=1280 if i2v else None, added_kv_proj_dim=dim if i2v else None)
    return DiTConfig(**{**fields, **overrides})


def dit_config_from_json(d: dict[str, Any], **overrides: Any) -> DiTConfig:
    """Either config.json flavour (diffusers or original) -> `DiTConfig`."""
    if d.get("_class_name") == DIFFUSERS_CLASS or "num_attention_heads" in d:
        return dit_config_from_diffusers(d, **overrides)
    if d.get("_class_name") == ORIGINAL_CLASS or "dim" in d:
        return dit_config_from_original(d, **overrides)
    raise CheckpointError(f"config.json has _class_name = {d.get('_class_name')!r}, not a Wan transformer "
                          f"({DIFFUSERS_CLASS} or {ORIGINAL_CLASS}): pass the transformer directory")


# ------------------------------------------------------------------------------------------ conversion
def _checkpoint_names(reader: TensorReader, table: list[Entry]) -> tuple[str, dict[str, str]]:
    """Detects the key layout; returns it and {table name -> raw checkpoint key} for the keys present."""
    raw = {k[len(ORIGINAL_PREFIX):] if k.startswith(ORIGINAL_PREFIX) else k: k for k in reader.keys()
           if not any(part in k for part in IGNORED_KEYS)}
    hits = {layout: sum(getattr(e, layout) in raw for e in table) for layout in ("diffusers", "original")}
    layout = "original" if hits["original"] > hits["diffusers"] else "diffusers"
    return layout, raw


def convert_dit(src: str | pathlib.Path, *, cfg: DiTConfig | None = None, dtype: str | None = None,
                allow_pickle: bool = False) -> tuple[DiTConfig, nnx.State]:
    """Reads a Wan2.1 transformer checkpoint into `(DiTConfig, state)` for `WanDiT`.

    `src`: a diffusers transformer directory (config.json + safetensors shards), an original Wan2.1 directory
    or file. `cfg`: overrides the config.json (required when there is none). `dtype`: parameter dtype of
    the result (default: the config's `param_dtype`). Leaves of the returned state are numpy arrays.
    """
    reader = TensorReader(src, allow_pickle=allow_pickle)
    if cfg is None:
        cfg = config_from_json(src, dit_config_from_json)
    if dtype is not None:
        cfg = dataclasses.replace(cfg, param_dtype=dtype)
    _, state = abstract_dit(cfg)
    table = param_table(cfg)
    targets = dict(nnx.to_flat_state(state))
    if set(targets) != {e.path for e in table}:  # the table and the model must describe the same parameters
        raise CheckpointError(f"internal: converter table and WanDiT disagree on {set(targets) ^ {e.path for e in table}}")

    layout, raw = _checkpoint_names(reader, table)
    shapes = reader.shapes()
    found = {name: shapes[key] for name, key in raw.items()}
    expected = {}
    for e in table:
        shape = targets[e.path].shape[1:] if e.layer is not None else targets[e.path].shape
        expected[getattr(e, layout)] = checkpoint_shape(tuple(shape), e.kind)
    check_shapes(expected, found, what=f"Wan transformer checkpoint {str(src)!r} ({layout} layout)")

    np_dtype = np.dtype(DTYPES[cfg.param_dtype])
    buffers = {path: np.empty(var.shape, np_dtype) for path, var in targets.items()}
    nonfinite = []
    for e in table:  # one tensor in memory at a time
        tensor = np.asarray(reader.get(raw[getattr(e, layout)]))
        if not is_finite(tensor):
            nonfinite.append(raw[getattr(e, layout)])
        value = to_swapjax(tensor, e.kind).astype(np_dtype)
        if e.layer is None:
            buffers[e.path][...] = value
        else:
            buffers[e.path][e.layer] = value
    warn_nonfinite(nonfinite, f"Wan transformer checkpoint {str(src)!r}")
    for path, var in targets.items():
        var.set_value(buffers[path])
    return cfg, state
