"""What the loss terms beyond the velocity ones read in the train step: decoded x̂0, identity cosines, MEAR weights.

Each term declares what it reads in its `losses.LossTerm` entry (`LOSS_TERMS`); this module reads that table
(`decodes`, `pixel_keys`, `check_pixel_terms`) and builds every `LossInputs` field an enabled term reads with one
builder per field (`FIELD_BUILDERS`). For the terms shipped:

    term        reads (batch)                        computes in the step
    coherence   reference, subject_mask              decode(stop_gradient(x̂0)) -> subject crops -> E -> frame cosines
    identity    video, reference, subject_mask       decode(x̂0) -> pixel error in the subject mask + frame cosines
    mear        video (+ keypoints when mear_beta)   w = 1 + α·D + β·P from the target video (no model)

`x̂0 = z_t − t·v̂` over the video frames is denormalised and decoded once per step by the frozen VAE decoder;
coherence and identity share that decode, and the reference is encoded once per batch. Each decoded frame is
compared through its subject crop (`loss_maps.subject_crops`: the subject on grey, square, as the reference
shows it), so a face encoder sees a face, not the whole frame. The frozen models' parameters travel in the step's
`frozen` argument (`{"vae": ..., "encoder": ...}`), never in the optimizer state; their structure is static.

Cost: decoding is the price (docs/design.md, "Training"). For the Wan2.1 VAE on one 480 x 832 x 81 clip, XLA's
cost analysis counts 274 TFLOP for the decoder's forward (163 for the encoder), against ~1,800 TFLOP for the 14B
DiT's forward on the same clip. Coherence decodes without gradient: one decoder forward, ~5 % of a train step's
FLOPs. Identity backpropagates through the decoder and the encoder: ~3 decoder forwards (~15 % of a step) and
the decoder's full-resolution activations kept for the backward pass (one 81 x 480 x 832 x 96 float32 map is
11.6 GiB), so at that size it needs fewer frames, a lower resolution or a rematerialised decoder. With both
weights 0 nothing is decoded and the step holds no VAE: the compiled step is the flow-matching one.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from swapjax.errors import ConfigError
from swapjax.data.config import DataConfig
from swapjax.data.reference import NEUTRAL_GREY
from swapjax.loss_maps import cosine_similarity, mear_latent_weights, subject_crops
from swapjax.losses import LOSS_TERMS, LossConfig, LossInputs
from swapjax.encoding import load_identity_encoder
from swapjax.models.image_encoder import encode_images
from swapjax.models.vae import denormalize_latents
from swapjax.models.vae_config import VAEConfig

DECODE_SCOPE = "pixel_terms_vae_decode"  # name scope of the decode (tests look for it in the step's jaxpr)
GREY = NEUTRAL_GREY / 127.5 - 1.0  # the references' neutral background in [-1, 1]
STEP_FIELDS = ("subject_mask",)  # LossInputs fields the objective fills from the prepared batch itself


class FrozenModels(NamedTuple):
    """The static halves of the frozen models the pixel terms run; parameters go in the step's `frozen`."""

    vae_graphdef: nnx.GraphDef
    vae: VAEConfig
    encoder_graphdef: nnx.GraphDef


def decodes(loss: LossConfig) -> bool:
    """Whether an enabled term reads decoded frames (and so needs the VAE decoder and the image encoder)."""
    return any(term.decodes for term in loss.enabled().values())


def pixel_keys(loss: LossConfig) -> tuple[str, ...]:
    """The pixel arrays of the data batch the enabled terms read (passed through to the step)."""
    return tuple(sorted({key for term in loss.enabled().values() for key in term.batch_keys(loss)}))


def check_pixel_terms(loss: LossConfig, data: DataConfig) -> None:
    """Raises `ConfigError` when the data cannot feed an enabled term."""
    for term in loss.enabled().values():
        problem = term.data_problem(loss, data)
        if problem is not None:
            raise ConfigError(problem)


def load_image_encoder(loss: LossConfig, sharding: jax.sharding.Sharding) -> tuple[nnx.GraphDef, dict]:
    """The frozen encoder `E` named by `loss.encoder` -> (graphdef, parameters placed with `sharding`): the
    IResNet from `loss.encoder_checkpoint` (insightface weights, converted here), else the registered encoder
    with random weights from a fixed key (never trained: the same instrument in every run). The sampler's
    identity condition loads the very same one (`swapjax.encoding.load_identity_encoder`)."""
    return load_identity_encoder(loss.encoder, loss.encoder_checkpoint, sharding)


