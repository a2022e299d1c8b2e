"""Shared pieces of the swap-model tests: the tiny swap config, random states, inputs, jitted pure functions."""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import swap_reference
from swapjax.config import load_config
from swapjax.models.conditions import IdentityInputs, PointInputs, PoseInputs
from swapjax.models.dit_config import DiTConfig
from swapjax.models.swap import SwapInputs, abstract_swap, swap_apply, swap_prefix_cache, swap_video_step
from swapjax.models.swap_config import SwapConfig

CONFIGS = pathlib.Path(__file__).parent.parent / "configs"
TINY = load_config(CONFIGS / "swap_tiny.py")
DIT: DiTConfig = TINY.dit
SWAP: SwapConfig = TINY.swap  # reference + anchor, conditions off
# the conditions at test sizes (SwapConfig.conditions: name -> that condition's Settings arguments)
TINY_CONDITIONS = {"pose": {"widths": (8,)}, "identity": {"dim": 8},
                   "points": {"num_points": 4, "point_dim": 8, "hidden": 16}}
ALL_ON = dataclasses.replace(SWAP, conditions={**TINY_CONDITIONS, "points": {**TINY_CONDITIONS["points"], "layers": (1,)}})

prefix_cache = jax.jit(swap_prefix_cache, static_argnums=0)
video_step = jax.jit(swap_video_step, static_argnums=0)
apply = jax.jit(swap_apply, static_argnums=0)
# the checking-only single pass over [prefix; video] (two attention calls per layer, or one dense mask)
single_pass = jax.jit(swap_reference.single_pass, static_argnums=0)
dense_single_pass = jax.jit(swap_reference.dense_single_pass, static_argnums=0)


def random_state(cfg: DiTConfig = DIT, swap: SwapConfig = ALL_ON, seed: int = 0) -> tuple[nnx.GraphDef, nnx.State]:
    """Every parameter random (the init zeroes output heads and zero-init branches, which would hide bugs); built
    from the abstract model, so no initialiser runs."""
    graphdef, state = abstract_swap(cfg, swap)
    rng = np.random.default_rng(seed)
    for path, var in nnx.to_flat_state(state):
        value = 0.3 * rng.standard_normal(var.shape) + (1.0 if path[-1] == "scale" else 0.0)
        var.set_value(jnp.asarray(value, var.dtype))
    return graphdef, state


def restrict(state: nnx.State, cfg: DiTConfig, swap: SwapConfig) -> tuple[nnx.GraphDef, nnx.State]:
    """The same parameters for a swap model with fewer conditions (the extra modules' parameters dropped)."""
    graphdef, target = abstract_swap(cfg, swap)
    values = {path: var.get_value() for path, var in nnx.to_flat_state(state)}
    for path, var in nnx.to_flat_state(target):
        var.set_value(values[path])
    return graphdef, target


def inputs(swap: SwapConfig = ALL_ON, *, b: int = 2, f: int = 3, h: int = 4, w: int = 4, lt: int = 5, li: int = 3,
           seed: int = 1) -> SwapInputs:
    """Random fused video/prefix inputs for `DIT` with every built-in condition's inputs under its name."""
    rng = np.random.default_rng(seed)
    c = DIT.in_channels
    frames = (f - 1) * swap.frames_per_latent + 1
    px = swap.pixels_per_latent
    k, e = TINY_CONDITIONS["points"]["num_points"], TINY_CONDITIONS["points"]["point_dim"]  # the test sizes
    pose_channels, identity_dim = swap.condition_channels, TINY_CONDITIONS["identity"]["dim"]
    points = PointInputs(
        coords=rng.uniform(0, [w * px, h * px], (b, frames, k, 2)).astype(np.float32),
        visible=rng.uniform(size=(b, frames, k)) < 0.8,
        embeddings=rng.standard_normal((b, k, e)).astype(np.float32))
    return SwapInputs(
        fused=rng.standard_normal((b, f, h, w, c)).astype(np.float32),
        t=rng.uniform(size=(b,)).astype(np.float32),
        context=rng.standard_normal((b, lt, DIT.text_dim)).astype(np.float32),
        image_context=rng.standard_normal((b, li, DIT.image_dim)).astype(np.float32),
        prefix=rng.standard_normal((b, swap.num_prefix_frames, h, w, c)).astype(np.float32),
        conditions=dict(pose=PoseInputs(rng.standard_normal((b, f, h, w, pose_channels)).astype(np.float32)),
                        identity=IdentityInputs(rng.standard_normal((b, identity_dim)).astype(np.float32)),
                        points=points))


def only(x: SwapInputs, *names: str, **replaced) -> SwapInputs:
    """`x` with only the named conditions (each replaceable by keyword)."""
    conditions = {name: replaced.get(name, x.conditions[name]) for name in names}
    return x._replace(conditions=conditions)

