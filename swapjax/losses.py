"""Training objectives: one function per objective, composed by `LossConfig` in `total_loss`.

Every objective returns one value per sample `[B]`; weights are computed within a sample and never normalised
across the batch, so batch 1 behaves like any other. The velocity objectives read the per-element error
`ℓ = (v̂ − v)²` of the video latents `[B, f, h, w, C]` (video frames only; the swap model never outputs its
prefix frames), with `v = ε − x0`:

- `flow_matching`: `mean(ℓ)`;
- `region` (DreamSwapV): `mean(ℓ) + λ · sum(M_s·ℓ) / sum(M_s)`, `M_s` the subject mask on the latent grid
  (`loss_maps.pool_to_latent(mask, "max")`), so a small subject weighs as much as a large one; 0 for an empty mask;
- `coherence` (DreamID-V): latent frames grouped into chunks, chunk weights `Q_c = 1 / (cos_c + δ)` from the
  identity similarity of each decoded chunk to the reference, without gradient, rescaled to mean 1 per sample;
  `Σ_c Q_c · mean(ℓ_c) / C`;
- `mear` (DirectSwap): `mean(w·ℓ) / mean(w)`, `w = 1 + α·D + β·P` from frame differences and landmark
  proximity (`loss_maps.mear_pixel_weights`), averaged onto the latent grid;
- `identity` (SwapAnyHead): `mean(((x̂0 − x)·M_head)²) + (1 − cos(E(x̂0), E(ref)))` in pixel space.

`region`, `coherence` and `mear` each already contain the whole-video error: use one of them in place of
`flow_matching` (set `flow_matching_weight = 0`) unless you mean to count it twice. The identity embeddings
come from a registered image encoder (`models/image_encoder.py`); `loss_maps.frame_identity_cosines` and
`loss_maps.chunk_identity_cosines` turn decoded frames into the cosines these losses take, so the losses stay pure
array functions. Pixel-to-latent grouping follows the Wan VAE: latent frame 0 is pixel frame 0, latent frame
`i ≥ 1` is pixel frames `4i − 3 .. 4i`, and each latent cell covers 8x8 pixels.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from swapjax.config_error import require
from swapjax.loss_maps import check_velocity_shapes
from swapjax.models.image_encoder import IMAGE_ENCODERS


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Which objectives train the model (weight 0 = off) and their hyperparameters."""

    flow_matching_weight: float = 1.0
    region_weight: float = 0.0
    region_lambda: float = 1.0  # λ: weight of the subject-region mean error inside the region objective
    coherence_weight: float = 0.0
    coherence_delta: float = 0.1  # δ in Q_c = 1 / (cos_c + δ); caps a chunk's weight at 1/δ before rescaling
    coherence_chunk_frames: int = 1  # latent frames per chunk (one latent frame = 4 pixel frames)
    mear_weight: float = 0.0
    mear_alpha: float = 1.0  # α: weight of the frame-difference map
    mear_beta: float = 1.0  # β: weight of the landmark-proximity map
    mear_sigma: float = 8.0  # σ of the landmark Gaussians, in pixels
    identity_weight: float = 0.0
    encoder: str = "small"  # the image encoder E (a key of models.image_encoder.IMAGE_ENCODERS)
    # "iresnet": insightface IResNet weights (.safetensors state dict, converted when the run starts); "small" is
    # built from a fixed key and takes no weights
    encoder_checkpoint: str | None = None

    def __post_init__(self):
        for name in LOSS_TERMS:
            w = self.weight(name)
            require(isinstance(w, (int, float)) and math.isfinite(w) and w >= 0,
                    f"LossConfig.{name}_weight = {w!r}: must be a finite number >= 0 (0 turns the term off)")
        require(any(self.weight(name) > 0 for name in LOSS_TERMS),
                f"LossConfig: every term weight is 0 ({', '.join(f'{n}_weight' for n in LOSS_TERMS)}): set at "
                "least one > 0, e.g. flow_matching_weight=1")
        for name in ("region_lambda", "mear_alpha", "mear_beta"):
            v = getattr(self, name)
            require(math.isfinite(v) and v >= 0, f"LossConfig.{name} = {v!r}: must be a finite number >= 0")
        for name in ("coherence_delta", "mear_sigma"):
            v = getattr(self, name)
            require(math.isfinite(v) and v > 0, f"LossConfig.{name} = {v!r}: must be a finite number > 0")
        require(isinstance(self.coherence_chunk_frames, int) and self.coherence_chunk_frames >= 1,
                f"LossConfig.coherence_chunk_frames = {self.coherence_chunk_frames!r}: must be an integer >= 1 "
                "(latent frames per chunk)")
        require(self.encoder in IMAGE_ENCODERS,
                f"LossConfig.encoder = {self.encoder!r}: allowed values are {sorted(IMAGE_ENCODERS)}")
        require(self.encoder != "small" or self.encoder_checkpoint is None,
                f"LossConfig.encoder_checkpoint = {self.encoder_checkpoint!r}: the 'small' encoder is built from a "
                "fixed key and reads no weights; set encoder=iresnet or encoder_checkpoint=None")
        require(self.encoder != "iresnet" or not self.needs_encoder or self.encoder_checkpoint is not None,
                "LossConfig.encoder = 'iresnet' needs encoder_checkpoint: pass insightface IResNet weights "
                "(.safetensors), or use encoder=small")

    def weight(self, name: str) -> float:
        """The weight of loss term `name` (a key of `LOSS_TERMS`)."""
        return getattr(self, f"{name}_weight")

    @property
    def needs_encoder(self) -> bool:
        """Whether an enabled term reads identity cosines from the image encoder."""
        return self.coherence_weight > 0 or self.identity_weight > 0