class StepPixels:
    """One (micro-)batch's pixel-side values, each computed on first use and shared by every field builder."""

    def __init__(self, loss: LossConfig, batch: dict, v_pred: jax.Array, frozen: Any, models: FrozenModels | None,
                 frames_per_latent: int, pixels_per_latent: int):
        self.loss, self.batch, self.v_pred, self.frozen, self.models = loss, batch, v_pred, frozen, models
        self.frames_per_latent, self.pixels_per_latent = frames_per_latent, pixels_per_latent

    def _frozen(self, name: str) -> tuple[nnx.GraphDef, Any]:
        """The frozen model `name` ("vae" or "encoder"): its graphdef and parameters."""
        if self.models is None or self.frozen is None:
            raise ValueError(f"loss terms {sorted(n for n, t in self.loss.enabled().items() if t.decodes)} decode "
                             "x̂0: build the objective with the frozen models (FrozenModels) and pass their "
                             "parameters as the step's `frozen`")
        return getattr(self.models, f"{name}_graphdef"), self.frozen[name]

    @functools.cached_property
    def frames(self) -> jax.Array:
        """The decoded `x̂0` `[B, F, H, W, 3]`; without gradient unless an enabled term backpropagates through it."""
        vae = nnx.merge(*self._frozen("vae"))
        x0_hat = self.batch["noisy"] - self.batch["t"][:, None, None, None, None] * self.v_pred  # [B, f, h, w, z]
        if not any(term.decode_gradient for term in self.loss.enabled().values()):
            x0_hat = jax.lax.stop_gradient(x0_hat)  # no backward pass through the decoder
        with jax.named_scope(DECODE_SCOPE):
            return vae.decode(denormalize_latents(x0_hat, self.models.vae))[0]  # [B, F, H, W, 3]

    @functools.cached_property
    def frame_cos(self) -> jax.Array:
        """`cos(E(subject crop of each decoded frame), E(reference))` `[B, F]`, with gradient."""
        encoder = nnx.merge(*self._frozen("encoder"))
        reference = self.batch["reference"]  # [B, S, S, 3]
        ref_emb = encode_images(encoder, reference)  # [B, E], once per batch
        crops = subject_crops(self.frames, self.batch["subject_mask"], encoder.input_size or reference.shape[1], GREY)
        return cosine_similarity(encode_images(encoder, crops), ref_emb[:, None])  # [B, F]

    def mear_weights(self) -> jax.Array:
        loss = self.loss
        kps = self.batch["keypoints"] if loss.mear_beta > 0 else None  # [B, F, K, 3]
        return mear_latent_weights(
            self.batch["video"], None if kps is None else kps[..., :2], alpha=loss.mear_alpha, beta=loss.mear_beta,
            sigma=loss.mear_sigma, landmark_valid=None if kps is None else (kps[..., 2] > 0).astype(jnp.float32),
            temporal=self.frames_per_latent, spatial=self.pixels_per_latent)  # [B, f, h, w]


# LossInputs field -> how the train step builds it (a new term reading a new field adds one line here)
FIELD_BUILDERS: dict[str, Callable[[StepPixels], jax.Array]] = {
    "frame_cos": lambda p: jax.lax.stop_gradient(p.frame_cos),  # coherence's weights carry no gradient
    "mear_weights": StepPixels.mear_weights,
    "x0_pred_px": lambda p: p.frames,
    "x0_px": lambda p: p.batch["video"],
    "head_mask": lambda p: p.batch["subject_mask"],
    "identity_cos": lambda p: p.frame_cos,
}


def needs_pixels(loss: LossConfig) -> bool:
    """Whether an enabled term reads a field built here (so the step calls `pixel_loss_inputs`)."""
    return any(set(term.reads) - set(STEP_FIELDS) for term in loss.enabled().values())


def pixel_loss_inputs(loss: LossConfig, batch: dict, v_pred: jax.Array, frozen: Any,
                      models: FrozenModels | None, *, frames_per_latent: int, pixels_per_latent: int
                      ) -> dict[str, jax.Array]:
    """The `LossInputs` fields the enabled terms read (their `LossTerm.reads`, less `STEP_FIELDS`) for one
    (micro-)batch; `v_pred` `[B, f, h, w, z]` is the model's velocity, `batch` holds `noisy` (z_t), `t` and the
    `pixel_keys`."""
    pixels = StepPixels(loss, batch, v_pred, frozen, models, frames_per_latent, pixels_per_latent)
    fields = sorted({f for term in loss.enabled().values() for f in term.reads} - set(STEP_FIELDS))
    return {field: FIELD_BUILDERS[field](pixels) for field in fields}


def _check_builders() -> None:
    """Every field a registered term reads has a builder here (or comes from the step), and is a LossInputs field."""
    for name, term in LOSS_TERMS.items():
        for field in term.reads:
            if field not in LossInputs._fields or (field not in FIELD_BUILDERS and field not in STEP_FIELDS):
                raise ImportError(f"loss term {name!r} reads {field!r}, which no FIELD_BUILDERS entry builds")


_check_builders()
