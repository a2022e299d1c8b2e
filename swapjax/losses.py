"""Training objectives: one function per objective, composed by `LossConfig` in `total_loss`.

Every objective returns one value per sample `[B]`; weights are computed within a sample and never normalised
across the batch, so batch 1 behaves like any other. The velocity objectives read the per-element error
`ℓ = (v̂ − v)²` of the video latents `[B, f, h, w, C]` (video frames only; the swap model never outputs its
prefix frames), with `v = ε − x0`:

- `flow_matching`: `mean(ℓ)`;
- `region` (DreamSwapV): `mean(ℓ) + λ · sum(M_s·ℓ) / sum(M_s)`, `M_s` the subject mask on the latent grid
  (`loss_maps.pool_to_latent(mask, "max")`), so a small subject weighs as much as a large one; 0 for an empty mask;
- `coherence` (DreamID-V's identity-coherence loss): per decoded frame `Q = 1 / (cos(E(x̂0_frame), E(ref)) + δ)`
  without gradient, averaged over the pixel frames of each VAE chunk (one latent frame) to `Q_c`; the loss is
  `Σ_c Q_c · mean(ℓ_c)`, a *sum* over chunks as the paper writes it (`identity_coherence_loss`; our variants
  are named `LossConfig.coherence_*` options, off by default);
- `mear` (the idea from DirectSwap, the formula ours): `mean(w·ℓ) / mean(w)`, `w = 1 + α·D + β·P` from frame
  differences and landmark proximity (`loss_maps.mear_pixel_weights`), averaged onto the latent grid;
- `identity` (SwapAnyHead): `mean(((x̂0 − x)·M_head)²) + (1 − cos(E(x̂0), E(ref)))` in pixel space.

`region`, `coherence` and `mear` each already contain the whole-video error: use one of them in place of
`flow_matching` (set `flow_matching_weight = 0`) unless you mean to count it twice. The identity embeddings
come from a registered image encoder (`models/image_encoder.py`); `loss_maps.frame_identity_cosines` turns
decoded frames into the cosines these losses take, so the losses stay pure array functions. Pixel-to-latent
grouping follows the Wan VAE: latent frame 0 is pixel frame 0, latent frame `i ≥ 1` is pixel frames
`4i − 3 .. 4i`, and each latent cell covers 8x8 pixels.

Each term is a plug-in (`LossTerm` in `LOSS_TERMS`): its objective plus a declaration of what it reads — the
`LossInputs` fields, the pixel arrays of the data batch, whether it decodes x̂0 (and backpropagates through the
decode), whether it needs the image encoder, and what the data must provide. `train/pixel_terms.py` reads the
table to build a step's inputs; adding a term is one function, one `LossTerm` entry, one `<name>_weight` field.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from swapjax.errors import require
from swapjax.loss_maps import check_velocity_shapes, latent_frame_of_pixel
from swapjax.models.image_encoder import IMAGE_ENCODERS

if TYPE_CHECKING:
    from swapjax.data.config import DataConfig

COHERENCE_Q_FROM = ("frames", "chunk_cosine")
COHERENCE_CHUNK_REDUCE = ("sum", "mean")


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Which objectives train the model (weight 0 = off) and their hyperparameters."""

    flow_matching_weight: float = 1.0
    region_weight: float = 0.0
    region_lambda: float = 1.0  # λ: weight of the subject-region mean error inside the region objective
    coherence_weight: float = 0.0
    coherence_delta: float = 0.1  # δ in Q = 1 / (cos + δ)
    coherence_chunk_frames: int = 1  # latent frames per chunk (1 = the paper's VAE chunk of 4 pixel frames)
    # Our variants of the coherence weights (docs/design.md, "Our choices"); the defaults are the paper's form.
    coherence_clamp_cosine: bool = False  # cos -> max(cos, 0) before inverting: every Q in (0, 1/δ]
    # "frames": Q per decoded frame, averaged over the chunk (paper); "chunk_cosine": the chunk's mean cosine, inverted
    coherence_q_from: str = "frames"
    coherence_normalize_q: bool = False  # rescale Q_c to mean 1 over each sample's chunks
    coherence_chunk_reduce: str = "sum"  # "sum" over chunks (paper) or "mean" (divides by the number of chunks)
    mear_weight: float = 0.0
    mear_alpha: float = 1.0  # α: weight of the frame-difference map
    mear_beta: float = 1.0  # β: weight of the landmark-proximity map
    mear_sigma: float = 8.0  # σ of the landmark Gaussians, in pixels
    identity_weight: float = 0.0
    encoder: str = "small"  # the image encoder E (a key of models.image_encoder.IMAGE_ENCODERS)
    # "iresnet": insightface IResNet weights (.safetensors state dict, converted when the run starts); "small" is
    # a fixed random network (built from a fixed key, never trained) and takes no weights
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
        require(self.coherence_q_from in COHERENCE_Q_FROM,
                f"LossConfig.coherence_q_from = {self.coherence_q_from!r}: allowed values are "
                f"{list(COHERENCE_Q_FROM)}")
        require(self.coherence_chunk_reduce in COHERENCE_CHUNK_REDUCE,
                f"LossConfig.coherence_chunk_reduce = {self.coherence_chunk_reduce!r}: allowed values are "
                f"{list(COHERENCE_CHUNK_REDUCE)}")
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

    def enabled(self) -> dict[str, "LossTerm"]:
        """The `LOSS_TERMS` entries whose weight is > 0, in table order."""
        return {name: term for name, term in LOSS_TERMS.items() if self.weight(name) > 0}

    @property
    def needs_encoder(self) -> bool:
        """Whether an enabled term reads identity cosines from the image encoder."""
        return any(term.encoder for term in self.enabled().values())


