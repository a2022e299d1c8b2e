"""Activation functions of the encoders, by the names transformers' config files use (`hidden_act`,
`dense_act_fn`), so a converted config names its activation exactly as its checkpoint does."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

ACTIVATION_FNS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # exact (erf)
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),  # tanh approximation
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),  # OpenAI CLIP
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The activation called `name` (one of `ACTIVATION_FNS`)."""
    return ACTIVATION_FNS[name]


def rms_scale(x: jax.Array, eps: float) -> jax.Array:
    """`x / sqrt(mean(x^2) + eps)` over the last axis, in float32 (T5's norm: no mean subtraction)."""
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)
