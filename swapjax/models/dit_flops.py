"""Analytic matmul FLOPs of the Wan DiT (forward and training step), for MFU figures and step-time projections.

Counted: every matrix product (2·m·n·k), attention's two products per head included; not counted: norms,
activations, softmax and other elementwise work (the usual model-FLOPs convention). Compiler counts
(`cost_analysis()["flops"]`) see a scanned layer body once, so they undercount a scanned stack; this does not.

The training step is the forward plus twice the forward for the backward (a gradient for each operand of each
product), except the products whose input is data (the patch embedding of the latents, the first text projection,
the first time projection of the timestep sinusoid): they need only the weight gradient. (The image embedding
starts with an affine LayerNorm, whose parameters need the gradient of that first product's input.)
"""

from __future__ import annotations

import dataclasses
import math

from swapjax.models.dit_config import DiTConfig


@dataclasses.dataclass(frozen=True)
class DiTFlops:
    """FLOPs of one forward: by part, and the share of the products whose input is data."""

    video: float  # patch embedding, blocks, output head
    context: float  # text (and image) embeddings
    time: float  # time MLP and modulation projection
    data_inputs: float  # the part of the above whose input is data (backward = weight gradient only)

    @property
    def forward(self) -> float:
        return self.video + self.context + self.time

    @property
    def train_step(self) -> float:
        """Forward + backward (optimizer update not counted)."""
        return 3.0 * self.forward - self.data_inputs


def dit_flops(cfg: DiTConfig, *, batch: int, video_tokens: int, text_tokens: int, image_tokens: int = 0,
              prefix_tokens: int = 0, per_token_time: bool = False) -> DiTFlops:
    """Matmul FLOPs of one `WanDiT` forward on `batch` samples.

    `video_tokens`: tokens per sample (after patching); `image_tokens`: I2V image-encoder tokens (ignored for
    T2V configs); `prefix_tokens`: keys/values of a prefix stream that the video queries also read (computed
    elsewhere, not counted here); `per_token_time`: one timestep per token (the time MLP runs per token)
    instead of per sample.
    """
    d, f, lv, lt = cfg.inner_dim, cfg.ffn_dim, video_tokens, text_tokens
    li = image_tokens if cfg.is_i2v else 0
    mm = lambda m, k, n: 2.0 * m * k * n  # noqa: E731 - one product [m, k] @ [k, n]
    rows = lv if per_token_time else 1  # time MLP rows
    patch = mm(lv, math.prod(cfg.patch_size) * cfg.in_channels, d)
    keys = prefix_tokens + lv
    layer = (mm(lv, d, 3 * d) + 2 * mm(lv, keys, d) + mm(lv, d, d)  # self-attention: q/k/v, scores + values, out
             + mm(lv, d, d) + mm(lt, d, 2 * d) + 2 * mm(lv, lt, d) + mm(lv, d, d)  # cross-attention (text)
             + mm(li, d, 2 * d) + 2 * mm(lv, li, d)  # cross-attention (image branch, I2V)
             + 2 * mm(lv, d, f))  # feed-forward
    head = mm(lv, d, math.prod(cfg.patch_size) * cfg.out_channels)
    text_in, image_dim = mm(lt, cfg.text_dim, d), cfg.image_dim or 0
    context = text_in + mm(lt, d, d) + mm(li, image_dim, image_dim) + mm(li, image_dim, d)
    time_in = mm(rows, cfg.freq_dim, d)
    time = time_in + mm(rows, d, d) + mm(rows, d, 6 * d)
    return DiTFlops(video=batch * (patch + cfg.num_layers * layer + head), context=batch * context,
                    time=batch * time, data_inputs=batch * (patch + text_in + time_in))
