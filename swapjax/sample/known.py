"""Known-latent reuse (ours, off by default; docs/design.md, "Our choices"): latent cells far from the mask are
not the model's to change, so after every sampler step they are set to the source's latents at the step's noise
level, on the sample's own noise. At the last step (sigma = 0) they are the source's latents exactly, and the
video before the composite keeps what the VAE alone reconstructs there; the cells near the mask and inside it
stay the model's.

    keep = keep_cells(mask, margin, frames_per_latent=4, pixels_per_latent=8)    # [1, f, h, w, 1], once per window
    x = reuse_known(x, z_source, noise, keep, sigma_next)                        # after each step, inside the jit
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Array, Float

from swapjax.models.fused_inputs import pack_mask


def keep_cells(mask: Float[ArrayLike, "b F H W"], margin: int, *, frames_per_latent: int, pixels_per_latent: int
               ) -> Float[Array, "b f h w 1"]:
    """1 for latent cells whose pixels (every frame the cell covers) are all outside the mask and that lie more
    than `margin` cells (in time, height and width) from any cell that is not; 0 elsewhere."""
    known = pack_mask(mask, frames_per_latent=frames_per_latent, pixels_per_latent=pixels_per_latent)  # [b,f,h,w,t]
    cells = known.min(axis=-1)  # [b, f, h, w]: 1 = every pixel of the cell is known
    if margin > 0:
        window = (1, 2 * margin + 1, 2 * margin + 1, 2 * margin + 1)
        cells = jax.lax.reduce_window(cells, 1.0, jax.lax.min, window, (1, 1, 1, 1), "SAME")  # erode the known
    return cells[..., None]


def reuse_known(x: Float[Array, "b f h w z"], source: Float[Array, "b f h w z"], noise: Float[Array, "b f h w z"],
                keep: Float[Array, "b f h w 1"], sigma: Float[ArrayLike, ""]) -> Float[Array, "b f h w z"]:
    """`x` with its kept cells replaced by the source latents noised to `sigma` on the sample's first noise
    (the flow path `(1 - sigma) z + sigma eps` that sampling starts from at sigma = 1)."""
    on_path = (1.0 - sigma) * source + sigma * noise
    return keep * on_path + (1.0 - keep) * x