class LossInputs(NamedTuple):
    """What the objectives read; fields a disabled term needs may stay None."""

    v_pred: Float[Array, "b f h w c"]  # predicted velocity, video frames only
    v_target: Float[Array, "b f h w c"]  # ε − x0
    subject_mask: Float[Array, "b f h w"] | None = None  # region: latent grid, pool_to_latent(mask, "max")
    chunk_cos: Float[Array, "b n"] | None = None  # coherence: chunk_identity_cosines(...)
    mear_weights: Float[Array, "b f h w"] | None = None  # mear: mear_latent_weights(...)
    x0_pred_px: Float[Array, "b t hp wp 3"] | None = None  # identity: decoded x̂0
    x0_px: Float[Array, "b t hp wp 3"] | None = None  # identity: the target video
    head_mask: Float[Array, "b t hp wp"] | None = None  # identity: head region in pixels
    identity_cos: Float[Array, "b n"] | None = None  # identity: frame_identity_cosines(...) with gradient


# ------------------------------------------------------------------------------------------ objectives
def squared_error(v_pred: Float[Array, "b f h w c"], v_target: Float[Array, "b f h w c"]
                  ) -> Float[Array, "b f h w"]:
    """`ℓ = (v̂ − v)²` in float32, averaged over channels: `[B, f, h, w]` (every objective is a ratio of
    sums over positions, so the channel mean changes none of them)."""
    check_velocity_shapes(v_pred, v_target)
    err = jnp.square(v_pred.astype(jnp.float32) - v_target.astype(jnp.float32))  # [B, f, h, w, C]
    return jnp.mean(err, axis=-1)  # [B, f, h, w]


def flow_matching_loss(v_pred: Float[Array, "b f h w c"], v_target: Float[Array, "b f h w c"]) -> Float[Array, "b"]:
    """`mean(ℓ)` per sample."""
    return jnp.mean(squared_error(v_pred, v_target), axis=(1, 2, 3))


def region_reweighted_loss(v_pred: Float[Array, "b f h w c"], v_target: Float[Array, "b f h w c"],
                           subject_mask: Float[Array, "b f h w"], lam: float) -> Float[Array, "b"]:
    """`mean(ℓ) + λ · sum(M_s·ℓ) / sum(M_s)` per sample; the region term is 0 where the mask is empty."""
    err = squared_error(v_pred, v_target)  # [B, f, h, w]
    _check_grid(subject_mask, err, "subject_mask")
    m = subject_mask.astype(jnp.float32)
    area = jnp.sum(m, axis=(1, 2, 3))  # [B]
    region = jnp.sum(m * err, axis=(1, 2, 3)) / jnp.where(area > 0, area, 1.0)  # [B]; 0 when area = 0
    return jnp.mean(err, axis=(1, 2, 3)) + lam * region


