"""umT5 text encoder checkpoints (transformers `UMT5EncoderModel`, the `text_encoder/` of a Wan diffusers export)
-> `(UMT5Config, nnx.State)` for `swapjax.models.umt5.UMT5Encoder`.

The folder holds `config.json` and one or several `*.safetensors` shards (with `model.safetensors.index.json`);
tensors are streamed one at a time (`convert/table.py`). Names: `shared.weight` (the token table, tied to
`encoder.embed_tokens.weight`: either or both may be saved), `encoder.block.{i}.layer.0.SelfAttention.{q,k,v,o}
.weight`, `...SelfAttention.relative_attention_bias.weight` (every layer: umT5), `...layer.0.layer_norm.weight`,
`encoder.block.{i}.layer.1.DenseReluDense.{wi_0,wi_1,wo}.weight`, `...layer.1.layer_norm.weight`,
`encoder.final_layer_norm.weight`.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

from flax import nnx

from swapjax.convert.checkpoint_io import TensorReader, config_from_json, json_value
from swapjax.errors import CheckpointError
from swapjax.convert.table import Entry, fill_state
from swapjax.models.umt5 import abstract_umt5
from swapjax.models.umt5_config import UMT5Config

EMBED, TIED_EMBED = "shared.weight", "encoder.embed_tokens.weight"


def umt5_config_from_json(d: dict[str, Any], **overrides: Any) -> UMT5Config:
    """transformers `UMT5Config` config.json dict -> `UMT5Config` (execution fields from `overrides`)."""
    model_type = json_value(d, "model_type", "str", "umt5")
    if model_type != "umt5":
        raise CheckpointError(f"text encoder config has model_type = {model_type!r}, not 'umt5' (T5 shares one "
                              "position bias across layers, umT5 has one per layer): pass the umT5 text_encoder "
                              "folder of a Wan export")
    proj = json_value(d, "feed_forward_proj", "str", "gated-gelu")
    gated, _, act = proj.partition("-")
    if gated != "gated" or not act:
        raise CheckpointError(f"text encoder config has feed_forward_proj = {proj!r}: only gated FFNs "
                              "('gated-gelu', as umT5 has) are supported")
    fields = dict(vocab_size=json_value(d, "vocab_size", "int"), d_model=json_value(d, "d_model", "int"),
                  d_kv=json_value(d, "d_kv", "int"), num_heads=json_value(d, "num_heads", "int"),
                  d_ff=json_value(d, "d_ff", "int"), num_layers=json_value(d, "num_layers", "int"),
                  relative_attention_num_buckets=json_value(d, "relative_attention_num_buckets", "int", 32),
                  relative_attention_max_distance=json_value(d, "relative_attention_max_distance", "int", 128),
                  layer_norm_epsilon=float(json_value(d, "layer_norm_epsilon", "number", 1e-6)),
                  activation="gelu_new" if act == "gelu" else act)  # transformers maps gated-gelu to gelu_new
    return UMT5Config(**{**fields, **overrides})


def umt5_config_to_json(cfg: UMT5Config) -> dict[str, Any]:
    """`UMT5Config` -> a transformers `UMT5Config` dict (`UMT5Config(**d)` builds the same encoder)."""
    act = "gelu" if cfg.activation == "gelu_new" else cfg.activation
    return {"model_type": "umt5", "vocab_size": cfg.vocab_size, "d_model": cfg.d_model, "d_kv": cfg.d_kv,
            "num_heads": cfg.num_heads, "d_ff": cfg.d_ff, "num_layers": cfg.num_layers,
            "relative_attention_num_buckets": cfg.relative_attention_num_buckets,
            "relative_attention_max_distance": cfg.relative_attention_max_distance,
            "layer_norm_epsilon": cfg.layer_norm_epsilon, "feed_forward_proj": f"gated-{act}"}


def param_table(cfg: UMT5Config) -> list[Entry]:
    """Every parameter of `UMT5Encoder(cfg)` with its transformers name."""
    t = [Entry(EMBED, ("embed",), None, "vector"),
         Entry("encoder.final_layer_norm.weight", ("final_norm",), None, "vector")]
    for i in range(cfg.num_layers):
        attn, ffn, b = f"encoder.block.{i}.layer.0", f"encoder.block.{i}.layer.1", ("blocks",)
        t += [Entry(f"{attn}.SelfAttention.{n}.weight", (*b, n, "kernel"), i, "linear") for n in "qkvo"]
        t += [Entry(f"{attn}.SelfAttention.relative_attention_bias.weight", (*b, "position_bias"), i, "vector"),
              Entry(f"{attn}.layer_norm.weight", (*b, "attn_norm"), i, "vector"),
              Entry(f"{ffn}.layer_norm.weight", (*b, "ffn_norm"), i, "vector")]
        t += [Entry(f"{ffn}.DenseReluDense.{n}.weight", (*b, n, "kernel"), i, "linear") for n in ("wi_0", "wi_1", "wo")]
    return t


def convert_umt5(src: str | pathlib.Path, *, cfg: UMT5Config | None = None, dtype: str | None = None
                 ) -> tuple[UMT5Config, nnx.State]:
    """Reads a transformers `UMT5EncoderModel` folder into `(UMT5Config, state)` with numpy leaves.

    `cfg` overrides the folder's config.json; `dtype` sets the parameter dtype (default: the config's)."""
    reader = TensorReader(src)
    if cfg is None:
        cfg = config_from_json(src, umt5_config_from_json)
    if dtype is not None:
        cfg = dataclasses.replace(cfg, param_dtype=dtype)
    _, state = abstract_umt5(cfg)
    state = fill_state(reader, param_table(cfg), state, what=f"umT5 text encoder {str(src)!r}",
                       param_dtype=cfg.param_dtype, aliases={EMBED: TIED_EMBED})
    return cfg, state