class LossInputs(NamedTuple):
    """What the objectives read; fields a disabled term needs may stay None."""

    v_pred: Float[Array, "b f h w c"]  # predicted velocity, video frames only
    v_target: Float[Array, "b f h w c"]  # ε − x0
    subject_mask: Float[Array, "b f h w"] | None = None  # region: latent grid, pool_to_latent(mask, "max")
    frame_cos: Float[Array, "b t"] | None = None  # coherence: frame_identity_cosines(...) per decoded pixel frame
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


def coherence_chunk_onehot(num_latent: int, num_pixel: int, chunk_frames: int) -> tuple[jax.Array, jax.Array]:
    """Which chunk each latent frame and each decoded pixel frame belongs to, as one-hot `[f, C]` and `[F, C]`.

    Chunk `c` holds latent frames `[c·k, (c+1)·k)`, `k = chunk_frames` (the last may be shorter); pixel frames
    fold into latent frames as the VAE does (`F = (f − 1)·T + 1`, `T` read from the two lengths: latent frame 0
    is pixel frame 0, latent frame `i ≥ 1` is pixel frames `T(i − 1) + 1 .. T·i`)."""
    if num_latent == 1:
        temporal = 1 if num_pixel == 1 else 0
    else:
        temporal = (num_pixel - 1) // (num_latent - 1) if (num_pixel - 1) % (num_latent - 1) == 0 else 0
    if temporal < 1:
        raise ValueError(f"frame_cos has {num_pixel} frames for {num_latent} latent frames: expected "
                         f"(f − 1)·T + 1 decoded frames (T = 4 for the Wan VAE, e.g. {(num_latent - 1) * 4 + 1}); "
                         "compute it with frame_identity_cosines on the decoded x̂0")
    num = -(-num_latent // chunk_frames)
    latent_chunk = jnp.arange(num_latent) // chunk_frames  # [f]
    pixel_chunk = latent_frame_of_pixel(num_pixel, temporal) // chunk_frames  # [F]
    return (jax.nn.one_hot(latent_chunk, num, dtype=jnp.float32),  # [f, C]
            jax.nn.one_hot(pixel_chunk, num, dtype=jnp.float32))  # [F, C]


def coherence_weights(frame_cos: Float[Array, "b t"], pixel_onehot: Float[Array, "t n"], delta: float, *,
                      clamp_cosine: bool = False, q_from: str = "frames", normalize: bool = False
                      ) -> Float[Array, "b n"]:
    """DreamID-V's chunk weights `Q_c`, without gradient: `Q = 1 / (cos + δ)` per decoded frame, averaged over
    the frames of chunk `c` (`pixel_onehot` `[F, C]` from `coherence_chunk_onehot`).

    As written, a cosine at or below `−δ` gives a weight `≤ 0` or an infinite one. Our variants (off by
    default): `clamp_cosine` uses `max(cos, 0)` (so `0 < Q ≤ 1/δ`); `q_from="chunk_cosine"` averages the
    cosines over the chunk and inverts that mean; `normalize` rescales `Q_c` to mean 1 over each sample's chunks.
    """
    if q_from not in COHERENCE_Q_FROM:
        raise ValueError(f"coherence q_from = {q_from!r}: allowed values are {list(COHERENCE_Q_FROM)}")
    cos = jax.lax.stop_gradient(frame_cos.astype(jnp.float32))  # [B, F]
    if clamp_cosine:
        cos = jnp.maximum(cos, 0.0)
    count = jnp.sum(pixel_onehot, axis=0)  # [C] decoded frames per chunk
    if q_from == "frames":
        q = (1.0 / (cos + delta)) @ pixel_onehot / count  # [B, C] mean of the per-frame Q
    else:
        q = 1.0 / ((cos @ pixel_onehot) / count + delta)  # [B, C] Q of the mean cosine
    if normalize:
        q = q / jnp.mean(q, axis=1, keepdims=True)
    return q


def identity_coherence_loss(v_pred: Float[Array, "b f h w c"], v_target: Float[Array, "b f h w c"],
                            frame_cos: Float[Array, "b t"], *, delta: float, chunk_frames: int = 1,
                            clamp_cosine: bool = False, q_from: str = "frames", normalize: bool = False,
                            chunk_reduce: str = "sum") -> Float[Array, "b"]:
    """DreamID-V's identity-coherence loss per sample: `Σ_c Q_c · mean(ℓ_c)`.

    `frame_cos` `[B, F]` holds `cos(E(x̂0_frame), E(ref))` for every decoded pixel frame (`F = (f − 1)·4 + 1`
    for the Wan VAE); `Q_c` is `coherence_weights` (no gradient). The paper *sums* over the chunks (its
    `Σ_{c=1}^{C}`), so the loss grows with the clip's length; `chunk_reduce="mean"` (our variant) divides by
    the number of chunks `C`. `mean(ℓ_c)` is the mean squared velocity error over chunk `c`'s latent positions
    and channels. Chunk `c` holds latent frames `[c·k, (c+1)·k)`, `k = chunk_frames` (1: one latent frame, the
    paper's VAE chunk)."""
    if chunk_reduce not in COHERENCE_CHUNK_REDUCE:
        raise ValueError(f"coherence chunk_reduce = {chunk_reduce!r}: allowed values are "
                         f"{list(COHERENCE_CHUNK_REDUCE)}")
    frame_err = jnp.mean(squared_error(v_pred, v_target), axis=(2, 3))  # [B, f]
    if frame_cos.ndim != 2 or frame_cos.shape[0] != frame_err.shape[0]:
        raise ValueError(f"frame_cos has shape {tuple(frame_cos.shape)}: expected [B, F] with B = "
                         f"{frame_err.shape[0]} (one cosine per decoded pixel frame)")
    latent_onehot, pixel_onehot = coherence_chunk_onehot(frame_err.shape[1], frame_cos.shape[1], chunk_frames)
    chunk_err = (frame_err @ latent_onehot) / jnp.sum(latent_onehot, axis=0)  # [B, C] mean(ℓ_c)
    q = coherence_weights(frame_cos, pixel_onehot, delta, clamp_cosine=clamp_cosine, q_from=q_from,
                          normalize=normalize)  # [B, C]
    reduce = jnp.sum if chunk_reduce == "sum" else jnp.mean
    return reduce(q * chunk_err, axis=1)


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


# ------------------------------------------------------------------------------------------ plug-ins
@dataclasses.dataclass(frozen=True)
class LossTerm:
    """One objective and what it reads, so the train step can feed it without knowing it by name.

    `objective(cfg, inputs) -> [B]`; `reads`: the `LossInputs` fields it needs beyond the velocities (how each
    is built in the train step: `train/pixel_terms.py`); `batch_keys(cfg)`: the pixel arrays of the data batch
    it reads; `decodes`: it reads the VAE-decoded x̂0; `decode_gradient`: its gradient flows back through that
    decode; `encoder`: it reads identity cosines from the image encoder `E`; `data_problem(cfg, data)`: why the
    data cannot feed it (a one-line message), or None.
    """

    objective: Callable[[LossConfig, LossInputs], jax.Array]
    reads: tuple[str, ...] = ()
    batch_keys: Callable[[LossConfig], tuple[str, ...]] = lambda cfg: ()
    decodes: bool = False
    decode_gradient: bool = False
    encoder: bool = False
    data_problem: Callable[[LossConfig, "DataConfig"], str | None] = lambda cfg, data: None


def _need(inputs: LossInputs, field: str, term: str) -> jax.Array:
    value = getattr(inputs, field)
    if value is None:
        raise ValueError(f"loss term {term!r} is on (LossConfig.{term}_weight > 0) but LossInputs.{field} is "
                         f"None: pass it ({LOSS_INPUT_HOW[field]}), or set LossConfig.{term}_weight = 0")
    return value


# how a caller outside the train step computes each optional field
LOSS_INPUT_HOW = {
    "subject_mask": "the subject mask pooled with pool_to_latent(mask, 'max')",
    "frame_cos": "frame_identity_cosines of the decoded x̂0 and the reference",
    "mear_weights": "mear_latent_weights of the target video and its landmarks",
    "x0_pred_px": "the decoded x̂0",
    "x0_px": "the target video",
    "head_mask": "the head mask in pixels",
    "identity_cos": "frame_identity_cosines of the decoded x̂0 and the reference",
}


def _flow_matching_term(cfg: LossConfig, x: LossInputs) -> jax.Array:
    return flow_matching_loss(x.v_pred, x.v_target)


def _region_term(cfg: LossConfig, x: LossInputs) -> jax.Array:
    return region_reweighted_loss(x.v_pred, x.v_target, _need(x, "subject_mask", "region"), cfg.region_lambda)


def _coherence_term(cfg: LossConfig, x: LossInputs) -> jax.Array:
    return identity_coherence_loss(x.v_pred, x.v_target, _need(x, "frame_cos", "coherence"),
                                   delta=cfg.coherence_delta, chunk_frames=cfg.coherence_chunk_frames,
                                   clamp_cosine=cfg.coherence_clamp_cosine, q_from=cfg.coherence_q_from,
                                   normalize=cfg.coherence_normalize_q, chunk_reduce=cfg.coherence_chunk_reduce)


def _mear_term(cfg: LossConfig, x: LossInputs) -> jax.Array:
    return mear_loss(x.v_pred, x.v_target, _need(x, "mear_weights", "mear"))


def _identity_term(cfg: LossConfig, x: LossInputs) -> jax.Array:
    return identity_loss(*[_need(x, f, "identity") for f in ("x0_pred_px", "x0_px", "head_mask", "identity_cos")])


def _mear_keys(cfg: LossConfig) -> tuple[str, ...]:
    return ("video", "keypoints") if cfg.mear_beta > 0 else ("video",)


def _mear_data_problem(cfg: LossConfig, data: "DataConfig") -> str | None:
    if cfg.mear_beta > 0 and data.num_keypoints == 0:
        return (f"loss.mear_beta = {cfg.mear_beta} weights pixels near landmarks, but data.num_keypoints = 0 puts "
                "none in the batch: set data.num_keypoints=K (5 for the synthetic clips) or loss.mear_beta=0")
    return None


# name -> plug-in; the order is the order of the terms in the metrics
LOSS_TERMS: dict[str, LossTerm] = {
    "flow_matching": LossTerm(_flow_matching_term),
    "region": LossTerm(_region_term, reads=("subject_mask",)),
    "coherence": LossTerm(_coherence_term, reads=("frame_cos",), batch_keys=lambda cfg: ("reference", "subject_mask"),
                          decodes=True, encoder=True),
    "mear": LossTerm(_mear_term, reads=("mear_weights",), batch_keys=_mear_keys, data_problem=_mear_data_problem),
    "identity": LossTerm(_identity_term, reads=("x0_pred_px", "x0_px", "head_mask", "identity_cos"),
                         batch_keys=lambda cfg: ("video", "reference", "subject_mask"), decodes=True,
                         decode_gradient=True, encoder=True),
}


def total_loss(cfg: LossConfig, inputs: LossInputs) -> tuple[Float[Array, ""], dict[str, Float[Array, ""]]]:
    """`mean_b Σ_k weight_k · term_k[b]` over the enabled terms, and metrics `{"loss", "loss/<term>"}`
    (each term's batch mean, unweighted)."""
    per_sample = jnp.zeros((inputs.v_pred.shape[0],), jnp.float32)  # [B]
    metrics = {}
    for name, term in cfg.enabled().items():
        values = term.objective(cfg, inputs)  # [B]
        metrics[f"loss/{name}"] = jnp.mean(values)
        per_sample = per_sample + cfg.weight(name) * values
    loss = jnp.mean(per_sample)
    metrics["loss"] = loss
    return loss, metrics


__all__ = ["LossConfig", "LossInputs", "LossTerm", "LOSS_TERMS", "total_loss", "squared_error",
           "flow_matching_loss", "region_reweighted_loss", "coherence_chunk_onehot", "coherence_weights",
           "identity_coherence_loss", "mear_loss", "identity_loss"]
