"""Logical axis vocabulary, the one rules table mapping it to mesh axes, and sharding helpers.

Modules annotate parameters with *logical* axis names only (via `sharded_init`); mesh axes appear nowhere
but in `LOGICAL_AXIS_RULES`. Mesh axes: `data, fsdp, tensor, sequence`.

Logical axes:
  batch, frames, height, width, length (tokens), embed (model width), heads (attention inner dim),
  kv (per-head dim), mlp (FFN hidden), text_len, text_embed (text/image encoder widths), in_channels,
  conv_in / conv_out (VAE channels), kernel (conv taps), layers (scan axis), vocab-free norms use `embed`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
from flax import nnx

MESH_AXES = ("data", "fsdp", "tensor", "sequence")

# logical axis -> mesh axis (or tuple of mesh axes, or None = replicated). First match wins.
LOGICAL_AXIS_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", "sequence"),
    ("frames", None),
    ("height", None),
    ("width", None),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("mlp", "tensor"),
    ("kv", None),
    ("text_len", None),
    ("text_embed", None),
    ("in_channels", None),
    ("conv_in", None),
    ("conv_out", None),
    ("kernel", None),
    ("layers", None),
)


def sharded_init(initializer: Callable, axes: Sequence[str | None]) -> Callable:
    """Wraps an initializer so the created `nnx.Param` carries logical axis names (one per dimension).

    Variables are not placed at creation (`eager_sharding=False`): models are built abstractly with
    `nnx.eval_shape` and placed by `jax.jit(..., out_shardings=...)` (see `state_shardings`).
    """
    return nnx.with_partitioning(initializer, tuple(axes), eager_sharding=False)


def logical_specs(state: Any, rules: Sequence[tuple[str, Any]] = LOGICAL_AXIS_RULES) -> Any:
    """`nnx.State` of Variables -> same tree of mesh `PartitionSpec`s, via the rules table."""
    with nnx.logical_axis_rules(tuple(rules)):
        return nnx.get_partition_spec(state)


def state_shardings(state: Any, mesh: jax.sharding.Mesh,
                    rules: Sequence[tuple[str, Any]] = LOGICAL_AXIS_RULES) -> Any:
    """`nnx.State` -> same tree of `NamedSharding`s on `mesh`."""
    specs = logical_specs(state, rules)
    return jax.tree.map(lambda p: jax.sharding.NamedSharding(mesh, p), specs,
                        is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
