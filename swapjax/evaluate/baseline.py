"""The VAE's own reconstruction of a case's source: what the background would look like if the DiT returned
exactly the latents it was given. Scored on the same pixels as `bg_*_raw`, it is the ceiling of the model's
background before the composite (`scores.py`, column `bg_psnr_vae`)."""

from __future__ import annotations

import numpy as np

from swapjax.sample.composite import to_uint8, to_unit
from swapjax.sample.config import SampleConfig
from swapjax.sample.engine import Engine
from swapjax.sample.geometry import pad_frames, plan_geometry, vae_frame_count
from swapjax.sample.inputs import JobInputs


def vae_reconstruction(engine: Engine, inputs: JobInputs, cfg: SampleConfig) -> np.ndarray:
    """The source through the VAE alone (encode to the posterior mean, decode) at the sampler's working geometry
    (tunnel crop, resize, pad), put back into source pixels: uint8 `[F, H0, W0, 3]`; outside a tunnel crop the
    source itself."""
    video = inputs.video  # [F, H0, W0, 3]
    num_frames = video.shape[0]
    geo = plan_geometry(video.shape[1:3], inputs.mask, cfg)
    pixels = to_unit(pad_frames(geo.to_model(video), vae_frame_count(num_frames)))  # [F', H, W, 3]
    latents = engine.encode(pixels[None], "encode source")  # [1, f, h, w, z]
    decoded = engine.decode(latents)[0][:num_frames]  # [F, H, W, 3] in [-1, 1]
    return geo.paste(video, to_uint8(geo.from_model(decoded)))
