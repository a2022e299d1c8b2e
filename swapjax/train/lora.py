"""Low-rank adapters (LoRA) on the DiT's attention and FFN projections, in parameter space.

A targeted kernel `W [.., d_in, d_out]` (stacked blocks carry a leading `layers` axis) gets two adapter
matrices `A [.., d_in, r]` and `B [.., r, d_out]`; the model runs with `W + (alpha / r) · A @ B`. `A` starts
random (scaled by 1/sqrt(d_in)), `B` at zero, so training starts at the base model. The base stays frozen;
only `A` and `B` are trained. Merging (`merge_lora`) is the same sum, so the exported model is exactly the
adapted one and needs no adapter code to run.

Adapting in parameter space keeps the model code untouched (any module with a kernel can be targeted) at the
cost of forming `A @ B` once per step per target (`d_in · d_out · r` multiply-adds per layer, independent of
the number of tokens), which is small next to the forward pass of a video batch.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
from flax import traverse_util
from jax.sharding import NamedSharding, PartitionSpec

from swapjax.train.state import path_name


def lora_targets(model_params: Mapping, targets: tuple[str, ...]) -> list[tuple]:
    """Key paths of the kernels adapted: `<target>/kernel` for every target suffix (e.g. "self_attn/q")."""
    flat = traverse_util.flatten_dict(model_params)
    found = [k for k in flat if k[-1] == "kernel" and any(path_name(k[:-1]).endswith(t) for t in targets)
             and len(flat[k].shape) >= 2]
    if not found:
        raise ValueError(f"TrainConfig.lora_targets {targets} match no kernel of the model: use path suffixes such "
                         "as 'self_attn/q' or 'ffn/fc1'")
    return sorted(found, key=path_name)


def init_lora(key: jax.Array, model_params: Mapping, targets: tuple[str, ...], rank: int) -> dict:
    """`{<kernel path>: {"a": [.., d_in, r], "b": [.., r, d_out]}}` (nested like the model params)."""
    flat = traverse_util.flatten_dict(model_params)
    out = {}
    for i, path in enumerate(lora_targets(model_params, targets)):
        w = flat[path]
        *lead, din, dout = w.shape
        a = jax.random.normal(jax.random.fold_in(key, i), (*lead, din, rank), jnp.float32) / din ** 0.5
        out[path[:-1]] = {"a": a.astype(w.dtype), "b": jnp.zeros((*lead, rank, dout), w.dtype)}
    return traverse_util.unflatten_dict({(*p, k): v for p, ab in out.items() for k, v in ab.items()})


def merge_lora(model_params: Mapping, lora: Mapping, scale: float) -> dict:
    """The model params with every adapted kernel replaced by `W + scale · A @ B` (`scale = alpha / rank`)."""
    if not lora:
        return dict(model_params)
    flat = traverse_util.flatten_dict(model_params)
    adapters = traverse_util.flatten_dict(lora)
    for path in {p[:-1] for p in adapters}:
        a, b = adapters[(*path, "a")], adapters[(*path, "b")]
        w = flat[(*path, "kernel")]
        delta = jnp.einsum("...ir,...ro->...io", a.astype(jnp.float32), b.astype(jnp.float32))  # [.., d_in, d_out]
        flat[(*path, "kernel")] = (w.astype(jnp.float32) + scale * delta).astype(w.dtype)
    return traverse_util.unflatten_dict(flat)


def lora_shardings(lora: Mapping, model_shardings: Mapping) -> dict:
    """Adapters sharded like their kernel: `A` keeps the kernel's input-axis sharding, `B` its output-axis one,
    the rank axis replicated. `lora` may be abstract (shapes only)."""
    shard = traverse_util.flatten_dict(model_shardings)
    out = {}
    for path, leaf in traverse_util.flatten_dict(lora).items():
        kernel = shard[(*path[:-1], "kernel")]
        spec = tuple(kernel.spec) + (None,) * (len(leaf.shape) - len(kernel.spec))
        lead, din, dout = spec[:-2], spec[-2], spec[-1]
        new = (*lead, din, None) if path[-1] == "a" else (*lead, None, dout)
        out[path] = NamedSharding(kernel.mesh, PartitionSpec(*new))
    return traverse_util.unflatten_dict(out)
