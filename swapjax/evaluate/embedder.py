"""Embedders for `swapjax.metrics.embedding_similarity`: any NNX image encoder of the registry
(`swapjax.models.image_encoder.IMAGE_ENCODERS`) as a numpy callable, and the identity (face) encoder loaded from
public insightface IResNet weights the user supplies.

    embed = identity_embedder("backbone.safetensors")   # uint8 [N, H, W, 3] -> float32 [N, E]
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from swapjax.metrics import Embedder
from swapjax.models.image_encoder import encode_images

BATCH = 16  # images per encoder call; the last batch is padded, so one compiled program serves every call


def encoder_embedder(encoder: nnx.Module) -> Embedder:
    """uint8 images `[N, H, W, 3]` -> float32 embeddings `[N, E]` through `encode_images(encoder, ...)`."""
    graph, state = nnx.split(encoder)

    @jax.jit
    def run(state: nnx.State, images: jax.Array) -> jax.Array:
        return encode_images(nnx.merge(graph, state), images.astype(jnp.float32) / 127.5 - 1.0)  # [n, E]

    def embed(images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.uint8)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"embedder input has shape {images.shape}: expected uint8 images [N, H, W, 3]")
        out = []
        for start in range(0, len(images), BATCH):
            chunk = images[start:start + BATCH]  # [n, H, W, 3]
            padded = np.concatenate([chunk, np.zeros((BATCH - len(chunk), *chunk.shape[1:]), np.uint8)])
            out.append(np.asarray(run(state, padded))[:len(chunk)])
        return np.concatenate(out) if out else np.zeros((0, encoder.embed_dim), np.float32)

    return embed


def identity_embedder(weights: str | pathlib.Path, *, allow_pickle: bool = False) -> Embedder:
    """The ArcFace-style IResNet (`swapjax.models.iresnet`) from an insightface state dict (`.safetensors`, or
    `.pth` with `allow_pickle`), its architecture read off the tensor shapes."""
    from swapjax.convert.iresnet import convert_iresnet
    from swapjax.models.iresnet import abstract_iresnet

    config, state = convert_iresnet(weights, allow_pickle=allow_pickle)
    graph, _ = abstract_iresnet(config)
    return encoder_embedder(nnx.merge(graph, state))
