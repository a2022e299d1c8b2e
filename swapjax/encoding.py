"""The DiT's context from words and pictures: umT5 prompt embeddings and CLIP image tokens, computed by the JAX
encoders of a converted pipeline folder (`python -m swapjax.convert --pipeline ...`).

    with TextEncoder.from_pipeline("converted/") as text:      # parameters released when the block ends
        context = text.encode("a cat walks on the grass")     # float32 [512, 4096], zeros past the prompt
        null = text.encode("")                                 # cached: encoded once per run
    with ImageEncoder.from_pipeline("converted/") as image:
        tokens = image.encode(reference_uint8)                 # float32 [257, 1280]

The encoders run once per prompt and per reference (sampling: once per video; `python -m swapjax.data.encode`:
once per dataset record) and are released before the DiT's steps, so their parameters (11 GiB for umT5-XXL in
bfloat16) never sit beside the DiT's. `release()` deletes the device buffers at once rather than waiting for the
garbage collector. One prompt or image per call, so one compiled program serves every call.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float

from swapjax.errors import CheckpointError
from swapjax.convert.pipeline import read_manifest
from swapjax.convert.saved import load_converted
from swapjax.models.clip_preprocess import ClipPreprocess, preprocess_image
from swapjax.models.clip_vision import abstract_clip_vision, clip_image_tokens
from swapjax.models.umt5 import abstract_umt5, prompt_embeddings
from swapjax.models.umt5_tokenizer import PromptTokenizer

WAN_TEXT_LEN = 512  # tokens the Wan pipelines pad every prompt to


def _load(folder: pathlib.Path, kind: str) -> tuple[Any, Any]:
    found, cfg, state = load_converted(folder)
    if found != kind:
        raise CheckpointError(f"{str(folder)!r} holds a {found!r} model, not a {kind!r} one: convert the pipeline "
                              "again")
    return cfg, state


def _delete(state: Any) -> None:
    for leaf in jax.tree.leaves(state):
        if isinstance(leaf, jax.Array):
            leaf.delete()


class _Released:
    """Context-manager and `release` plumbing shared by the encoders."""

    state: Any

    def release(self) -> None:
        """Deletes the parameters' device buffers; the encoder cannot encode afterwards."""
        if self.state is not None:
            _delete(self.state)
            self.state = None

    def _check_loaded(self) -> None:
        if self.state is None:
            raise RuntimeError(f"{type(self).__name__} was released: load it again to encode more")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class TextEncoder(_Released):
    """umT5 + its tokenizer; `encode(prompt)` -> float32 `[max_length, d_model]` (Wan's padding rule)."""

    def __init__(self, text_folder: str | pathlib.Path, tokenizer_folder: str | pathlib.Path, *,
                 max_length: int = WAN_TEXT_LEN):
        cfg, self.state = _load(pathlib.Path(text_folder), "umt5")
        self.cfg, self.max_length = cfg, max_length
        self.graph = abstract_umt5(cfg)[0]
        self.tokenizer = PromptTokenizer.from_folder(tokenizer_folder)
        self._fn = jax.jit(prompt_embeddings, static_argnums=0)
        self._cache: dict[str, np.ndarray] = {}

    @classmethod
    def from_pipeline(cls, folder: str | pathlib.Path, **kw: Any) -> "TextEncoder":
        parts = read_manifest(folder)
        for part in ("text_encoder", "tokenizer"):
            if part not in parts:
                raise CheckpointError(f"converted pipeline {str(folder)!r} has no {part}/: convert the whole "
                                      "pipeline with python -m swapjax.convert --pipeline")
        return cls(parts["text_encoder"], parts["tokenizer"], **kw)

    def encode(self, prompt: str) -> Float[np.ndarray, "l d"]:
        """One prompt's embeddings `[max_length, d_model]`, zero past its tokens; repeated prompts are cached."""
        if prompt not in self._cache:
            self._check_loaded()
            ids, mask = self.tokenizer([prompt], self.max_length)  # [1, L] each
            out = self._fn(self.graph, self.state, jnp.asarray(ids), jnp.asarray(mask))  # [1, L, D]
            self._cache[prompt] = np.asarray(out[0], np.float32)
        return self._cache[prompt]


class ImageEncoder(_Released):
    """CLIP vision tower + its preprocessing; `encode(image)` -> float32 `[tokens, hidden]`."""

    def __init__(self, image_folder: str | pathlib.Path, processor_folder: str | pathlib.Path):
        cfg, self.state = _load(pathlib.Path(image_folder), "clip_vision")
        self.cfg = cfg
        self.graph = abstract_clip_vision(cfg)[0]
        self.preprocess = ClipPreprocess.from_folder(processor_folder)
        self._fn = jax.jit(clip_image_tokens, static_argnums=0)

    @classmethod
    def from_pipeline(cls, folder: str | pathlib.Path) -> "ImageEncoder":
        parts = read_manifest(folder)
        for part in ("image_encoder", "image_processor"):
            if part not in parts:
                raise CheckpointError(f"converted pipeline {str(folder)!r} has no {part}/ (T2V pipelines have no "
                                      "image encoder): use an I2V pipeline for an I2V-based swap model")
        return cls(parts["image_encoder"], parts["image_processor"])

    def encode(self, image: np.ndarray) -> Float[np.ndarray, "l d"]:
        """uint8 `[H, W, 3]` -> image tokens `[1 + patches, hidden]` (Wan: the penultimate layer's output)."""
        self._check_loaded()
        pixels = preprocess_image(image, self.preprocess)[None]  # [1, S, S, 3]
        return np.asarray(self._fn(self.graph, self.state, jnp.asarray(pixels))[0], np.float32)


def has_image_encoder(folder: str | pathlib.Path) -> bool:
    """Whether a converted pipeline folder holds an image encoder."""
    return "image_encoder" in read_manifest(folder)


IDENTITY_ENCODER_SEED = 0  # the "small" encoder is built from this key everywhere: one fixed (random) instrument


def load_identity_encoder(name: str, checkpoint: str | None, sharding: jax.sharding.Sharding | None = None
                          ) -> tuple[Any, dict]:
    """The frozen image encoder `E` (`LossConfig.encoder`) -> (graphdef, parameters): an insightface IResNet from
    `checkpoint` (converted here), else the registered encoder `name` built from `IDENTITY_ENCODER_SEED`. The
    identity condition's reference embedding and the identity losses read the same one, in training and
    sampling."""
    from flax import nnx

    from swapjax.models.image_encoder import build_image_encoder

    if checkpoint is not None:
        from swapjax.convert.iresnet import convert_iresnet
        from swapjax.models.iresnet import abstract_iresnet

        cfg, state = convert_iresnet(checkpoint)
        params = nnx.to_pure_dict(state)
        return abstract_iresnet(cfg)[0], params if sharding is None else jax.device_put(params, sharding)
    build = lambda: build_image_encoder(name, rngs=nnx.Rngs(params=IDENTITY_ENCODER_SEED))  # noqa: E731
    graphdef = nnx.split(nnx.eval_shape(build))[0]
    params = jax.jit(lambda: nnx.to_pure_dict(nnx.split(build())[1]), out_shardings=sharding)()
    return graphdef, params
