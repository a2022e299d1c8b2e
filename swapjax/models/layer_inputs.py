"""What one DiT layer may receive beyond its tokens, in a form where several contributions compose.

`WanBlock` reads a `LayerInputs` per layer (see `swapjax.models.dit_block`):

- `branches`: extra attention branches `(k', v', scale)` for the non-prefix queries; the block adds
  `scale · Attn(q, k', v')` of every branch to the self-attention output (before its output projection);
- `residual`: `[B, L, D]` added to the block input;
- `extra_tokens`: `[B, Le, D]` model-width tokens projected by the layer's own k/v (no RoPE) and appended to
  the keys the non-prefix queries read.

`combine` merges the inputs of several sources (e.g. several conditions of a swap model) so that none
overwrites another: branch tuples concatenate (their outputs add up), residuals add, extra tokens
concatenate on the token axis.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

Branch = tuple[jax.Array, jax.Array, jax.Array | float]  # keys, values [B, Tb, N, H]; scale (scalar, [B] or [B, T])


class LayerInputs(NamedTuple):
    """Optional per-layer inputs of a block (all empty = the plain block)."""

    branches: tuple[Branch, ...] = ()
    residual: Float[Array, "b l d"] | None = None
    extra_tokens: Float[Array, "b le d"] | None = None


def combine(parts: Sequence[LayerInputs]) -> LayerInputs:
    """Several sources' inputs for one layer as one: branches concatenated, residuals summed (in order), extra
    tokens concatenated on the token axis `[B, Le1 + Le2 + ..., D]`."""
    branches: tuple[Branch, ...] = ()
    residual = extra = None
    for part in parts:
        branches += tuple(part.branches)
        if part.residual is not None:
            residual = part.residual if residual is None else residual + part.residual  # [B, L, D]
        if part.extra_tokens is not None:
            extra = part.extra_tokens if extra is None else jnp.concatenate([extra, part.extra_tokens], axis=1)
    return LayerInputs(branches, residual, extra)
