"""Identity token (DreamID-V): a global identity embedding as one extra token every video token attends to.

`IdentityToken` maps an identity embedding `[B, id_dim]` (e.g. an ArcFace feature of the reference face) to
one model-width token `[B, 1, D]` (Linear, then an affine LayerNorm so its scale matches the modulated
tokens the attention projections usually read). Each layer projects it with its own self-attention k/v
(`WanBlock.self_attention(extra_tokens=...)`, no RoPE: the token has no place) and appends it to the keys the
video queries read; the reference prefix never reads it, so the reference K/V cache does not depend on it.

With no identity embedding the model is exactly the base model. With one, the extra key enters every video
query's softmax, so even a freshly initialised token changes the output slightly (unlike the zero-initialised
pose and point branches); fine-tuning is expected before it helps.
"""

from __future__ import annotations

from flax import nnx
from jaxtyping import Array, Float

from swapjax.models.layers import DTYPES, LayerNorm, dense


class IdentityToken(nnx.Module):
    """Identity embedding `[B, id_dim]` -> one token `[B, 1, D]`."""

    def __init__(self, id_dim: int, dim: int, *, eps: float, dtype: str, param_dtype: str, rngs: nnx.Rngs):
        self.id_dim, self.dtype = id_dim, DTYPES[dtype]
        self.proj = dense(id_dim, dim, ("text_embed", "embed"), dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.norm = LayerNorm(dim, eps=eps, axis="embed", param_dtype=param_dtype)

    def __call__(self, embedding: Float[Array, "b e"]) -> Float[Array, "b 1 d"]:
        if embedding.ndim != 2 or embedding.shape[-1] != self.id_dim:
            raise ValueError(f"identity embedding has shape {tuple(embedding.shape)}: expected [B, "
                             f"SwapConfig.identity_dim = {self.id_dim}]")
        token = self.norm(self.proj(embedding.astype(self.dtype)))  # [B, D]
        return token[:, None].astype(self.dtype)  # [B, 1, D]
