"""`SampleConfig`: how `swapjax.sample` turns inputs into a swapped video (read by `sample/pipeline.py`).

Set from the command line with `--set sample.<field>=<value>` (e.g. `sample.area=399360`); the flow sampler is
its own section, `SamplerConfig` from `swapjax/flow.py`, set as `sample.sampler.<field>` (e.g.
`sample.sampler.num_steps=30`, `sample.sampler.guidance_scale=4.5`) and validated there. The model and mask
sections come from the run config (`--config`).
"""

from __future__ import annotations

import dataclasses
import math

from swapjax.errors import require
from swapjax.flow import SamplerConfig

VAE_FRAMES = 4  # Wan VAE: pixel frames per latent frame after the first
SIZE_MULTIPLE = 16  # VAE downsampling (8) times the DiT patch (2)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class SampleConfig:
    """Sampler, working resolution, tunnel inpainting, long-video windows and the composite.

    Guidance scales here are defaults; the compiled step takes them as traced values, so changing them
    never recompiles (docs/design.md, "Sampling").
    """

    # flow sampler: solver, steps, shift, default guidance scales (static, hashable; validated by itself)
    sampler: SamplerConfig = SamplerConfig()
    seed: int = 0
    # working resolution: frames (or the tunnel crop) are scaled to about this many pixels, then padded to
    # multiples of 16; whole frames are only scaled down, tunnel crops up or down
    area: int = 832 * 480
    # tunnel inpainting: when the mask track's union covers less than this share of the frame, crop a window
    # around it (grown by `tunnel_context` of its size on every side) and swap at the working resolution
    tunnel_threshold: float = 0.05  # 0 turns tunnelling off
    tunnel_context: float = 0.5
    # long videos: windows of `window_frames` (1 mod 4) overlapping by `overlap_frames`, cross-faded; with an anchor
    # slot overlap_frames must be 1 mod the VAE's frames per latent, and it fixes the anchor's latent frame
    # (`fused_inputs.anchor_index`, read by training too): 5 -> latent frame 1 for the Wan VAE
    window_frames: int = 81
    overlap_frames: int = 5
    # composite: outside dilate(mask, composite_dilate) feathered by composite_feather the result is the
    # source; None takes MaskConfig.dilate_infer / MaskConfig.feather of the run config
    composite_dilate: int | None = None
    composite_feather: int | None = None
    # known-latent reuse (ours; sample/known.py): after every step the latent cells more than this many cells from
    # the mask take the source's latents at the step's noise level; None = off (the model's own background)
    known_margin: int | None = None
    text_len: int = 512  # text tokens the model reads (embeddings are zero-padded or cut to this)
    encode_chunk_frames: int = 4  # VAE encoder chunk (pixel frames, multiple of 4)
    decode_chunk_latents: int = 1  # VAE decoder chunk (latent frames)
    sheet_frames: int = 3  # rows of the PNG sheet (source | mask | reference | result)
    progress: bool = True  # tqdm bars for encode, steps and decode

    def __post_init__(self):
        require(isinstance(self.sampler, SamplerConfig),
                f"SampleConfig.sampler ({self.sampler!r}) must be a swapjax.flow.SamplerConfig")
        require(_int(self.seed), f"SampleConfig.seed ({self.seed!r}) must be an integer")
        require(_int(self.area) and self.area >= SIZE_MULTIPLE ** 2,
                f"SampleConfig.area ({self.area!r}) must be an integer >= {SIZE_MULTIPLE ** 2} pixels "
                "(e.g. 399360 for 832x480)")
        require(_number(self.tunnel_threshold) and 0.0 <= self.tunnel_threshold < 1.0,
                f"SampleConfig.tunnel_threshold ({self.tunnel_threshold!r}) must be in [0, 1) (0 = never tunnel)")
        require(_number(self.tunnel_context) and self.tunnel_context >= 0.0,
                f"SampleConfig.tunnel_context ({self.tunnel_context!r}) must be a number >= 0 (share of the mask "
                "box added on every side)")
        require(_int(self.window_frames) and self.window_frames >= 1 + VAE_FRAMES
                and self.window_frames % VAE_FRAMES == 1,
                f"SampleConfig.window_frames ({self.window_frames!r}) must be 1 mod {VAE_FRAMES} and >= 5 "
                "(e.g. 81)")
        require(_int(self.overlap_frames) and 0 <= self.overlap_frames <= self.window_frames - 2,
                f"SampleConfig.overlap_frames ({self.overlap_frames!r}) must be in [0, window_frames - 2 = "
                f"{self.window_frames - 2}] so every window adds new frames")
        for name in ("composite_dilate", "composite_feather"):
            value = getattr(self, name)
            require(value is None or (_int(value) and value >= 0),
                    f"SampleConfig.{name} ({value!r}) must be None (take it from the mask config) or an int >= 0")
        require(self.known_margin is None or (_int(self.known_margin) and self.known_margin >= 0),
                f"SampleConfig.known_margin ({self.known_margin!r}) must be None (off) or an int >= 0 (latent cells "
                "between the mask and the reused source latents)")
        require(_int(self.text_len) and self.text_len >= 1,
                f"SampleConfig.text_len ({self.text_len!r}) must be an integer >= 1 (Wan uses 512)")
        require(_int(self.encode_chunk_frames) and self.encode_chunk_frames >= VAE_FRAMES
                and self.encode_chunk_frames % VAE_FRAMES == 0,
                f"SampleConfig.encode_chunk_frames ({self.encode_chunk_frames!r}) must be a positive multiple "
                f"of {VAE_FRAMES}")
        require(_int(self.decode_chunk_latents) and self.decode_chunk_latents >= 1,
                f"SampleConfig.decode_chunk_latents ({self.decode_chunk_latents!r}) must be an integer >= 1")
        require(_int(self.sheet_frames) and self.sheet_frames >= 1,
                f"SampleConfig.sheet_frames ({self.sheet_frames!r}) must be an integer >= 1")

    @property
    def num_branches(self) -> int:
        """Guidance branches per step (one batched model call): 2 (conditional, null reference and text) or 3
        (null, reference without text, reference with text) when the text has its own scale. The count is
        fixed by the config, not by the scale's value, so every scale runs the same compiled step."""
        return 2 if self.sampler.text_guidance_scale is None else 3

    def replace(self, **changes) -> "SampleConfig":
        return dataclasses.replace(self, **changes)
