"""XLA compiler options for swapjax's jitted steps: `jax.jit(step, compiler_options=compiler_options())`.

On XLA:CPU, only single dot products go to the YNNPACK library; reductions and elementwise fusions stay with
XLA's own emitters. The library's reductions over the token axis (the gradients of per-sample modulation
vectors and of biases) made the DiT training step about 10 % slower on 2 cores (README, "Performance").
Other backends get no options. An option this jaxlib does not know is dropped, never an error.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


def compiler_options(backend: str | None = None) -> dict[str, str]:
    """Options for `jax.jit(..., compiler_options=...)` on `backend` (default: JAX's default backend)."""
    backend = backend or jax.default_backend()
    return dict(_CPU_OPTIONS) if backend == "cpu" and _cpu_options_known() else {}


@functools.cache
def _cpu_options_known() -> bool:
    """Whether this jaxlib's CPU compiler accepts `_CPU_OPTIONS` (checked once, on a one-element program)."""
    try:
        x = jax.device_put(jnp.zeros(1), jax.devices("cpu")[0])
        jax.jit(lambda x: x + 1, compiler_options=_CPU_OPTIONS).lower(x).compile()
    except jax.errors.JaxRuntimeError:
        return False
    return True
