"""Query-blocked attention (the `xla` backend for long query sequences) equals `jax.nn.dot_product_attention`,
forward and gradient, with and without masks; `attention()` picks it above `BLOCK_Q` queries; under a mesh it
runs per device on that device's queries with gathered keys/values (8 fake CPU devices) and equals one device."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import swapjax.models.attention as attention_module
from swapjax.models.attention import attention, per_shard
from swapjax.models.blocked_attention import blocked_attention
from swapjax.parallel import MeshConfig, logical_spec, make_mesh
from helpers import assert_rel_close, qkv

TOL = 1e-6  # max |Δ| relative to max |reference|


def _reference(q, k, v, mask=None):
    return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="xla")


def _out_and_grads(fn):
    """Jitted `(q, k, v) -> (fn(q, k, v), gradients of sum(sin(fn)))` (a cotangent that differs per element)."""

    @jax.jit
    def run(q, k, v):
        out, vjp = jax.vjp(fn, q, k, v)
        return out, vjp(jnp.cos(out))

    return run


def _assert_close(got, want, what):
    assert_rel_close(got, want, TOL, what)


def _check(got, want):
    """(output, (dq, dk, dv)) pairs agree."""
    _assert_close(got[0], want[0], "output")
    for name, g, w in zip("qkv", got[1], want[1]):
        _assert_close(g, w, f"d{name}")


def _check_against_reference(q, k, v, mask, block_q):
    got = _out_and_grads(lambda q, k, v: blocked_attention(q, k, v, mask, block_q=block_q))(q, k, v)
    _check(got, _out_and_grads(lambda q, k, v: _reference(q, k, v, mask))(q, k, v))


# (B, Tq, Tk, N, H, block_q): padded query rows and Tk < Tq; one block larger than Tq; blocks dividing Tq
@pytest.mark.parametrize("shape", [(2, 37, 23, 3, 8, 8), (2, 50, 70, 2, 16, 64), (1, 96, 20, 1, 32, 40)])
def test_equals_reference_forward_and_gradient(shape):
    *dims, block_q = shape
    _check_against_reference(*qkv(*dims, seed=sum(shape)), None, block_q)


@pytest.mark.parametrize("mask_shape", [(2, 1, 37, 23), (1, 3, 37, 23)])
def test_equals_reference_with_masks_including_a_fully_masked_row(mask_shape):
    """Masked logits take jax's large negative value, so a fully masked row averages every value there as here;
    its logits are constants, so no gradient reaches q or k through it."""
    q, k, v = qkv(2, 37, 23, 3, 8, seed=5)
    mask = np.random.default_rng(0).random(mask_shape) < 0.5
    mask[..., 4, :] = False
    _check_against_reference(q, k, v, jnp.asarray(mask), 8)


def test_attention_uses_the_blocked_path_above_block_q_and_matches_the_reference(monkeypatch):
    """`attention(backend="xla")` goes through `blocked_attention` exactly when Tq > BLOCK_Q (small BLOCK_Q here,
    so the shapes stay tiny), for broadcast masks too, with unchanged numbers."""
    calls = []

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return blocked_attention(*args, block_q=8, **kwargs)

    monkeypatch.setattr(attention_module, "BLOCK_Q", 16)
    monkeypatch.setattr(attention_module, "blocked_attention", counted)
    q, k, v = qkv(2, 40, 30, 2, 8, seed=6)
    mask = np.random.default_rng(1).random((30,)) < 0.7  # a key mask, broadcast over queries
    both = jax.jit(lambda q, k, v: (attention(q, k, v), attention(q, k, v, mask=mask)))
    got, want = both(q, k, v), jax.jit(lambda q, k, v: (_reference(q, k, v), _reference(q, k, v, mask)))(q, k, v)
    _assert_close(got[0], want[0], "no mask")
    _assert_close(got[1], want[1], "key mask")
    assert calls == [(2, 40, 2, 8), (2, 40, 2, 8)]
    jax.eval_shape(lambda q, k, v: attention(q[:, :16], k, v), q, k, v)  # Tq = BLOCK_Q: the reference formulation
    assert len(calls) == 2


@pytest.mark.parametrize("mesh_config", [MeshConfig(data=1, fsdp=1, tensor=1, sequence=8),
                                         MeshConfig(data=2, fsdp=1, tensor=2, sequence=2)])
def test_sequence_parallel_runs_per_device_and_equals_one_device(mesh_config):
    """Under a mesh the blocked path runs inside `shard_map`: each device sees its share of the queries (split
    over `sequence`, batch over `data`, heads over `tensor`) and every key; outputs and gradients equal the
    unsharded reference."""
    mesh = make_mesh(mesh_config)
    q, k, v = qkv(2, 48, 48, 2, 8, seed=7)
    mask = jnp.asarray(np.random.default_rng(2).random((2, 1, 48, 48)) < 0.8)
    local_shapes = []

    def recorded(q, k, v, mask):
        local_shapes.append((q.shape, k.shape, None if mask is None else mask.shape))
        return blocked_attention(q, k, v, mask, block_q=4)

    q_sharding = jax.sharding.NamedSharding(mesh, logical_spec(("batch", "length", "heads", "kv")))
    with jax.set_mesh(mesh):
        q_s, k_s, v_s = (jax.device_put(x, q_sharding) for x in (q, k, v))
        got = {m is None: _out_and_grads(lambda q, k, v: per_shard(recorded, q, k, v, m))(q_s, k_s, v_s)
               for m in (None, mask)}
    for m in (None, mask):
        _check(got[m is None], _out_and_grads(lambda q, k, v: _reference(q, k, v, m))(q, k, v))
    b, seq, heads = 2 // mesh_config.data, 48 // mesh_config.sequence, 2 // mesh_config.tensor
    assert set(local_shapes) == {((b, seq, heads, 8), (b, 48, heads, 8), None),
                                 ((b, seq, heads, 8), (b, 48, heads, 8), (b, 1, seq, 48))}


def test_sizes_that_do_not_divide_the_mesh_fall_back_to_whole_arrays():
    """A query length the `sequence` axis does not divide: no shard_map (the compiler places the work), same
    numbers."""
    mesh = make_mesh(MeshConfig(data=1, sequence=8))
    q, k, v = qkv(1, 20, 20, 2, 8, seed=8)
    seen = []

    def recorded(q, k, v, mask):
        seen.append(q.shape)
        return blocked_attention(q, k, v, mask, block_q=8)

    with jax.set_mesh(mesh):
        out = jax.jit(lambda q, k, v: per_shard(recorded, q, k, v, None))(q, k, v)
    _assert_close(out, _reference(q, k, v), "output")
    assert seen == [(1, 20, 2, 8)]
