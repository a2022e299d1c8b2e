"""The reference slot's frame: the prepared reference square (`swapjax.data.reference.prepare_reference`) set
into a frame of the video's size, which the VAE encodes as the prefix latent `z_r`.

Training's batch preparation (`swapjax.train.prepare.encode_batch`, under jit) and the sampler
(`swapjax.sample.pipeline.reference_frame`, on the host) both call `fit_reference`, so the two sides encode the
same numbers for the same square.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Array, Float


def fit_reference(reference: Float[ArrayLike, "b s s 3"], height: int, width: int) -> Float[Array, "b h w 3"]:
    """A square reference `[B, S, S, 3]` in [-1, 1] resized (linear) to the largest square inside
    `(height, width)` and centred on a neutral (0) canvas -> `[B, H, W, 3]`, one frame of the video's size.
    The sampler hands it a numpy square, training a traced one."""
    reference = jnp.asarray(reference)
    side = min(height, width)
    b = reference.shape[0]
    if reference.shape[1:3] != (side, side):
        reference = jax.image.resize(reference.astype(jnp.float32), (b, side, side, 3), method="linear")
    top, left = (height - side) // 2, (width - side) // 2
    return jnp.pad(reference, ((0, 0), (top, height - side - top), (left, width - side - left), (0, 0)))