def coherence_weights(chunk_cos: Float[Array, "b n"], delta: float) -> Float[Array, "b n"]:
    """`Q_c = 1 / (max(cos_c, 0) + δ)`, rescaled to mean 1 over each sample's chunks; no gradient flows.

    Cosines below 0 (identity lost entirely) count as 0, which keeps every weight positive and at most 1/δ.
    """
    cos = jax.lax.stop_gradient(chunk_cos.astype(jnp.float32))
    q = 1.0 / (jnp.maximum(cos, 0.0) + delta)  # [B, C]
    return q / jnp.mean(q, axis=1, keepdims=True)


def identity_coherence_loss(v_pred: Float[Array, "b f h w c"], v_target: Float[Array, "b f h w c"],
                            chunk_cos: Float[Array, "b n"], *, delta: float, chunk_frames: int) -> Float[Array, "b"]:
    """`Σ_c Q_c · mean(ℓ_c) / C` per sample; chunk `c` holds latent frames `[c·k, (c+1)·k)` (the last may be
    shorter), `k = chunk_frames`, so `C = ceil(f / k)` and `chunk_cos` must be `[B, C]`."""
    frame_err = jnp.mean(squared_error(v_pred, v_target), axis=(2, 3))  # [B, f]
    f = frame_err.shape[1]
    num = -(-f // chunk_frames)
    if chunk_cos.shape != (frame_err.shape[0], num):
        raise ValueError(f"chunk_cos has shape {tuple(chunk_cos.shape)}: expected [B, C] = "
                         f"{(frame_err.shape[0], num)} ({f} latent frames in chunks of LossConfig."
                         f"coherence_chunk_frames = {chunk_frames}); compute it with chunk_identity_cosines")
    onehot = jax.nn.one_hot(jnp.arange(f) // chunk_frames, num, dtype=jnp.float32)  # [f, C]
    chunk_err = (frame_err @ onehot) / jnp.sum(onehot, axis=0)  # [B, C]
    return jnp.mean(coherence_weights(chunk_cos, delta) * chunk_err, axis=1)


def mear_loss(v_pred: Float[Array, "b f h w c"], v_target: Float[Array, "b f h w c"],
              weights: Float[Array, "b f h w"]) -> Float[Array, "b"]:
    """`mean(w·ℓ) / mean(w)` per sample, `w` the MEAR weights on the latent grid (all >= 1)."""
    err = squared_error(v_pred, v_target)  # [B, f, h, w]
    _check_grid(weights, err, "mear_weights")
    w = weights.astype(jnp.float32)
    return jnp.mean(w * err, axis=(1, 2, 3)) / jnp.mean(w, axis=(1, 2, 3))


def identity_loss(x0_pred_px: Float[Array, "b t h w 3"], x0_px: Float[Array, "b t h w 3"],
                  head_mask: Float[Array, "b t h w"], identity_cos: Float[Array, "b n"]) -> Float[Array, "b"]:
    """`mean(((x̂0 − x)·M_head)²) + (1 − mean_n cos_n)` per sample; the mean runs over frames, pixels and
    RGB, `identity_cos` are the cosines `cos(E(x̂0 frame), E(ref))` (gradient flows through them)."""
    if x0_pred_px.shape != x0_px.shape or x0_px.ndim != 5 or head_mask.shape != x0_px.shape[:-1]:
        raise ValueError(f"identity loss inputs: x0_pred_px {tuple(x0_pred_px.shape)}, x0_px "
                         f"{tuple(x0_px.shape)} must both be [B, F, H, W, 3] and head_mask "
                         f"{tuple(head_mask.shape)} must be [B, F, H, W]")
    if identity_cos.ndim != 2 or identity_cos.shape[0] != x0_px.shape[0]:
        raise ValueError(f"identity_cos has shape {tuple(identity_cos.shape)}: expected [B, N] with B = "
                         f"{x0_px.shape[0]} (one cosine per encoded frame)")
    diff = (x0_pred_px.astype(jnp.float32) - x0_px.astype(jnp.float32)) * head_mask[..., None]  # [B, F, H, W, 3]
    pixel = jnp.mean(jnp.square(diff), axis=(1, 2, 3, 4))  # [B]
    return pixel + 1.0 - jnp.mean(identity_cos.astype(jnp.float32), axis=1)


def _check_grid(grid: jax.Array, err: jax.Array, name: str) -> None:
    if grid.shape != err.shape:
        raise ValueError(f"{name} has shape {tuple(grid.shape)}: expected the latent grid [B, f, h, w] = "
                         f"{tuple(err.shape)} of the velocity (pool pixel maps with loss_maps.pool_to_latent)")


# ------------------------------------------------------------------------------------------ composition
def _need(inputs: LossInputs, field: str, term: str, how: str) -> jax.Array:
    value = getattr(inputs, field)
    if value is None:
        raise ValueError(f"loss term {term!r} is on (LossConfig.{term}_weight > 0) but LossInputs.{field} is "
                         f"None: pass {how}, or set LossConfig.{term}_weight = 0")
    return value


def _flow_matching_term(cfg: LossConfig, x: LossInputs) -> jax.Array:
    return flow_matching_loss(x.v_pred, x.v_target)


def _region_term(cfg: LossConfig, x: LossInputs) -> jax.Array:
    mask = _need(x, "subject_mask", "region", "the subject mask pooled with pool_to_latent(mask, 'max')")
    return region_reweighted_loss(x.v_pred, x.v_target, mask, cfg.region_lambda)


def _coherence_term(cfg: LossConfig, x: LossInputs) -> jax.Array:
    cos = _need(x, "chunk_cos", "coherence", "chunk_identity_cosines of the decoded x̂0 and the reference")
    return identity_coherence_loss(x.v_pred, x.v_target, cos, delta=cfg.coherence_delta,
                                   chunk_frames=cfg.coherence_chunk_frames)


def _mear_term(cfg: LossConfig, x: LossInputs) -> jax.Array:
    w = _need(x, "mear_weights", "mear", "mear_latent_weights of the target video and its landmarks")
    return mear_loss(x.v_pred, x.v_target, w)


def _identity_term(cfg: LossConfig, x: LossInputs) -> jax.Array:
    how = "the decoded x̂0, target video, head mask and frame_identity_cosines"
    args = [_need(x, f, "identity", how) for f in ("x0_pred_px", "x0_px", "head_mask", "identity_cos")]
    return identity_loss(*args)


# name -> per-sample objective `(cfg, inputs) -> [B]`; a new term is one function, one entry and one
# `<name>_weight` field in LossConfig.
LOSS_TERMS: dict[str, Callable[[LossConfig, LossInputs], jax.Array]] = {
    "flow_matching": _flow_matching_term,
    "region": _region_term,
    "coherence": _coherence_term,
    "mear": _mear_term,
    "identity": _identity_term,
}


def total_loss(cfg: LossConfig, inputs: LossInputs) -> tuple[Float[Array, ""], dict[str, Float[Array, ""]]]:
    """`mean_b Σ_k weight_k · term_k[b]` over the enabled terms, and metrics `{"loss", "loss/<term>"}`
    (each term's batch mean, unweighted)."""
    per_sample = jnp.zeros((inputs.v_pred.shape[0],), jnp.float32)  # [B]
    metrics = {}
    for name, term in LOSS_TERMS.items():
        w = cfg.weight(name)
        if w == 0:
            continue
        values = term(cfg, inputs)  # [B]
        metrics[f"loss/{name}"] = jnp.mean(values)
        per_sample = per_sample + w * values
    loss = jnp.mean(per_sample)
    metrics["loss"] = loss
    return loss, metrics


__all__ = ["LossConfig", "LossInputs", "LOSS_TERMS", "total_loss", "squared_error", "flow_matching_loss",
           "region_reweighted_loss", "coherence_weights", "identity_coherence_loss", "mear_loss", "identity_loss"]
