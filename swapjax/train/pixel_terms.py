"""What the loss terms beyond the velocity ones read in the train step: decoded x̂0, identity cosines, MEAR weights.

    term        reads (batch)                        computes in the step
    coherence   reference, subject_mask              decode(stop_gradient(x̂0)) -> subject crops -> E -> chunk cosines
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

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from swapjax.config_error import ConfigError
from swapjax.data.config import DataConfig
from swapjax.data.reference import NEUTRAL_GREY
from swapjax.loss_maps import chunk_mean, cosine_similarity, mear_latent_weights, subject_crops
from swapjax.losses import LossConfig
from swapjax.models.image_encoder import build_image_encoder, encode_images
from swapjax.models.vae import denormalize_latents
from swapjax.models.vae_config import VAEConfig

ENCODER_SEED = 0  # the small encoder is built from this key in every run: one fixed measuring instrument
DECODE_SCOPE = "pixel_terms_vae_decode"  # name scope of the decode (tests look for it in the step's jaxpr)
GREY = NEUTRAL_GREY / 127.5 - 1.0  # the references' neutral background in [-1, 1]


class FrozenModels(NamedTuple):
    """The static halves of the frozen models the pixel terms run; parameters go in the step's `frozen`."""

    vae_graphdef: nnx.GraphDef
    vae: VAEConfig
    encoder_graphdef: nnx.GraphDef


def decodes(loss: LossConfig) -> bool:
    """Whether an enabled term reads decoded frames (and so needs the VAE decoder and the image encoder)."""
    return loss.coherence_weight > 0 or loss.identity_weight > 0


def pixel_keys(loss: LossConfig) -> tuple[str, ...]:
    """The pixel arrays of the data batch the enabled terms read (passed through to the step)."""
    keys = set()
    if loss.coherence_weight > 0:
        keys |= {"reference", "subject_mask"}
    if loss.identity_weight > 0:
        keys |= {"video", "reference", "subject_mask"}
    if loss.mear_weight > 0:
        keys |= {"video"} | ({"keypoints"} if loss.mear_beta > 0 else set())
    return tuple(sorted(keys))


def check_pixel_terms(loss: LossConfig, data: DataConfig) -> None:
    """Raises `ConfigError` when the data cannot feed an enabled term."""
    if loss.mear_weight > 0 and loss.mear_beta > 0 and data.num_keypoints == 0:
        raise ConfigError(f"loss.mear_beta = {loss.mear_beta} weights pixels near landmarks, but data.num_keypoints "
                          "= 0 puts none in the batch: set data.num_keypoints=K (5 for the synthetic clips) or "
                          "loss.mear_beta=0")


def load_image_encoder(loss: LossConfig, sharding: jax.sharding.Sharding) -> tuple[nnx.GraphDef, dict]:
    """The frozen encoder `E` named by `loss.encoder` -> (graphdef, parameters placed with `sharding`): the
    IResNet from `loss.encoder_checkpoint` (insightface weights, converted here), else the registered encoder
    built from the fixed key `ENCODER_SEED`."""
    if loss.encoder_checkpoint is not None:
        from swapjax.convert.iresnet import convert_iresnet
        from swapjax.models.iresnet import abstract_iresnet

        cfg, state = convert_iresnet(loss.encoder_checkpoint)
        return abstract_iresnet(cfg)[0], jax.device_put(nnx.to_pure_dict(state), sharding)
    build = lambda: build_image_encoder(loss.encoder, rngs=nnx.Rngs(params=ENCODER_SEED))
    graphdef = nnx.split(nnx.eval_shape(build))[0]
    params = jax.jit(lambda: nnx.to_pure_dict(nnx.split(build())[1]), out_shardings=sharding)()
    return graphdef, params


def pixel_loss_inputs(loss: LossConfig, batch: dict, v_pred: jax.Array, frozen: Any,
                      models: FrozenModels | None, *, frames_per_latent: int, pixels_per_latent: int
                      ) -> dict[str, jax.Array]:
    """The `LossInputs` fields of the enabled pixel terms (module docstring) for one (micro-)batch; `v_pred`
    `[B, f, h, w, z]` is the model's velocity, `batch` holds `noisy` (z_t), `t` and the `pixel_keys`."""
    out = {}
    if loss.mear_weight > 0:
        kps = batch["keypoints"] if loss.mear_beta > 0 else None  # [B, F, K, 3]
        out["mear_weights"] = mear_latent_weights(
            batch["video"], None if kps is None else kps[..., :2], alpha=loss.mear_alpha, beta=loss.mear_beta,
            sigma=loss.mear_sigma, landmark_valid=None if kps is None else (kps[..., 2] > 0).astype(jnp.float32),
            temporal=frames_per_latent, spatial=pixels_per_latent)  # [B, f, h, w]
    if not decodes(loss):
        return out
    if models is None or frozen is None:
        raise ValueError("loss.coherence_weight or loss.identity_weight > 0 decodes x̂0: build the objective with the "
                         "frozen models (FrozenModels) and pass their parameters as the step's `frozen`")
    x0_hat = batch["noisy"] - batch["t"][:, None, None, None, None] * v_pred  # [B, f, h, w, z]
    if loss.identity_weight == 0:
        x0_hat = jax.lax.stop_gradient(x0_hat)  # coherence alone: no backward pass through the decoder
    with jax.named_scope(DECODE_SCOPE):
        vae = nnx.merge(models.vae_graphdef, frozen["vae"])
        frames = vae.decode(denormalize_latents(x0_hat, models.vae))[0]  # [B, F, H, W, 3]
    encoder = nnx.merge(models.encoder_graphdef, frozen["encoder"])
    reference = batch["reference"]  # [B, S, S, 3]
    ref_emb = encode_images(encoder, reference)  # [B, E], once per batch
    crops = subject_crops(frames, batch["subject_mask"], encoder.input_size or reference.shape[1], GREY)
    cos = cosine_similarity(encode_images(encoder, crops), ref_emb[:, None])  # [B, F]
    if loss.coherence_weight > 0:
        out["chunk_cos"] = chunk_mean(jax.lax.stop_gradient(cos), chunk_frames=loss.coherence_chunk_frames,
                                      temporal=frames_per_latent)  # [B, C]
    if loss.identity_weight > 0:
        out.update(x0_pred_px=frames, x0_px=batch["video"], head_mask=batch["subject_mask"], identity_cos=cos)
    return out
