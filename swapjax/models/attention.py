"""The one attention function of swapjax, with the backends named by `DiTConfig.attention`.

Layout everywhere: `[B, T, N, H]` (batch, tokens, heads, head dim), softmax scale `1/sqrt(H)`, an optional
boolean mask broadcastable to `[B, N, Tq, Tk]` (True = attend). Backends:

- `"xla"`: `jax.nn.dot_product_attention` lowered by XLA; runs everywhere, the reference.
- `"cudnn"`: the cuDNN fused kernel (CUDA GPUs only). cuDNN computes in fp16/bf16, so float32 inputs are
  cast to bfloat16 for the kernel and the result is cast back (bf16 tolerance).
- `"splash"`: Pallas splash attention, compiled on TPU and run in interpret mode on CPU (slow; for tests).
  Sequences are padded to the kernel's block size; padded keys are excluded through segment ids.

`one_way_attention` is the reference-prefix pattern (a prefix that reads only itself, followed by tokens that
read everything) as two calls of `attention`, so it runs on every backend; `one_way_mask` is the same rule as a
dense boolean mask, for checking.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.pallas.ops.tpu import splash_attention as splash
from jaxtyping import Array, Bool, Float

BACKENDS = ("xla", "cudnn", "splash")
_SPLASH_MAX_BLOCK = 512
_SPLASH_LANES = 128


def attention(q: Float[Array, "b tq n h"], k: Float[Array, "b tk n h"], v: Float[Array, "b tk n h"], *,
              backend: str = "xla", mask: Bool[Array, "..."] | np.ndarray | None = None
              ) -> Float[Array, "b tq n h"]:
    """Softmax(q kᵀ / sqrt(H)) v per head. q `[B, Tq, N, H]`, k/v `[B, Tk, N, H]`, mask `[B|1, N|1, Tq, Tk]`."""
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"attention: q, k, v must be [B, T, N, H]; got shapes {q.shape}, {k.shape}, {v.shape}")
    if k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[2:] != k.shape[2:]:
        raise ValueError(f"attention: incompatible shapes q {q.shape}, k {k.shape}, v {v.shape}: need "
                         "q [B, Tq, N, H] and k, v [B, Tk, N, H]")
    if mask is not None:
        mask = _as_4d_mask(mask, q.shape[0], q.shape[2], q.shape[1], k.shape[1])
    if backend == "xla":
        return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="xla")
    if backend == "cudnn":
        return _cudnn(q, k, v, mask)
    if backend == "splash":
        return _splash(q, k, v, mask)
    raise ValueError(f"attention backend {backend!r} is unknown: use one of {BACKENDS}")


def one_way_attention(q: Float[Array, "b tq n h"], k: Float[Array, "b tk n h"], v: Float[Array, "b tk n h"],
                      prefix_len: int, *, backend: str = "xla") -> Float[Array, "b tq n h"]:
    """Queries `[:P]` attend to keys `[:P]` only; queries `[P:]` attend to all keys (P = `prefix_len`, static).

    Keys beyond the query length (e.g. extra tokens appended after the sequence) are therefore read by the
    non-prefix queries only. Equals `attention(q, k, v, mask=one_way_mask(P, Tq, Tk))`.
    """
    if not 0 < prefix_len < q.shape[1] or prefix_len > k.shape[1]:
        raise ValueError(f"one_way_attention: prefix_len ({prefix_len}) must lie in (0, Tq = {q.shape[1]}) and "
                         f"not exceed Tk = {k.shape[1]}")
    head = attention(q[:, :prefix_len], k[:, :prefix_len], v[:, :prefix_len], backend=backend)  # [B, P, N, H]
    tail = attention(q[:, prefix_len:], k, v, backend=backend)  # [B, Tq - P, N, H]
    return jnp.concatenate([head, tail], axis=1)  # [B, Tq, N, H]


def one_way_mask(prefix_len: int, tq: int, tk: int) -> np.ndarray:
    """Boolean `[Tq, Tk]` mask of `one_way_attention`: prefix rows see prefix columns, other rows see all."""
    mask = np.ones((tq, tk), bool)
    mask[:prefix_len, prefix_len:] = False
    return mask


def _as_4d_mask(mask, b: int, n: int, tq: int, tk: int) -> jax.Array:
    """Boolean mask of rank <= 4 -> rank 4, checked to broadcast to `[B, N, Tq, Tk]`."""
    if mask.ndim > 4:
        raise ValueError(f"attention mask has rank {mask.ndim}: it must broadcast to [B, N, Tq, Tk]")
    shape = (1,) * (4 - mask.ndim) + tuple(mask.shape)
    for got, want in zip(shape, (b, n, tq, tk)):
        if got not in (1, want):
            raise ValueError(f"attention mask shape {tuple(mask.shape)} does not broadcast to "
                             f"[B, N, Tq, Tk] = {(b, n, tq, tk)}")
    return jnp.asarray(mask, dtype=bool).reshape(shape)


def _cudnn(q, k, v, mask):
    if jax.default_backend() != "gpu":
        raise ValueError(f"attention backend 'cudnn' needs a CUDA GPU, but JAX runs on "
                         f"{jax.default_backend()!r}: set DiTConfig.attention to 'xla' (or 'splash' on TPU)")
    dtype = q.dtype
    kernel_dtype = dtype if dtype in (jnp.bfloat16, jnp.float16) else jnp.bfloat16
    out = jax.nn.dot_product_attention(q.astype(kernel_dtype), k.astype(kernel_dtype), v.astype(kernel_dtype),
                                       mask=mask, implementation="cudnn")
    return out.astype(dtype)


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def _block(t: int) -> int:
    """Splash block size for a sequence of length t: a lane multiple, at most 512."""
    return min(_SPLASH_MAX_BLOCK, _round_up(t, _SPLASH_LANES))


def _splash(q, k, v, mask):
    platform = jax.default_backend()
    if platform not in ("tpu", "cpu"):
        raise ValueError(f"attention backend 'splash' is a TPU kernel (interpreted on CPU for tests), but JAX "
                         f"runs on {platform!r}: set DiTConfig.attention to 'cudnn' or 'xla'")
    b, tq, n, h = q.shape
    tk = k.shape[1]
    bq, bkv = _block(tq), _block(tk)
    tq_pad, tk_pad = _round_up(tq, bq), _round_up(tk, bkv)
    sizes = splash.BlockSizes(block_q=bq, block_kv=bkv, block_kv_compute=bkv, block_q_dkv=bq,
                              block_kv_dkv=bkv, block_kv_dkv_compute=bkv, use_fused_bwd_kernel=True)
    make = functools.partial(splash.make_splash_mha, block_sizes=sizes, head_shards=1, q_seq_shards=1,
                             interpret=platform != "tpu")

    q = (q * jnp.asarray(1.0 / math.sqrt(h), q.dtype)).transpose(0, 2, 1, 3)  # [B, N, Tq, H]
    k, v = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # [B, N, Tk, H]
    q = jnp.pad(q, ((0, 0), (0, 0), (0, tq_pad - tq), (0, 0)))  # [B, N, Tq', H]
    k = jnp.pad(k, ((0, 0), (0, 0), (0, tk_pad - tk), (0, 0)))  # [B, N, Tk', H]
    v = jnp.pad(v, ((0, 0), (0, 0), (0, tk_pad - tk), (0, 0)))
    # Padded keys get their own segment, so no real query attends to them.
    segments = splash.SegmentIds(q=jnp.zeros((tq_pad,), jnp.int32),
                                 kv=(jnp.arange(tk_pad) >= tk).astype(jnp.int32))

    if mask is None:
        kernel = make(splash.MultiHeadMask([splash.FullMask((tq_pad, tk_pad))] * n))
        out = jax.vmap(kernel, in_axes=(0, 0, 0, None))(q, k, v, segments)
    else:
        # Padded query rows attend everywhere (their output is dropped); padded key columns are cut by segments.
        # A dynamic mask cannot be vmapped into the kernel, so batch is folded into the head axis instead.
        mask = jnp.broadcast_to(mask, (b, n, tq, tk))
        mask = jnp.pad(mask, ((0, 0), (0, 0), (0, tq_pad - tq), (0, tk_pad - tk)), constant_values=True)
        kernel = _dynamic_kernel(make, mask.reshape(b * n, tq_pad, tk_pad))  # mask [B*N, Tq', Tk']
        fold = lambda x: x.reshape(b * n, *x.shape[2:])  # [B*N, T', H]
        out = kernel(fold(q), fold(k), fold(v), segment_ids=segments).reshape(b, n, tq_pad, h)
    return out[:, :, :tq].transpose(0, 2, 1, 3)  # [B, Tq, N, H]


def _dynamic_kernel(make, mask: jax.Array):
    """Splash kernel for a traced mask.

    `make_splash_mha` maps `jnp.array` over its mask info, which turns the Python flag `is_dynamic_mask` into
    an array; under `jit` that flag is then a tracer the kernel cannot branch on. Put the Python bool back.
    """
    kernel = make(mask)
    fix = lambda info: None if info is None else info._replace(is_dynamic_mask=True)
    kernel.fwd_mask_info = fix(kernel.fwd_mask_info)
    kernel.dq_mask_info = fix(kernel.dq_mask_info)
    kernel.dkv_mask_info = fix(kernel.dkv_mask_info)
    return kernel
