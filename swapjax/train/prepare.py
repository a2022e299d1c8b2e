"""Batch preparation, compiled apart from the train step: pixels -> the swap DiT's inputs.

    latents = encode_batch(vae_graphdef, vae_params, pixels)      # VAE encode -> normalise -> pack the masks
    model   = assemble_batch(latents, rng, step)                   # noise + t -> z_t -> fuse -> prefix frames

`pixels` is a batch of the grain pipeline (`swapjax.data.pipeline`: video, mask, subject_mask, agnostic,
reference, condition). `encode_batch` is the only part that runs the VAE; an offline latent cache
(`swapjax.train.latent_cache`) stores its output, so large runs skip it and call `assemble_batch` alone.
The step then sees model inputs only (docs/design.md, "Training"):

  fused   `[B, f, h, w, C_in]`  [z_t | packed mask | agnostic latent | condition latent]
  prefix  `[B, P, h, w, C_in]`  reference (and anchor) frames, or absent without prefix slots
  t `[B]`, target `[B, f, h, w, z]` (velocity eps - x0), noisy `[B, f, h, w, z]` (z_t), latents (x0),
  subject `[B, f, h, w]` (1 where a latent cell holds subject pixels), context `[B, Lt, text_dim]`,
  and the pixel arrays video / reference / mask / subject_mask / keypoints passed through when present in the
  latents dict (the loop adds the ones its pixel loss terms read, `pixel_terms.pixel_keys`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from swapjax import flow
from swapjax.models.fused_inputs import fuse_video_inputs, pack_mask, prefix_inputs
from swapjax.models.reference_frame import fit_reference
from swapjax.models.conditions import needed_batch_keys
from swapjax.models.image_encoder import encode_images
from swapjax.models.swap_config import SwapConfig
from swapjax.models.vae import normalize_latents
from swapjax.models.vae_config import VAEConfig

PIXEL_KEYS = ("video", "mask", "subject_mask", "agnostic", "reference", "condition", "keypoints")
LATENT_KEYS = ("latents", "agnostic_latents", "reference_latents", "mask_packed", "subject")
PASS_THROUGH = ("video", "reference", "mask", "subject_mask", "keypoints")


@dataclasses.dataclass(frozen=True)
class PrepareConfig:
    """What `assemble_batch` needs beyond the data (static under jit; built by the loop from the run config)."""

    swap: SwapConfig
    text_len: int
    text_dim: int
    anchor_drop: float = 0.5
    t_distribution: str = "uniform"
    t_shift: float = 1.0
    t_mean: float = 0.0
    t_std: float = 1.0
    with_condition: bool = False
    anchor_index: int = 0  # the window's latent frame the anchor slot holds (`fused_inputs.anchor_index`)
    reference_drop: float = 0.0  # share of samples trained as guidance's null branch (reference, image, text null)
    text_drop: float = 0.0  # share of the others trained with the null text alone (the text-guidance branch)


def subject_grid(subject_mask: Float[Array, "b F H W"], swap: SwapConfig) -> Float[Array, "b f h w"]:
    """1 where a latent cell (its pixel frames and pixels) holds any subject pixel, else 0 -> `[B, f, h, w]`."""
    known = pack_mask(subject_mask, frames_per_latent=swap.frames_per_latent,
                      pixels_per_latent=swap.pixels_per_latent)  # [B, f, h, w, t], 0 where any subject pixel
    return 1.0 - known.min(axis=-1)


def encode_batch(vae_graphdef: nnx.GraphDef, vae_params: Any, pixels: dict[str, jax.Array], *,
                 vae: VAEConfig, swap: SwapConfig, with_condition: bool,
                 encoder_graphdef: nnx.GraphDef | None = None, encoder_params: Any = None) -> dict[str, jax.Array]:
    """Pixel batch -> normalised latents (the VAE posterior means), packed masks and, when a condition reads it,
    the image encoder's embedding of the reference (see module docstring)."""
    model = nnx.merge(vae_graphdef, vae_params)
    video = pixels["video"]  # [B, F, H, W, 3]
    b, _, height, width, _ = video.shape
    clips = [video, pixels["agnostic"]] + ([pixels["condition"]] if with_condition else [])
    mean = model.encode(jnp.concatenate(clips, axis=0))[0]  # [n B, f, h, w, z]
    z = normalize_latents(mean, vae)
    reference = fit_reference(pixels["reference"], height, width)[:, None]  # [B, 1, H, W, 3]
    z_r = normalize_latents(model.encode(reference)[0], vae)  # [B, 1, h, w, z]
    out = {"latents": z[:b], "agnostic_latents": z[b:2 * b], "reference_latents": z_r,
           "mask_packed": pack_mask(pixels["mask"], frames_per_latent=swap.frames_per_latent,
                                    pixels_per_latent=swap.pixels_per_latent),
           "subject": subject_grid(pixels["subject_mask"], swap)}
    if with_condition:
        out["condition_latents"] = z[2 * b:]
    if "reference_embedding" in needed_batch_keys(swap):
        if encoder_graphdef is None:
            raise ValueError("a condition reads the reference embedding: pass the image encoder to encode_batch")
        encoder = nnx.merge(encoder_graphdef, encoder_params)
        out["reference_embedding"] = encode_images(encoder, pixels["reference"])  # [B, E]
    for key in ("context", "image_context"):  # the record's text / image encodings (train.encodings)
        if key in pixels:
            out[key] = pixels[key]
    return out


