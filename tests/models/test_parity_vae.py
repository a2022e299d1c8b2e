"""Parity of swapjax's Wan2.1 VAE with diffusers' `AutoencoderKLWan` (float32, tiny random configs).

The reference checkpoint goes through `convert_vae`, so these tests cover the converter too. Both swapjax modes
(one pass, chunked with the causal cache) are compared with diffusers' `encode().latent_dist` and `decode()`,
and with each other.
"""

from __future__ import annotations

import contextlib
from unittest import mock

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers.models.autoencoders import autoencoder_kl_wan
from flax import nnx

from swapjax.convert.vae import convert_vae
from swapjax.models import vae as wan_vae
from helpers import rel_err
from wan_vae_torch import build_reference, from_torch_video, to_torch_video

TOL = 1e-5
CONFIGS = {
    # The Wan2.1 layout (levels, res blocks, temporal pattern, z_dim) at a tiny width.
    "wan21": dict(base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                  temperal_downsample=[False, True, True]),
    # Encoder attention at two scales, 3 levels (spatial x4), temporal downsampling in the first two levels.
    "attn": dict(base_dim=8, z_dim=4, dim_mult=[1, 2, 2], num_res_blocks=1, attn_scales=[1.0, 0.5],
                 temperal_downsample=[True, True]),
}
SIZES = {"wan21": (32, 16), "attn": (16, 24)}  # (H, W), non-square


@contextlib.contextmanager
def _attention_ignores_cache():
    """diffusers 0.42's encoder calls every down block with `feat_cache`/`feat_idx`, which
    `WanAttentionBlock.forward` does not accept, so `attn_scales` crashes there. The block is per-frame and
    keeps no cache, so the reference is made to drop those arguments; its math is untouched."""
    forward = autoencoder_kl_wan.WanAttentionBlock.forward
    with mock.patch.object(autoencoder_kl_wan.WanAttentionBlock, "forward",
                           lambda self, x, **unused: forward(self, x)):
        yield


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, tmp_path_factory):
    name = request.param
    ref = build_reference(seed=len(name), **CONFIGS[name])
    path = tmp_path_factory.mktemp(f"vae_{name}")
    ref.save_pretrained(path)
    cfg, state = convert_vae(path)
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: wan_vae.WanVAE(cfg, rngs=nnx.Rngs(0))))
    return name, ref, cfg, graphdef, state


@pytest.mark.parametrize("frames", [1, 5, 9, 17])
def test_encode_matches_diffusers(pair, frames):
    name, ref, cfg, graphdef, state = pair
    h, w = SIZES[name]
    video = np.random.default_rng(frames).uniform(-1, 1, (2, frames, h, w, 3)).astype(np.float32)
    with torch.no_grad(), _attention_ignores_cache():
        dist = ref.encode(to_torch_video(video)).latent_dist
    want_mean, want_logvar = from_torch_video(dist.mean), from_torch_video(dist.logvar)

    mean, logvar = wan_vae.vae_encode(graphdef, state, jnp.asarray(video))
    c_mean, c_logvar = wan_vae.vae_encode_chunked(graphdef, state, video)

    f_lat = (frames - 1) // cfg.temporal_factor + 1
    assert mean.shape == (2, f_lat, h // cfg.spatial_factor, w // cfg.spatial_factor, cfg.z_dim)
    assert c_mean.shape == mean.shape and want_mean.shape == mean.shape
    errors = {"one-pass mean": rel_err(mean, want_mean), "one-pass logvar": rel_err(logvar, want_logvar),
              "chunked mean": rel_err(c_mean, want_mean), "chunked logvar": rel_err(c_logvar, want_logvar),
              "chunked vs one-pass": rel_err(c_mean, mean)}
    print(f"\n[{name} encode F={frames}] " + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))
    assert max(errors.values()) <= TOL, errors


@pytest.mark.parametrize("frames", [1, 5, 9, 17])
def test_decode_matches_diffusers(pair, frames):
    name, ref, cfg, graphdef, state = pair
    h, w = (s // cfg.spatial_factor for s in SIZES[name])
    f_lat = (frames - 1) // cfg.temporal_factor + 1
    z = np.random.default_rng(100 + frames).normal(size=(2, f_lat, h, w, cfg.z_dim)).astype(np.float32)
    with torch.no_grad():
        want = from_torch_video(ref.decode(to_torch_video(z)).sample)

    video = wan_vae.vae_decode(graphdef, state, jnp.asarray(z))
    c_video = wan_vae.vae_decode_chunked(graphdef, state, z)

    assert video.shape == (2, frames, *SIZES[name], 3) and c_video.shape == video.shape == want.shape
    # The output is clipped to [-1, 1] like diffusers; keep the comparison meaningful.
    assert np.mean(np.abs(want) >= 1.0) < 0.5
    errors = {"one-pass": rel_err(video, want), "chunked": rel_err(c_video, want),
              "chunked vs one-pass": rel_err(c_video, video)}
    print(f"\n[{name} decode F={frames}] " + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))
    assert max(errors.values()) <= TOL, errors


def test_chunk_sizes_do_not_change_the_result(pair):
    """Longer chunks (8 pixel frames / 2 latent frames per step) give the diffusers-sized chunks' result."""
    name, _, cfg, graphdef, state = pair
    h, w = SIZES[name]
    video = np.random.default_rng(7).uniform(-1, 1, (1, 17, h, w, 3)).astype(np.float32)
    mean4, _ = wan_vae.vae_encode_chunked(graphdef, state, video, chunk_frames=4)
    mean8, _ = wan_vae.vae_encode_chunked(graphdef, state, video, chunk_frames=8)
    assert rel_err(mean8, mean4) <= TOL
    dec1 = wan_vae.vae_decode_chunked(graphdef, state, mean4, chunk_latents=1)
    dec2 = wan_vae.vae_decode_chunked(graphdef, state, mean4, chunk_latents=2)
    assert rel_err(dec2, dec1) <= TOL
