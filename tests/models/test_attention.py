"""The attention function: xla against a plain einsum reference, splash (interpret mode) against xla, masks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from swapjax.models.attention import attention
from helpers import qkv


def _reference(q, k, v, mask=None):
    """Textbook softmax attention in float64 numpy; mask broadcast to [B, N, Tq, Tk]."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    logits = np.einsum("bqnh,bknh->bnqk", q, k) / np.sqrt(q.shape[-1])
    if mask is not None:
        logits = np.where(np.asarray(mask), logits, -np.inf)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    return np.einsum("bnqk,bknh->bqnh", w, v)


def test_xla_matches_reference_and_scales_by_inverse_sqrt_head_dim():
    q, k, v = qkv(2, 10, 7, 3, 8)
    np.testing.assert_allclose(attention(q, k, v, backend="xla"), _reference(q, k, v), atol=1e-5)


@pytest.mark.parametrize("mask_shape", [(10, 7), (2, 1, 10, 7), (2, 3, 10, 7)])
def test_xla_boolean_mask(mask_shape):
    q, k, v = qkv(2, 10, 7, 3, 8, seed=1)
    mask = np.random.default_rng(0).random(mask_shape) < 0.6
    mask[..., 0] = True  # no fully masked row
    out = attention(q, k, v, backend="xla", mask=jnp.asarray(mask))
    np.testing.assert_allclose(out, _reference(q, k, v, np.broadcast_to(mask, (2, 3, 10, 7))), atol=1e-5)
    # a key masked out for every query has no influence on the output
    mask[..., 3] = False
    out = attention(q, k, v, backend="xla", mask=jnp.asarray(mask))
    np.testing.assert_allclose(attention(q, k, v.at[:, 3].add(100.0), backend="xla", mask=jnp.asarray(mask)), out,
                               atol=1e-5)


def test_splash_equals_xla_unaligned_lengths():
    """Lengths that are not block multiples (padding + segment ids), Tq != Tk, several heads, and gradients."""
    q, k, v = qkv(2, 100, 70, 2, 16, seed=2)
    ref = attention(q, k, v, backend="xla")
    out = jax.jit(lambda q, k, v: attention(q, k, v, backend="splash"))(q, k, v)
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=0)

    loss = lambda backend: lambda q, k, v: jnp.sum(jnp.sin(attention(q, k, v, backend=backend)))
    g_ref = jax.grad(loss("xla"), argnums=(0, 1, 2))(q, k, v)
    g_out = jax.jit(jax.grad(loss("splash"), argnums=(0, 1, 2)))(q, k, v)
    for a, b in zip(g_out, g_ref):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=0)


def test_splash_equals_xla_with_per_batch_mask():
    """A static (numpy) mask that differs per sample: splash builds one NumpyMask per (sample, head)."""
    q, k, v = qkv(2, 40, 150, 2, 16, seed=3)
    mask = np.random.default_rng(1).random((2, 1, 40, 150)) < 0.5
    mask[..., 0] = True
    ref = attention(q, k, v, backend="xla", mask=mask)
    out = jax.jit(lambda q, k, v: attention(q, k, v, backend="splash", mask=mask))(q, k, v)
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=0)


def test_splash_refuses_a_traced_mask():
    """Splash plans its blocks from the mask before tracing: a mask only known inside jit gets a clear error (xla
    takes it)."""
    q, k, v = qkv(1, 8, 8, 1, 8, seed=4)
    mask = jnp.asarray(np.tril(np.ones((8, 8), bool)))
    with pytest.raises(ValueError, match="'splash' takes a static mask .* traced array: build it with numpy"):
        jax.jit(lambda q, k, v, m: attention(q, k, v, backend="splash", mask=m))(q, k, v, mask)
    out = jax.jit(lambda q, k, v, m: attention(q, k, v, backend="xla", mask=m))(q, k, v, mask)
    np.testing.assert_allclose(out, _reference(q, k, v, np.asarray(mask)), atol=1e-5)


def test_backend_errors(unchecked):
    q, k, v = qkv(1, 4, 4, 1, 8)
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        attention(q, k, v, backend="cudnn")
    with pytest.raises(ValueError, match="unknown"):
        attention(q, k, v, backend="flash")
    with pytest.raises(ValueError, match="does not broadcast"):
        attention(q, k, v, mask=jnp.ones((4, 5), bool))
    with pytest.raises(ValueError, match=r"\[B, T, N, H\]"):
        attention(q[0], k[0], v[0])


def test_splash_under_a_mesh_runs_per_device_and_equals_one_device(monkeypatch):
    """Splash is a custom call the compiler cannot partition: under a mesh it runs inside shard_map on each
    device's batch / query / head share (with every key), instead of on gathered whole arrays."""
    from swapjax.models import attention as attention_lib
    from swapjax.parallel import LOGICAL_AXIS_RULES, MeshConfig, logical_spec, make_mesh

    mesh = make_mesh(MeshConfig(data=2, fsdp=1, tensor=2, sequence=2), jax.devices()[:8])
    q, k, v = qkv(2, 40, 40, 2, 8, seed=5)
    shapes = []
    kernel = attention_lib._splash
    monkeypatch.setattr(attention_lib, "_splash", lambda q, k, v, m: shapes.append(q.shape) or kernel(q, k, v, m))
    sharding = jax.sharding.NamedSharding(mesh, logical_spec(("batch", "length", "heads", "kv"), LOGICAL_AXIS_RULES))
    with jax.set_mesh(mesh):
        got = jax.jit(lambda q, k, v: attention(q, k, v, backend="splash"))(
            *(jax.device_put(x, sharding) for x in (q, k, v)))
    assert shapes == [(1, 20, 1, 8)]  # batch / data, queries / sequence, heads / tensor
    np.testing.assert_allclose(np.asarray(got), np.asarray(_reference(q, k, v)), atol=2e-5)
