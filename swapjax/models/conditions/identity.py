"""Identity token (DreamID-V): a global identity embedding as one extra token every video token attends to.

The module maps an identity embedding `[B, id_dim]` (e.g. an ArcFace feature of the reference face) to one
model-width token `[B, 1, D]` (Linear, then an affine LayerNorm so its scale matches the modulated tokens the
attention projections usually read), once per video. Each layer projects it with its own self-attention k/v
(`SelfAttention.token_kv`, no RoPE: the token has no place) and appends it to the keys the video queries read;
the reference prefix never reads it, so the reference K/V cache does not depend on it.

With no identity embedding the model is exactly the base model. With one, the extra key enters every video
query's softmax, so even a freshly initialised token changes the output slightly (unlike the zero-initialised
pose and point branches); fine-tuning is expected before it helps.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

from flax import nnx
from jaxtyping import Array, Float

from swapjax.models.conditions.base import Condition, VideoStream
from swapjax.errors import require
from swapjax.models.conditions.registry import register_condition, settings
from swapjax.models.dit_config import DiTConfig
from swapjax.models.layer_inputs import LayerInputs
from swapjax.models.layers import DTYPES, LayerNorm, dense
from swapjax.models.swap_config import SwapConfig


class IdentityInputs(NamedTuple):
    """The identity condition of one batch of videos."""

    embedding: Float[Array, "b e"]  # IdentitySettings.dim features per sample


@dataclasses.dataclass(frozen=True)
class IdentitySettings:
    """`SwapConfig.conditions["identity"]`: the width of the identity embedding (= the image encoder's)."""

    dim: int = 512

    def __post_init__(self):
        require(self.dim > 0, f"conditions.identity.dim ({self.dim}) must be positive")


@register_condition("identity")
class IdentityCondition(Condition):
    """Identity embedding `[B, id_dim]` -> one extra key/value token `[B, 1, D]` for every layer."""

    Settings = IdentitySettings

    batch_keys = ("reference_embedding",)

    @classmethod
    def inputs_from_batch(cls, batch, swap: SwapConfig) -> IdentityInputs:
        """The image encoder's embedding of the prepared reference (`LossConfig.encoder`, the same on both sides)."""
        return IdentityInputs(embedding=batch["reference_embedding"])

    def __init__(self, cfg: DiTConfig, swap: SwapConfig, *, rngs: nnx.Rngs):
        self.id_dim, self.dtype = settings(swap, "identity").dim, DTYPES[cfg.dtype]
        self.proj = dense(self.id_dim, cfg.inner_dim, ("text_embed", "embed"), dtype=cfg.dtype,
                          param_dtype=cfg.param_dtype, rngs=rngs)
        self.norm = LayerNorm(cfg.inner_dim, eps=cfg.eps, axis="embed", param_dtype=cfg.param_dtype)

    def prepare(self, inputs: IdentityInputs, video: VideoStream) -> Float[Array, "b 1 d"]:
        """The identity token `[B, 1, D]`."""
        if not isinstance(inputs, IdentityInputs):
            raise ValueError(f"the 'identity' condition takes IdentityInputs(embedding), got {type(inputs).__name__}")
        embedding = inputs.embedding
        if embedding.ndim != 2 or embedding.shape[-1] != self.id_dim:
            raise ValueError(f"identity embedding has shape {tuple(embedding.shape)}: expected [B, "
                             f"conditions.identity.dim = {self.id_dim}]")
        if embedding.shape[0] != video.batch:
            raise ValueError(f"identity embedding batch {embedding.shape[0]} differs from the video batch {video.batch}")
        token = self.norm(self.proj(embedding.astype(self.dtype)))  # [B, D]
        return token[:, None].astype(self.dtype)  # [B, 1, D]

    def layer_inputs(self, prepared: Float[Array, "b 1 d"], layer: Any, video: VideoStream) -> LayerInputs:
        """The same token `[B, 1, D]` as an extra key/value in every layer."""
        return LayerInputs(extra_tokens=prepared)
