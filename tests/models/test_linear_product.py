"""The dense layers' product: forward and gradients equal `lax.dot_general` (both the CPU form with an explicit
transpose and the compiler-folded form), no gradient is formed for an input nobody differentiates, and `dense`
layers use it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from swapjax.models.layers import dense
from swapjax.models.linear_product import _weight_grad, _weight_grad_transposed, linear_product


def _plain(x, w):
    return lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())))


def _data(seed=0):
    ks = jax.random.split(jax.random.key(seed), 3)
    return (jax.random.normal(ks[0], (2, 5, 8)), jax.random.normal(ks[1], (8, 3)), jax.random.normal(ks[2], (2, 5, 3)))


def test_forward_and_gradients_equal_dot_general():
    x, w, dy = _data()
    out, vjp = jax.vjp(linear_product, x, w)
    want, want_vjp = jax.vjp(_plain, x, w)
    np.testing.assert_array_equal(out, want)
    for got, ref in zip(jax.jit(vjp)(dy), want_vjp(dy)):
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
    x2, dy2 = x.reshape(-1, 8), dy.reshape(-1, 3)
    np.testing.assert_allclose(jax.jit(_weight_grad_transposed)(x2, dy2), _weight_grad(x2, dy2), rtol=1e-6, atol=1e-6)


def test_no_gradient_is_formed_for_an_input_nobody_differentiates():
    """Gradient w.r.t. the weight only: one product (xᵀ·dy per platform form), no dy·wᵀ for the data input."""
    x, w, _ = _data(1)
    jaxpr = jax.make_jaxpr(jax.grad(lambda w: jnp.sum(linear_product(x, w))))(w).jaxpr

    def dots(jaxpr):
        n = sum(eqn.primitive.name == "dot_general" for eqn in jaxpr.eqns)
        for eqn in jaxpr.eqns:
            subs = [dots(s) for s in jax.extend.core.jaxprs_in_params(eqn.params)]
            n += max(subs, default=0) if eqn.primitive.name == "cond" else sum(subs)
        return n

    assert dots(jaxpr) == 2  # the forward product and the weight gradient


def test_dense_layers_use_it_with_unchanged_numbers():
    layer = dense(8, 3, ("embed", "mlp"), dtype="float32", param_dtype="float32", rngs=nnx.Rngs(0))
    plain = nnx.Linear(8, 3, rngs=nnx.Rngs(0))
    nnx.update(plain, nnx.state(layer))
    x, _, dy = _data(2)
    got = jax.vjp(lambda m, x: m(x), layer, x)
    want = jax.vjp(lambda m, x: m(x), plain, x)
    np.testing.assert_array_equal(got[0], want[0])
    (g_layer, g_x), (w_layer, w_x) = got[1](dy), want[1](dy)
    np.testing.assert_allclose(g_x, w_x, rtol=1e-6, atol=1e-6)
    for a, b in zip(jax.tree.leaves(nnx.state(g_layer)), jax.tree.leaves(nnx.state(w_layer))):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