def _drop(keep: jax.Array, x: jax.Array) -> jax.Array:
    """`x` `[B, ...]` where `keep` `[B]`, zeros elsewhere (the null input of guidance)."""
    return jnp.where(keep.reshape(-1, *([1] * (x.ndim - 1))), x, jnp.zeros_like(x))


def _contexts(latents: dict[str, jax.Array], keep_ref: jax.Array, keep_text: jax.Array, cfg: PrepareConfig
              ) -> dict[str, jax.Array]:
    """Text context `[B, Lt, text_dim]` (the record's embeddings, else the null zeros), null where `keep_text` is
    False, and, when the batch has them, the reference's image tokens `[B, Li, image_dim]`, null (zeros) where
    `keep_ref` is False: the image tokens belong to the reference, as in the sampler's branches."""
    b = latents["latents"].shape[0]
    context = latents.get("context")
    if context is None:
        context = jnp.zeros((b, cfg.text_len, cfg.text_dim), jnp.float32)  # the null text
    out = {"context": _drop(keep_text, context)}
    if latents.get("image_context") is not None:
        out["image_context"] = _drop(keep_ref, latents["image_context"])
    return out


def anchor_latent(latents: Float[Array, "b f h w z"], index: int) -> Float[Array, "b 1 h w z"]:
    """The anchor slot's content: latent frame `index` of a window (see `fused_inputs.anchor_index`:
    the frame the previous window's last latent frame covers), clean. Training reads it from the clip's own
    latents, sampling hands over the previous window's generated last latent frame to the same place."""
    if not 0 <= index < latents.shape[1]:
        raise ValueError(f"anchor latent frame {index} is outside the window's {latents.shape[1]} latent frames: "
                         "use longer training clips or a smaller sample.overlap_frames")
    return latents[:, index:index + 1]


def assemble_batch(latents: dict[str, jax.Array], rng: jax.Array, step: jax.Array, *,
                   cfg: PrepareConfig) -> dict[str, jax.Array]:
    """Latent batch -> model inputs: draws t, the noise, the anchor drop and the guidance drops from
    `fold_in(rng, step)` (`rng`: raw key data, as in the train state), builds z_t, the fused input, the prefix
    frames, the contexts and the conditions' arrays (see module docstring)."""
    swap = cfg.swap
    x0 = latents["latents"]  # [B, f, h, w, z]
    b = x0.shape[0]
    step_key = jax.random.fold_in(jax.random.wrap_key_data(rng), step)
    key_t, key_eps, key_anchor = jax.random.split(jax.random.fold_in(step_key, 1), 3)  # the step uses step_key
    key_ref, key_text = jax.random.split(jax.random.fold_in(step_key, 2))
    t = flow.sample_train_t(key_t, b, shift=cfg.t_shift, distribution=cfg.t_distribution, mean=cfg.t_mean,
                            std=cfg.t_std)  # [B]
    eps = jax.random.normal(key_eps, x0.shape, x0.dtype)
    tb = t[:, None, None, None, None]
    noisy = (1.0 - tb) * x0 + tb * eps  # z_t, [B, f, h, w, z]
    cond = latents.get("condition_latents") if cfg.with_condition and swap.condition_channels else None
    fused = fuse_video_inputs(noisy, latents["mask_packed"], latents["agnostic_latents"], cond,
                              condition_channels=swap.condition_channels)  # [B, f, h, w, C_in]
    out = {"fused": fused, "t": t, "target": eps - x0, "noisy": noisy, "latents": x0,
           "subject": latents["subject"]}
    # Guidance's branches, as the sampler builds them (engine._branches): the null branch has the zero reference,
    # no image tokens and the null text; the text-guidance branch has the reference and the null text.
    keep_ref = jax.random.uniform(key_ref, (b,)) >= cfg.reference_drop  # [B]
    keep_text = keep_ref & (jax.random.uniform(key_text, (b,)) >= cfg.text_drop)  # [B]
    out.update(_contexts(latents, keep_ref, keep_text, cfg))
    if swap.num_prefix_frames:
        present = jax.random.uniform(key_anchor, (b,)) >= cfg.anchor_drop  # [B]
        z_r = _drop(keep_ref, latents["reference_latents"]) if swap.reference else None
        z_a = anchor_latent(x0, cfg.anchor_index) if swap.anchor else None
        out["prefix"] = prefix_inputs(z_r, z_a, present, mask_channels=swap.frames_per_latent,
                                      condition_channels=swap.condition_channels)  # [B, P, h, w, C_in]
    for key in PASS_THROUGH + needed_batch_keys(swap):
        if key in latents:
            out[key] = latents[key]
    return out
