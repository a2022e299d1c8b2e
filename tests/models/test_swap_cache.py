"""Reference K/V cache (with the conditions' per-video features): computed once per video and guidance branch, it
gives the uncached model's numbers at every sampling step, the step function compiles once, and XLA's cost analysis
shows the prefix work gone."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from swapjax.models.fused_inputs import fuse_video_inputs, pack_mask, prefix_inputs
from swapjax.models.swap import SwapInputs, null_prefix, swap_video_step
from swap_reference import concat_caches
from swap_fixtures import ALL_ON, DIT, SWAP, apply, inputs, prefix_cache, random_state, single_pass, video_step
from helpers import rel_err

B, F, H, W = 2, 9, 32, 32  # 9 frames -> 3 latent frames of 4x4
GUIDANCE = 3.0


def test_cached_equals_uncached_over_steps_and_both_guidance_branches():
    graphdef, state = random_state(DIT, ALL_ON)
    x = inputs(ALL_ON)
    rng = np.random.default_rng(5)
    z_r, z_a, agnostic, cond, noise = (rng.standard_normal(s).astype(np.float32) for s in
                                       [(B, 1, 4, 4, 16)] * 2 + [(B, 3, 4, 4, 16)] * 3)
    mask = np.zeros((B, F, H, W), np.float32)
    mask[:, :, 8:24, 4:20] = 1.0
    packed = pack_mask(mask)
    prefix, null = prefix_inputs(z_r, z_a), null_prefix(z_r, ALL_ON, z_a)
    context, image = x.context, x.image_context
    null_context, null_image = np.zeros_like(context), np.zeros_like(image)

    # once per video: one cache per guidance branch (the same conditions in both), stacked as one batch
    # [conditional; null]
    first = fuse_video_inputs(noise, packed, agnostic, cond)  # the video's shape; conditions are per video
    branch = SwapInputs(first, np.ones((B,), np.float32), context, image, prefix=prefix, conditions=x.conditions)
    null_branch = branch._replace(context=null_context, image_context=null_image, prefix=null)
    cache = concat_caches(prefix_cache(graphdef, state, branch), prefix_cache(graphdef, state, null_branch))
    traces = []

    @jax.jit
    def cached_step(state, cache, z, sigma, sigma_next, scale):
        traces.append(1)
        fused = fuse_video_inputs(z, packed, agnostic, cond)
        v = swap_video_step(graphdef, state, cache, jnp.concatenate([fused, fused], axis=0), jnp.full((2 * B,), sigma))
        v_cond, v_null = v[:B], v[B:]
        return z + (sigma_next - sigma) * (v_null + scale * (v_cond - v_null)), v_cond, v_null

    sigmas = np.array([1.0, 0.8, 0.55, 0.3, 0.0], np.float32)
    z_cached = z_plain = noise
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        z_cached, v_cond, v_null = cached_step(state, cache, z_cached, sigma, sigma_next, GUIDANCE)
        fused = fuse_video_inputs(z_plain, packed, agnostic, cond)
        t = np.full((B,), sigma)
        u_cond = single_pass(graphdef, state, branch._replace(fused=fused, t=t))
        u_null = single_pass(graphdef, state, null_branch._replace(fused=fused, t=t))
        assert rel_err(v_cond, u_cond) <= 1e-6 and rel_err(v_null, u_null) <= 1e-6, sigma
        assert rel_err(v_cond, v_null) > 1e-2  # the two branches really differ
        z_plain = z_plain + (sigma_next - sigma) * (u_null + GUIDANCE * (u_cond - u_null))
    assert rel_err(z_cached, z_plain) <= 1e-6
    assert len(traces) == 1  # one compiled step for every step, sigma and guidance scale


def _flops(fn, *args, **kwargs) -> float:
    return float(fn.lower(*args, **kwargs).compile().cost_analysis()["flops"])


def test_cached_step_drops_the_prefix_work():
    """Like with like (each compiled program holds the layer scan once): the training forward = prefix stream +
    video stream; a cached sampling step keeps only the video stream, so its flops are the forward's minus the
    prefix stream's; the single pass over [prefix; video] costs more than the cached step by at least half the
    prefix's token share."""
    graphdef, state = random_state(DIT, SWAP)
    x = inputs(SWAP)
    x = x._replace(conditions=None)
    cache = prefix_cache(graphdef, state, x)
    cached = _flops(video_step, graphdef, state, cache, x.fused, x.t)
    prefix = _flops(prefix_cache, graphdef, state, x)
    forward = _flops(apply, graphdef, state, x)
    single = _flops(single_pass, graphdef, state, x)
    share = SWAP.num_prefix_frames / (SWAP.num_prefix_frames + x.fused.shape[1])  # 2 / 5 of the tokens

    assert cached + 0.9 * prefix <= forward  # would fail if the cached step recomputed the prefix
    assert abs(forward - (cached + prefix)) <= 0.05 * forward
    assert cached <= (1.0 - 0.5 * share) * single
    print(f"\nflops per step: cached {cached:.3e}, uncached two-stream {forward:.3e} "
          f"(ratio {cached / forward:.3f}), uncached single pass {single:.3e} (ratio {cached / single:.3f}); "
          f"prefix stream {prefix:.3e}, prefix token share {share:.2f}")
