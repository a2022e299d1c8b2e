"""Analytic matmul FLOPs of the swap model's train step and sampling step (built on `dit_flops`).

The swap model runs two streams through the same layers (`models/swap.py`): the prefix stream (reference and
anchor frames, `Lp` tokens, attending to itself) and the video stream (`Lv` tokens, reading the prefix K/V).
Both embed the same context once (`swap_context`), so the text and image embedding products are counted once;
the prefix stream has no output head. Training back-propagates through both streams; a sampling step runs the
video stream of every guidance branch against cached prefix K/V and context. The optional conditions
(pose-attention, identity token, points) are small and not counted.
"""

from __future__ import annotations

import dataclasses
import math

from swapjax.models.dit_config import DiTConfig
from swapjax.models.dit_flops import dit_flops
from swapjax.models.swap_config import SwapConfig


@dataclasses.dataclass(frozen=True)
class TokenCounts:
    """Tokens per sample of one swap-model call."""

    video: int  # Lv: latent frames x patches per frame
    prefix: int  # Lp: prefix frames x patches per frame
    text: int  # Lt
    image: int = 0  # Li: image-encoder tokens (I2V-based models, 0 when absent)


def token_counts(dit: DiTConfig, swap: SwapConfig, *, frames: int, height: int, width: int, text: int,
                 image: int = 0) -> TokenCounts:
    """Tokens of a clip of `frames` pixel frames at `height x width` pixels (VAE factors from `swap`)."""
    f = 1 + (frames - 1) // swap.frames_per_latent
    pt, ph, pw = dit.patch_size
    per_frame = (height // swap.pixels_per_latent // ph) * (width // swap.pixels_per_latent // pw)
    return TokenCounts(video=(f // pt) * per_frame, prefix=swap.num_prefix_frames * per_frame, text=text,
                       image=image)


def _head(dit: DiTConfig, batch: int, tokens: int) -> float:
    return 2.0 * batch * tokens * dit.inner_dim * math.prod(dit.patch_size) * dit.out_channels


def _text_input(dit: DiTConfig, batch: int, tokens: int) -> float:
    """The first text projection (its input is data)."""
    return 2.0 * batch * tokens * dit.text_dim * dit.inner_dim


def swap_train_flops(dit: DiTConfig, batch: int, tokens: TokenCounts) -> float:
    """Matmul FLOPs of one training step (forward + backward of both streams) on a global batch of `batch`."""
    video = dit_flops(dit, batch=batch, video_tokens=tokens.video, text_tokens=tokens.text,
                      image_tokens=tokens.image, prefix_tokens=tokens.prefix)
    if not tokens.prefix:
        return video.train_step
    prefix = dit_flops(dit, batch=batch, video_tokens=tokens.prefix, text_tokens=tokens.text,
                       image_tokens=tokens.image)
    forward = prefix.video - _head(dit, batch, tokens.prefix) + prefix.time  # no head; context counted in `video`
    data = prefix.data_inputs - _text_input(dit, batch, tokens.text)  # patch and time inputs
    return video.train_step + 3.0 * forward - data


def swap_sample_step_flops(dit: DiTConfig, branches: int, tokens: TokenCounts) -> float:
    """Matmul FLOPs of one sampling step: the video stream of `branches` guidance branches (cached prefix K/V
    and context)."""
    video = dit_flops(dit, batch=branches, video_tokens=tokens.video, text_tokens=tokens.text,
                      image_tokens=tokens.image, prefix_tokens=tokens.prefix)
    return video.video + video.time
