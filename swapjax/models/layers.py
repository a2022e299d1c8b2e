"""Small building blocks shared by the DiT: dense layers with logical axes, fp32 norms, feed-forward.

Every parameter is created through `swapjax.parallel.sharded_init`, so it carries logical axis names.
Norms compute in float32 whatever the compute dtype (as diffusers' `FP32LayerNorm` and Wan do) and hand
back float32; callers cast to their compute dtype where the reference does.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence, Union

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from swapjax.models.linear_product import linear_dot_general
from swapjax.parallel import constrain, sharded_init

# A model's parameters as the functional API takes them: an `nnx.State`, or its pure dict
# (`nnx.to_pure_dict`, what training's `TrainState.params` and the checkpoints hold); `nnx.merge` reads both.
ModelState = Union[nnx.State, Mapping[str, Any]]

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def dense(din: int, dout: int, axes: Sequence[str | None], *, dtype: str, param_dtype: str,
          rngs: nnx.Rngs, zero: bool = False) -> nnx.Linear:
    """`nnx.Linear` `[din] -> [dout]` whose kernel has logical axes `axes` and bias `axes[1]`.

    Initialisation follows Wan: Xavier-uniform kernels, zero biases; `zero=True` zeroes the kernel too (output
    heads of a model trained from scratch). The product is `linear_product` (same numbers; a weight gradient
    laid out for the CPU's matmul library).
    """
    kernel_init = nnx.initializers.zeros_init() if zero else nnx.initializers.xavier_uniform()
    return nnx.Linear(din, dout, dtype=DTYPES[dtype], param_dtype=DTYPES[param_dtype],
                      kernel_init=sharded_init(kernel_init, axes),
                      bias_init=sharded_init(nnx.initializers.zeros_init(), (axes[1],)), dot_general=linear_dot_general,
                      rngs=rngs)


def layer_norm(x: Float[Array, "... d"], scale: jax.Array | None = None, bias: jax.Array | None = None,
               eps: float = 1e-6) -> Float[Array, "... d"]:
    """LayerNorm over the last axis in float32 (two-pass variance, as torch), optional affine."""
    x = x.astype(jnp.float32)
    mean = jnp.mean(x, axis=-1, keepdims=True)
    centred = x - mean
    var = jnp.mean(jnp.square(centred), axis=-1, keepdims=True)
    y = centred * jax.lax.rsqrt(var + eps)
    if scale is not None:
        y = y * scale.astype(jnp.float32)
    if bias is not None:
        y = y + bias.astype(jnp.float32)
    return y


class LayerNorm(nnx.Module):
    """Affine LayerNorm with float32 math; parameters `scale`, `bias` of shape `[dim]` on logical axis `axis`."""

    def __init__(self, dim: int, *, eps: float, axis: str, param_dtype: str):
        self.eps = eps
        self.scale = nnx.Param(sharded_init(nnx.initializers.ones_init(), (axis,))(None, (dim,),
                                                                                    DTYPES[param_dtype]))
        self.bias = nnx.Param(sharded_init(nnx.initializers.zeros_init(), (axis,))(None, (dim,),
                                                                                   DTYPES[param_dtype]))

    def __call__(self, x: Float[Array, "... d"]) -> Float[Array, "... d"]:
        return layer_norm(x, self.scale[...], self.bias[...], self.eps)


class RMSNorm(nnx.Module):
    """RMSNorm over the last axis (`x / sqrt(mean(x²) + eps) · γ`) in float32, cast back to the input dtype."""

    def __init__(self, dim: int, *, eps: float, axis: str, param_dtype: str):
        self.eps = eps
        self.scale = nnx.Param(sharded_init(nnx.initializers.ones_init(), (axis,))(None, (dim,),
                                                                                    DTYPES[param_dtype]))

    def __call__(self, x: Float[Array, "... d"]) -> Float[Array, "... d"]:
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
        return (y * self.scale[...].astype(jnp.float32)).astype(x.dtype)


class FeedForward(nnx.Module):
    """`fc2(act(fc1(x)))`: `[.., din] -> [.., hidden] -> [.., dout]`; `approximate` picks GELU-tanh vs exact.

    `hidden_axes`: logical axes of the hidden activation, one per dimension (e.g. `("batch", "length", "mlp")`),
    to pin its sharding (see `swapjax.parallel.constrain`); None leaves it to the compiler.
    """

    def __init__(self, din: int, hidden: int, dout: int, *, approximate: bool,
                 axes_in: tuple[str, str], axes_out: tuple[str, str], dtype: str, param_dtype: str,
                 rngs: nnx.Rngs, hidden_axes: tuple[str, ...] | None = None):
        self.approximate, self.hidden_axes = approximate, hidden_axes
        self.fc1 = dense(din, hidden, axes_in, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.fc2 = dense(hidden, dout, axes_out, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: Float[Array, "... din"]) -> Float[Array, "... dout"]:
        h = jax.nn.gelu(self.fc1(x), approximate=self.approximate)  # [.., hidden]
        return self.fc2(h if self.hidden_axes is None else constrain(h, self.hidden_axes))
