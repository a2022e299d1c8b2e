"""Shared pieces of the sampling tests: the tiny swap config, random-weight models and checkpoints, small inputs."""

from __future__ import annotations

import pathlib

import jax.numpy as jnp
import numpy as np
from flax import nnx

from swapjax.config import load_config
from swapjax.flow import SamplerConfig
from swapjax.models.swap import abstract_swap
from swapjax.models.vae import abstract_vae
from swapjax.sample.checkpoint import SamplingModels, save_sampling_checkpoint
from swapjax.sample.config import SampleConfig
from swapjax.sample.inputs import JobInputs

CONFIG_PATH = pathlib.Path(__file__).parent.parent / "configs" / "swap_tiny.py"
CONFIG = load_config(CONFIG_PATH)
# tiny sampling: 32x32 model frames, 5-frame windows, 2 steps, 8 text tokens
SAMPLE_SETS = ["sample.area=1024", "sample.text_len=8", "sample.sampler.num_steps=2", "sample.window_frames=5",
               "sample.overlap_frames=1", "sample.progress=false"]
SAMPLE = SampleConfig(area=1024, text_len=8, sampler=SamplerConfig(num_steps=2), window_frames=5, overlap_frames=1,
                      progress=False)


def random_values(state: nnx.State, seed: int, scale: float = 0.2) -> nnx.State:
    """Every parameter of an (abstract) state drawn at random, norm scales around 1 (no eager model init)."""
    rng = np.random.default_rng(seed)
    for path, var in nnx.to_flat_state(state):
        base = 1.0 if path[-1] in ("scale", "gamma") else 0.0
        var.set_value(jnp.asarray(base + scale * rng.standard_normal(var.shape), var.dtype))
    return state


def random_models(config=CONFIG, seed: int = 0) -> SamplingModels:
    dit_graph, dit_state = abstract_swap(config.dit, config.swap)
    vae_graph, vae_state = abstract_vae(config.vae)
    return SamplingModels(config, dit_graph, random_values(dit_state, seed), vae_graph,
                          random_values(vae_state, seed + 1, 0.1))


def write_checkpoint(path: pathlib.Path, config=CONFIG, seed: int = 0) -> pathlib.Path:
    models = random_models(config, seed)
    return save_sampling_checkpoint(path, config, models.dit_state, models.vae_state)


def clip(num_frames: int = 5, height: int = 32, width: int = 32, seed: int = 0) -> np.ndarray:
    """uint8 `[F, H, W, 3]` smooth moving gradients."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(60, 190, size=3)
    frames = [np.stack([base[c] + 40 * np.sin(xs / 6 + t / 2 + c) + 25 * np.cos(ys / 5 - t / 3)
                        for c in range(3)], axis=-1) for t in range(num_frames)]
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


def box_track(num_frames: int = 5, height: int = 32, width: int = 32, size: int = 10) -> np.ndarray:
    """uint8 `[F, H, W]`: a `size` box drifting right one pixel a frame."""
    mask = np.zeros((num_frames, height, width), np.uint8)
    for t in range(num_frames):
        x0 = min(4 + t, width - size)
        mask[t, 8:8 + size, x0:x0 + size] = 1
    return mask


def reference(size: int = 24, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def swap_inputs(num_frames: int = 5, height: int = 32, width: int = 32, seed: int = 0, **kw) -> JobInputs:
    return JobInputs(f"clip{seed}", clip(num_frames, height, width, seed), box_track(num_frames, height, width),
                      reference(seed=seed + 3), 12.0, **kw)
