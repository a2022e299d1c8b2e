"""The one attention function of swapjax, with the backends named by `DiTConfig.attention`.

Layout everywhere: `[B, T, N, H]` (batch, tokens, heads, head dim), softmax scale `1/sqrt(H)`, an optional
boolean mask broadcastable to `[B, N, Tq, Tk]` (True = attend). Backends:

- `"xla"`: runs everywhere. Up to `BLOCK_Q` queries: `jax.nn.dot_product_attention` lowered by XLA (the
  reference). Longer query sequences: the same numbers computed by `blocked_attention` (queries in blocks,
  a recomputing backward pass; no `[Tq, Tk]` score matrix is ever whole). Under a mesh, the blocked path runs
  per device on that device's queries against the gathered keys/values (`shard_map` with the rules' logical
  axes: queries on `length`, keys/values on `kv_length`), so sequence parallelism keeps its split.
- `"cudnn"`: the cuDNN fused kernel (CUDA GPUs only). cuDNN computes in fp16/bf16, so float32 inputs are
  cast to bfloat16 for the kernel and the result is cast back (bf16 tolerance).
- `"splash"`: Pallas splash attention, compiled on TPU and run in interpret mode on CPU (slow; for tests).
  Sequences are padded to the kernel's block size; padded keys are excluded through segment ids. Splash
  plans its work from the mask before tracing, so it takes only a static mask (numpy, known at trace time),
  given to the kernel as one `NumpyMask` per head (per sample and head when the mask differs per sample).

The swap model's one-way prefix rule needs no special call: its prefix stream runs alone and the video stream
reads the prefix's cached keys and values (docs/design.md, "The swap model"). The same rule as one sequence,
two calls or a dense mask, is test code (`tests/swap_reference.py`).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.pallas.ops.tpu import splash_attention as splash
from jax.sharding import AxisType
from jaxtyping import Array, Bool, Float

from swapjax.models.blocked_attention import BLOCK_Q, blocked_attention
from swapjax.parallel import logical_spec

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
    shape = None if mask is None else _mask_shape(mask, q.shape[0], q.shape[2], q.shape[1], k.shape[1])
    if backend == "xla":
        mask = None if mask is None else jnp.asarray(mask, dtype=bool).reshape(shape)
        if q.shape[1] <= BLOCK_Q:
            return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="xla")
        if mask is not None:  # the blocked path reads whole [Tq, Tk] planes
            mask = jnp.broadcast_to(mask, (*mask.shape[:2], q.shape[1], k.shape[1]))
        return per_shard(blocked_attention, q, k, v, mask)
    # The kernels are custom calls the compiler cannot partition: without a mask they run per device inside
    # shard_map like the blocked path (a sharded batch or sequence stays sharded instead of being gathered).
    if backend == "cudnn":
        if mask is None:
            return per_shard(lambda q, k, v, _: _cudnn(q, k, v, None), q, k, v, None)
        return _cudnn(q, k, v, jnp.asarray(mask, dtype=bool).reshape(shape))
    if backend == "splash":
        if mask is None:
            return per_shard(lambda q, k, v, _: _splash(q, k, v, None), q, k, v, None)
        return _splash(q, k, v, _static_mask(mask).reshape(shape))
    raise ValueError(f"attention backend {backend!r} is unknown: use one of {BACKENDS}")


def per_shard(fn, q: Float[Array, "b tq n h"], k: Float[Array, "b tk n h"], v: Float[Array, "b tk n h"],
              mask: Bool[Array, "bm nm tq tk"] | None) -> Float[Array, "b tq n h"]:
    """`fn(q, k, v, mask)` on each device's share of the queries with whole keys/values, under the current mesh.

    Specs come from the logical axes (q: batch, length, heads, kv; k/v: batch, kv_length, heads, kv; the mask
    `[B|1, N|1, Tq, Tk]` follows q), over the mesh's Auto axes. Without a mesh, or when a size does not
    divide its mesh axes, `fn` runs on the whole arrays (the compiler then places the work).
    """
    mesh = jax.sharding.get_abstract_mesh()
    kinds = () if mesh.empty else zip(mesh.axis_names, mesh.axis_types)
    auto = tuple(a for a, kind in kinds if kind == AxisType.Auto)
    if not auto:
        return fn(q, k, v, mask)
    spec = lambda names: logical_spec(names, mesh_axes=auto)  # noqa: E731
    args, specs = [q, k, v], [spec(_Q_AXES), spec(_KV_AXES), spec(_KV_AXES)]
    if mask is not None:
        args.append(mask)
        specs.append(spec(("batch" if mask.shape[0] > 1 else None, "heads" if mask.shape[1] > 1 else None,
                           "length", "kv_length")))
    if not all(_divides(x.shape, s, mesh) for x, s in zip(args, specs)):
        return fn(q, k, v, mask)
    local = (lambda q, k, v: fn(q, k, v, None)) if mask is None else fn
    return jax.shard_map(local, mesh=mesh, in_specs=tuple(specs), out_specs=specs[0], axis_names=set(auto),
                         check_vma=False)(*args)


_Q_AXES = ("batch", "length", "heads", "kv")
_KV_AXES = ("batch", "kv_length", "heads", "kv")


def _divides(shape: tuple[int, ...], spec: jax.sharding.PartitionSpec, mesh) -> bool:
    """Whether every dimension of `shape` splits evenly over the mesh axes `spec` gives it."""
    for size, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
        if size % math.prod(mesh.shape[a] for a in axes):
            return False
    return True


def _mask_shape(mask, b: int, n: int, tq: int, tk: int) -> tuple[int, int, int, int]:
    """The rank-4 shape of a boolean mask of rank <= 4, checked to broadcast to `[B, N, Tq, Tk]`."""
    if mask.ndim > 4:
        raise ValueError(f"attention mask has rank {mask.ndim}: it must broadcast to [B, N, Tq, Tk]")
    shape = (1,) * (4 - mask.ndim) + tuple(mask.shape)
    for got, want in zip(shape, (b, n, tq, tk)):
        if got not in (1, want):
            raise ValueError(f"attention mask shape {tuple(mask.shape)} does not broadcast to "
                             f"[B, N, Tq, Tk] = {(b, n, tq, tk)}")
    return shape


def _static_mask(mask) -> np.ndarray:
    """A mask known at trace time as a numpy bool array; a traced mask is refused (splash plans from it)."""
    try:
        return np.asarray(mask, dtype=bool)
    except jax.errors.TracerArrayConversionError:
        raise ValueError("attention backend 'splash' takes a static mask (a numpy array known when the function is "
                         "traced), but this mask is a traced array: build it with numpy outside jit (or close over "
                         "it), or use backend 'xla'") from None


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
    elif mask.shape[0] == 1:  # one mask for every sample: one NumpyMask per head, the kernel vmapped over batch
        kernel = make(splash.MultiHeadMask([splash.NumpyMask(m) for m in _pad_mask(mask, n, tq_pad, tk_pad)[0]]))
        out = jax.vmap(kernel, in_axes=(0, 0, 0, None))(q, k, v, segments)
    else:  # a mask per sample: batch folded into the head axis, one NumpyMask per (sample, head)
        masks = _pad_mask(mask, n, tq_pad, tk_pad).reshape(b * n, tq_pad, tk_pad)  # [B*N, Tq', Tk']
        kernel = make(splash.MultiHeadMask([splash.NumpyMask(m) for m in masks]))
        fold = lambda x: x.reshape(b * n, *x.shape[2:])  # [B*N, T', H]
        out = kernel(fold(q), fold(k), fold(v), segment_ids=segments).reshape(b, n, tq_pad, h)
    return out[:, :, :tq].transpose(0, 2, 1, 3)  # [B, Tq, N, H]


def _pad_mask(mask: np.ndarray, n: int, tq_pad: int, tk_pad: int) -> np.ndarray:
    """Static `[B|1, N|1, Tq, Tk]` mask -> `[B|1, N, Tq', Tk']`. Padded query rows attend everywhere (their output
    is dropped); padded key columns are cut by the segment ids."""
    mask = np.broadcast_to(mask, (mask.shape[0], n, *mask.shape[2:]))
    pad = ((0, 0), (0, 0), (0, tq_pad - mask.shape[2]), (0, tk_pad - mask.shape[3]))
    return np.pad(mask, pad, constant_values=True)
