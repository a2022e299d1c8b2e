"""CLIP vision checkpoints (transformers `CLIPVisionModel` or `CLIPVisionModelWithProjection`, the `image_encoder/`
of a Wan I2V diffusers export) -> `(ClipVisionConfig, nnx.State)` for `swapjax.models.clip_vision.ClipVision`.

Names, with or without a `vision_model.` prefix (transformers 4 writes it, transformers 5 writes the bare
`CLIPVisionModel` without it): `embeddings.class_embedding`, `embeddings.patch_embedding.weight` (Conv2d, no bias),
`embeddings.position_embedding.weight`, `pre_layrnorm.{weight,bias}`, `encoder.layers.{i}.self_attn.{q,k,v,out}_proj
.{weight,bias}`, `encoder.layers.{i}.layer_norm{1,2}.{weight,bias}`, `encoder.layers.{i}.mlp.fc{1,2}.{weight,bias}`,
`post_layernorm.{weight,bias}`. `visual_projection.weight` (the pooled-embedding head) is not used by Wan's image
tokens and is skipped. Tensors stream one at a time (`convert/table.py`).
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

from flax import nnx

from swapjax.convert.checkpoint_io import TensorReader, config_from_json, json_value
from swapjax.errors import CheckpointError
from swapjax.convert.table import Entry, fill_state
from swapjax.models.clip_vision import abstract_clip_vision
from swapjax.models.clip_vision_config import ClipVisionConfig

PREFIX = "vision_model."
IGNORED = ("visual_projection.weight",)
_ATTN = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "out_proj"}


def clip_vision_config_from_json(d: dict[str, Any], **overrides: Any) -> ClipVisionConfig:
    """transformers `CLIPVisionConfig` config.json dict (or a full `CLIPConfig` with `vision_config`) ->
    `ClipVisionConfig` (execution fields and `feature_layer` from `overrides`)."""
    if isinstance(d.get("vision_config"), dict):
        d = d["vision_config"]
    model_type = json_value(d, "model_type", "str", "clip_vision_model")
    if model_type not in ("clip_vision_model", "clip"):
        raise CheckpointError(f"image encoder config has model_type = {model_type!r}, not a CLIP vision model: pass "
                              "the image_encoder folder of a Wan I2V export")
    fields = dict(hidden_size=json_value(d, "hidden_size", "int"),
                  intermediate_size=json_value(d, "intermediate_size", "int"),
                  num_layers=json_value(d, "num_hidden_layers", "int"),
                  num_heads=json_value(d, "num_attention_heads", "int"),
                  image_size=json_value(d, "image_size", "int", 224), patch_size=json_value(d, "patch_size", "int", 32),
                  num_channels=json_value(d, "num_channels", "int", 3),
                  layer_norm_eps=float(json_value(d, "layer_norm_eps", "number", 1e-5)),
                  hidden_act=json_value(d, "hidden_act", "str", "quick_gelu"))
    return ClipVisionConfig(**{**fields, **overrides})


def clip_vision_config_to_json(cfg: ClipVisionConfig) -> dict[str, Any]:
    """`ClipVisionConfig` -> a transformers `CLIPVisionConfig` dict (`CLIPVisionConfig(**d)` builds the same tower)."""
    return {"model_type": "clip_vision_model", "hidden_size": cfg.hidden_size,
            "intermediate_size": cfg.intermediate_size, "num_hidden_layers": cfg.num_layers,
            "num_attention_heads": cfg.num_heads, "image_size": cfg.image_size, "patch_size": cfg.patch_size,
            "num_channels": cfg.num_channels, "layer_norm_eps": cfg.layer_norm_eps, "hidden_act": cfg.hidden_act}


def _norm(name: str, path: tuple[str, ...], layer: int | None = None) -> list[Entry]:
    return [Entry(f"{name}.weight", (*path, "scale"), layer, "vector"),
            Entry(f"{name}.bias", (*path, "bias"), layer, "vector")]


def _linear(name: str, path: tuple[str, ...], layer: int) -> list[Entry]:
    return [Entry(f"{name}.weight", (*path, "kernel"), layer, "linear"),
            Entry(f"{name}.bias", (*path, "bias"), layer, "vector")]


def param_table(cfg: ClipVisionConfig, prefix: str = "") -> list[Entry]:
    """Every parameter of `ClipVision(cfg)` with its transformers name (`prefix` + the bare model's name)."""
    e = f"{prefix}embeddings"
    t = [Entry(f"{e}.class_embedding", ("class_embed",), None, "vector"),
         Entry(f"{e}.patch_embedding.weight", ("patch_kernel",), None, "patch"),
         Entry(f"{e}.position_embedding.weight", ("position_embed",), None, "vector")]
    t += _norm(f"{prefix}pre_layrnorm", ("pre_norm",)) + _norm(f"{prefix}post_layernorm", ("post_norm",))
    for i in range(cfg.num_layers):
        layer, b = f"{prefix}encoder.layers.{i}", ("blocks",)
        for ours, theirs in _ATTN.items():
            t += _linear(f"{layer}.self_attn.{theirs}", (*b, ours), i)
        t += _norm(f"{layer}.layer_norm1", (*b, "norm1"), i) + _norm(f"{layer}.layer_norm2", (*b, "norm2"), i)
        t += _linear(f"{layer}.mlp.fc1", (*b, "fc1"), i) + _linear(f"{layer}.mlp.fc2", (*b, "fc2"), i)
    return t


def convert_clip_vision(src: str | pathlib.Path, *, cfg: ClipVisionConfig | None = None, dtype: str | None = None
                        ) -> tuple[ClipVisionConfig, nnx.State]:
    """Reads a transformers CLIP vision folder into `(ClipVisionConfig, state)` with numpy leaves.

    `cfg` overrides the folder's config.json; `dtype` sets the parameter dtype (default: the config's)."""
    reader = TensorReader(src)
    if cfg is None:
        cfg = config_from_json(src, clip_vision_config_from_json)
    if dtype is not None:
        cfg = dataclasses.replace(cfg, param_dtype=dtype)
    prefix = PREFIX if any(k.startswith(PREFIX) for k in reader.keys()) else ""
    _, state = abstract_clip_vision(cfg)
    state = fill_state(reader, param_table(cfg, prefix), state, what=f"CLIP image encoder {str(src)!r}",
                       param_dtype=cfg.param_dtype, ignored=IGNORED)
    return cfg, state
