"""The train step: a pure `(state, batch, frozen) -> (state, metrics)`, compiled once by the loop.

    step = make_train_step(objective, tx, labels, ema_decay=..., grad_accum=..., lora_scale=...)
    compiled = jax.jit(step, in_shardings=..., out_shardings=..., donate_argnums=0).lower(...).compile()

`objective(model_params, batch, key, frozen) -> (loss, metrics)` is the loss of one (micro-)batch with the
model's parameters as an NNX pure dict (`swapjax.train.objective` builds the swap DiT's; `vae_stage` the
VAE's). `frozen` carries read-only auxiliary parameters (a VAE decoder, an image encoder) as an argument, so
they are never baked into the compiled program as constants; it may be None.

Inside the step:
- the per-step key is `fold_in(rng, step)`: the same step always draws the same numbers, so a resumed run
  repeats an uninterrupted one bit for bit;
- frozen leaves enter the loss under `stop_gradient` (no gradient is computed for them) and are carried over
  untouched; LoRA adapters are merged into the kernels before the forward (`swapjax.train.lora`);
- gradient accumulation splits the batch into `grad_accum` strided micro-batches and scans over them; the
  loss and gradients are their means, equal to one full-batch step (per-sample losses are never normalised
  across the batch);
- a non-finite loss or gradient makes no update at all (`optax.apply_if_finite` in the optimizer; parameters
  and EMA are selected, not added to, so they stay bit-identical); the counts come back in the metrics.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from swapjax.train.lora import merge_lora
from swapjax.train.state import FROZEN, TRAIN, TrainState, ema_update, finite_info, select

Objective = Callable[[dict, dict, jax.Array, Any], tuple[jax.Array, dict]]


def split_micro(batch: Mapping[str, jax.Array], n: int) -> dict[str, jax.Array]:
    """`[B, ...]` leaves -> `[n, B / n, ...]`; micro-batch `i` takes rows `i, i + n, ...` (strided, so each
    device's rows spread over all micro-batches and no data moves between devices)."""
    def one(x):
        if x.shape[0] % n:
            raise ValueError(f"batch of {x.shape[0]} does not split into grad_accum = {n} micro-batches")
        return jnp.swapaxes(x.reshape(x.shape[0] // n, n, *x.shape[1:]), 0, 1)  # [n, B/n, ...]

    return {k: one(v) for k, v in batch.items()}


def make_train_step(objective: Objective, tx: optax.GradientTransformation, labels: Mapping, *,
                    ema_decay: float, grad_accum: int = 1, lora_scale: float = 1.0
                    ) -> Callable[[TrainState, dict, Any], tuple[TrainState, dict]]:
    """The pure train step (see module docstring); jit it with the state donated."""

    def loss_of(params: dict, batch: dict, key: jax.Array, frozen: Any) -> tuple[jax.Array, dict]:
        params = jax.tree.map(lambda p, label: p if label == TRAIN else jax.lax.stop_gradient(p), params, labels)
        model = merge_lora(params["model"], params.get("lora", {}), lora_scale)
        return objective(model, batch, key, frozen)

    grad_fn = jax.value_and_grad(loss_of, has_aux=True)

    def step(state: TrainState, batch: dict, frozen: Any = None) -> tuple[TrainState, dict]:
        key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        if grad_accum == 1:
            (loss, aux), grads = grad_fn(state.params, batch, key, frozen)
        else:
            def body(carry, xs):
                i, micro = xs
                (l, a), g = grad_fn(state.params, micro, jax.random.fold_in(key, i), frozen)
                return jax.tree.map(jnp.add, carry, (l, a, g)), None

            zeros = jax.eval_shape(grad_fn, state.params, jax.tree.map(lambda x: x[0], split_micro(batch, grad_accum)),
                                   key, frozen)
            zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (zeros[0][0], zeros[0][1], zeros[1]))
            total, _ = jax.lax.scan(body, zeros, (jnp.arange(grad_accum), split_micro(batch, grad_accum)))
            loss, aux, grads = jax.tree.map(lambda x: x / grad_accum, total)
        ok = jnp.isfinite(loss)
        grads = jax.tree.map(lambda g, label: jnp.where(ok, g, jnp.nan) if label == TRAIN else g, grads, labels)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        applied, streak, total_bad = finite_info(opt_state)
        params = jax.tree.map(lambda p, u, label: p if label == FROZEN else jnp.where(applied, p + u.astype(p.dtype), p),
                              state.params, updates, labels)
        ema = ema_update(state.ema, params, labels, ema_decay, applied)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(select(grads, labels)), "finite": applied,
                   "nonfinite_streak": streak, "nonfinite_total": total_bad, **aux}
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state, ema=ema, rng=state.rng), metrics

    return step
