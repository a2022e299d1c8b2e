"""The benchmark DiT (shapes, inputs) and its jitted forward and AdamW training step, shared by the benchmarks.

Full size: D = 256 (2 heads × 128), FFN 1024, 4 layers, latent `[1, 8, 32, 32, 16]` (2,048 tokens), text
context `[1, 512, 4096]`, float32. `--quick` shrinks everything so a benchmark finishes in seconds.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from swapjax.compile_options import compiler_options
from swapjax.convert.dit import dit_config_from_diffusers
from swapjax.models.dit import dit_apply
from swapjax.models.dit_config import DiTConfig

# diffusers WanTransformer3DModel arguments of the benchmark model; DiTConfig follows from the converter
TORCH_CONFIG = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=128, in_channels=16,
                    out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=1024, num_layers=4)
QUICK_TORCH_CONFIG = dict(TORCH_CONFIG, attention_head_dim=16, text_dim=64, freq_dim=32, ffn_dim=64, num_layers=2)


def dit_config(*, quick: bool = False) -> DiTConfig:
    """The swapjax config of the benchmark model (what converting the diffusers model gives)."""
    return dit_config_from_diffusers(QUICK_TORCH_CONFIG if quick else TORCH_CONFIG)


@dataclasses.dataclass(frozen=True)
class Shapes:
    """Input sizes of one benchmark step (one sample)."""

    latent: tuple[int, int, int, int, int]  # [B, f, h, w, C] channels-last
    text_tokens: int

    def tokens(self, cfg: DiTConfig) -> int:
        """Video tokens after patching."""
        b, f, h, w, _ = self.latent
        pt, ph, pw = cfg.patch_size
        return (f // pt) * (h // ph) * (w // pw)


SHAPES = Shapes(latent=(1, 8, 32, 32, 16), text_tokens=512)
QUICK_SHAPES = Shapes(latent=(1, 2, 8, 8, 16), text_tokens=16)

# AdamW settings used on both sides (torch.optim.AdamW's defaults, written out)
LR, BETAS, EPS, WEIGHT_DECAY = 1e-4, (0.9, 0.999), 1e-8, 1e-2


def random_state(abstract: nnx.State, seed: int = 0, std: float = 0.02) -> nnx.State:
    """Every parameter of an abstract state set to N(0, std²) (norm scales to 1 + N(0, std²)), without running
    the initialisers (eager NNX initialisation of the stacked blocks takes seconds)."""
    rng = np.random.default_rng(seed)
    for path, var in nnx.to_flat_state(abstract):
        value = std * rng.standard_normal(var.shape) + (1.0 if path[-1] == "scale" else 0.0)
        var.set_value(jnp.asarray(value, var.dtype))
    return abstract


def inputs(cfg: DiTConfig, shapes: Shapes, seed: int = 0) -> dict[str, np.ndarray]:
    """Random latents, per-sample t in [0, 1], text context and regression target (numpy, float32)."""
    rng = np.random.default_rng(seed)
    b = shapes.latent[0]
    return dict(latents=rng.standard_normal(shapes.latent, dtype=np.float32),
                t=rng.uniform(0.05, 0.95, (b,)).astype(np.float32),
                context=rng.standard_normal((b, shapes.text_tokens, cfg.text_dim), dtype=np.float32),
                target=rng.standard_normal((*shapes.latent[:4], cfg.out_channels), dtype=np.float32))


def adamw() -> optax.GradientTransformation:
    """optax AdamW with the same settings as the torch side."""
    return optax.adamw(LR, b1=BETAS[0], b2=BETAS[1], eps=EPS, weight_decay=WEIGHT_DECAY)


def jax_forward(graphdef: nnx.GraphDef) -> Callable[..., jax.Array]:
    """Jitted `(state, latents, t, context) -> velocity [B, f, h, w, C]`."""
    return jax.jit(lambda state, latents, t, context: dit_apply(graphdef, state, latents, t, context),
                   compiler_options=compiler_options())


def jax_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation) -> Callable[..., Any]:
    """Jitted `(params, opt_state, latents, t, context, target) -> (params, opt_state, loss)`: mean-square loss
    of the velocity, its gradient, one optimizer update; params and optimizer state donated; compiled with
    `swapjax.compile_options.compiler_options()`."""

    def step(params, opt_state, latents, t, context, target):
        def loss_fn(p):
            v = dit_apply(graphdef, p, latents, t, context)  # [B, f, h, w, C]
            return jnp.mean(jnp.square(v - target))

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return jax.jit(step, donate_argnums=(0, 1), compiler_options=compiler_options())
