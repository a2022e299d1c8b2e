"""The product of a dense layer, `x @ W`, with a backward pass that forms the weight gradient in the layout the
CPU runs fastest (see docs/design.md, "Attention on the CPU and at scale").

The weight gradient `dW = xᵀ · dy` contracts `x [M, Din]` over its outer (token) dimension. XLA:CPU runs such
a product outside its fast matmul library (YNNPACK takes only left operands contracted on their inner
dimension), about 35 % slower; here `xᵀ` is laid out explicitly first (an optimization barrier keeps the
compiler from folding the transpose back into the product), which costs one copy of `x` and makes the
product a plain one. Other platforms keep the transpose folded (`lax.platform_dependent`, decided when the
step is lowered, so an ahead-of-time compile for TPU on a CPU host gets the TPU form). Forward numbers and
gradients are those of `lax.dot_general`; a gradient nobody asks for (the input of a layer reading data) is
not formed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero


def linear_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None, **kwargs):
    """A `dot_general` for `nnx.Linear(dot_general=...)`: the layer's product `[.., Din] x [Din, Dout]` goes
    through `linear_product`; any other contraction (or extra keyword) goes to `lax.dot_general` unchanged."""
    linear = (((lhs.ndim - 1,), (0,)), ((), ()))
    if (dimension_numbers != linear or rhs.ndim != 2 or precision is not None or preferred_element_type is not None
            or any(v is not None for v in kwargs.values())):
        return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                               preferred_element_type=preferred_element_type, **kwargs)
    return linear_product(lhs, rhs)


@jax.custom_vjp
def linear_product(x: jax.Array, w: jax.Array) -> jax.Array:
    """`x [.., Din] @ w [Din, Dout] -> [.., Dout]`."""
    return _product(x, w)


def _product(x, w):
    return lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())))  # [.., Dout]


def _fwd(x, w):
    # symbolic zeros: keep only what a needed gradient reads (w for dx, x for dw)
    out = _product(x.value, w.value)
    return out, (x.value if w.perturbed else None, w.value if x.perturbed else None)


def _bwd(residuals, dy):
    x, w = residuals
    if isinstance(dy, SymbolicZero):
        return None, None
    dx = None if w is None else lax.dot_general(dy, w, (((dy.ndim - 1,), (1,)), ((), ())))  # [.., Din]
    dw = None
    if x is not None:
        x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])  # [M, Din], [M, Dout]
        dw = lax.platform_dependent(x2, dy2, cpu=_weight_grad_transposed, default=_weight_grad)
    return dx, dw


def _weight_grad(x, dy):
    """`xᵀ · dy` with the transpose left to the compiler: `[M, Din], [M, Dout] -> [Din, Dout]`."""
    return jnp.einsum("mi,mo->io", x, dy)


def _weight_grad_transposed(x, dy):
    """`xᵀ · dy` from an explicitly transposed `x` (a plain product for XLA:CPU's matmul library)."""
    return lax.dot_general(lax.optimization_barrier(x.T), dy, (((1,), (0,)), ((), ())))  # [Din, Dout]


linear_product.defvjp(_fwd, _bwd, symbolic_zeros=True)
