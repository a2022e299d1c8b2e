"""XLA compiler options of the jitted steps: on the CPU only dot products go to YNNPACK (reductions stay with XLA);
other backends get none; the numbers do not change."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np

from swapjax.compile_options import compiler_options


def _reduce_and_dot(x, w):
    return jnp.sum(x * x, axis=0), x @ w  # a reduction over the token axis, one product


def test_cpu_options_keep_reductions_with_xla_and_dots_with_the_library():
    x = jax.random.normal(jax.random.key(0), (1024, 256))
    w = jax.random.normal(jax.random.key(1), (256, 64))
    assert compiler_options("gpu") == {} and compiler_options("tpu") == {}
    options = compiler_options("cpu")
    assert options, "this jaxlib's CPU compiler should accept the YNN fusion option"
    default = jax.jit(_reduce_and_dot).lower(x, w).compile()
    tuned = jax.jit(_reduce_and_dot, compiler_options=options).lower(x, w).compile()
    library = lambda c: re.findall(r"calls=%(\S+?),.*__ynn_fusion", c.as_text())  # noqa: E731
    assert len(library(tuned)) == 1 < len(library(default))  # only the dot is left to the library
    for got, want in zip(tuned(x, w), default(x, w)):
        np.testing.assert_allclose(got, want, rtol=1e-6)
