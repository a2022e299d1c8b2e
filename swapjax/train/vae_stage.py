"""The VAE stage: trains (from scratch) or fine-tunes (from a converted Wan VAE) the VAE on the run's data, so
a run without pretrained weights can then train the swap DiT on its latents.

Objective per clip: `mean |decode(z) - video|` (L1 reconstruction, `z` drawn from the posterior) plus
`vae_kl_weight · KL(q(z | video) || N(0, 1))` (mean over latent elements). The stage is a `trainer.Stage` spec
run by the one trainer, like the DiT stage (same hooks, checkpoints and resume), in `WORKDIR/vae_stage/`. When
the stage completes, the latents of `vae_stat_batches` batches give per-channel `latents_mean` / `latents_std` (a VAE trained from scratch does
not have Wan's), and the EMA weights with that config are written to `WORKDIR/vae` in the converted-model
format; a later run (or stage) finds them there and skips the stage.

A loaded VAE (`WORKDIR/vae`, `train.vae_init`) brings its latent statistics, which replace the config's (those only
seed a VAE trained from scratch); every other architecture field must match the config's `vae` section, or the
run stops with a `ConfigError` listing each difference (sampling checks the same, `swapjax/sample/checkpoint.py`).
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from swapjax.config import Config
from swapjax.entry import Outcome, Status
from swapjax.errors import ConfigError
from swapjax.convert.saved import load_converted, save_converted
from swapjax.models.vae import WanVAE, abstract_vae, sample_latent
from swapjax.models.vae_config import VAEConfig, fixed_differences
from swapjax.parallel import state_shardings
from swapjax.train.data import ShardedBatches
from swapjax.train.checkpoint import load_params
from swapjax.train.export import to_host
from swapjax.train.hosts import global_batch
from swapjax.train.state import StatePlan, TrainState, make_optimizer, new_state, overlay, plan_state, trainable_labels
from swapjax.train.step import make_train_step
from swapjax.train.trainer import Feed, InitFrom, Stage, run_stage
from swapjax.train.writers import log

VAE_DIR = "vae"


def vae_objective(graphdef: nnx.GraphDef, kl_weight: float):
    """`(params, batch, key, frozen) -> (loss, metrics)`: L1 reconstruction + weighted KL (module docstring)."""

    def objective(params: dict, batch: dict, key: jax.Array, frozen: Any) -> tuple[jax.Array, dict]:
        model = nnx.merge(graphdef, params)
        video = batch["video"]  # [B, F, H, W, 3]
        mean, logvar, _ = model.encode(video)  # [B, f, h, w, z] each
        recon = model.decode(sample_latent(mean, logvar, key))[0]  # [B, F, H, W, 3]
        rec = jnp.mean(jnp.abs(recon - video), axis=(1, 2, 3, 4))  # [B]
        kl = 0.5 * jnp.mean(jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar, axis=(1, 2, 3, 4))  # [B]
        return jnp.mean(rec + kl_weight * kl), {"loss/recon": jnp.mean(rec), "loss/kl": jnp.mean(kl)}

    return objective


def _pixels_only(params: Any, pixels: dict, rng: jax.Array, step: jax.Array) -> dict:
    return {"video": pixels["video"]}


def latent_stats(graphdef: nnx.GraphDef, params: dict, batches: list[dict]) -> tuple[tuple, tuple]:
    """Per-channel mean and std of the posterior means over `batches` (global arrays)."""
    encode = jax.jit(lambda p, v: nnx.merge(graphdef, p).encode(v)[0])
    means = [to_host(encode(params, b["video"])) for b in batches]
    z = np.concatenate([m.reshape(-1, m.shape[-1]) for m in means])  # [N, z]
    std = np.maximum(z.std(axis=0), 1e-6)
    return tuple(float(x) for x in z.mean(axis=0)), tuple(float(x) for x in std)


def _loaded_config(config: Config, path: str | pathlib.Path, found: VAEConfig) -> VAEConfig:
    """`found` (a loaded VAE's config) once its architecture is the run config's; `ConfigError` listing every
    difference otherwise (its learned latent statistics may differ: they are its own)."""
    diff = fixed_differences(config.vae, found)
    if diff:
        raise ConfigError(f"the VAE in {str(path)!r} has other architecture values than the config's vae section "
                          f"({'; '.join(diff)}): use the config it was made with, or another VAE")
    return found


class VAE(NamedTuple):
    """The VAE the DiT stage encodes with (and decodes with, for pixel loss terms)."""

    graphdef: nnx.GraphDef
    params: dict
    cfg: VAEConfig


def load_vae(config: Config, workdir: pathlib.Path, mesh: jax.sharding.Mesh) -> VAE:
    """The VAE the DiT stage encodes with: `WORKDIR/vae` (this run's VAE stage), else `train.vae_init`, else
    a random one from the config's seed (fine for tests; real runs train or load one)."""
    for path in (workdir / VAE_DIR, config.train.vae_init):
        if path is not None and (pathlib.Path(path) / "swapjax_config.json").is_file():
            _, cfg, state = load_converted(path, mesh=mesh)
            cfg = _loaded_config(config, path, cfg)
            graphdef, _ = abstract_vae(cfg)
            return VAE(graphdef, nnx.to_pure_dict(state), cfg)
    graphdef, abstract = abstract_vae(config.vae)
    shardings = nnx.to_pure_dict(state_shardings(abstract, mesh))
    init = lambda key: nnx.to_pure_dict(nnx.split(WanVAE(config.vae, rngs=nnx.Rngs(params=key)))[1])
    # The "rbg" generator compiles the VAE's ~100 initializers ~5x faster than threefry on CPU; the VAE's
    # parameters are replicated under the rules table, so its values do not depend on the mesh.
    key = jax.random.key(config.seed + 1, impl="rbg")
    return VAE(graphdef, jax.jit(init, out_shardings=shardings)(key), config.vae)


def vae_init_from(config: Config, plan: StatePlan, tx: optax.GradientTransformation, labels: dict,
                  abstract: nnx.State, model_sh: dict) -> InitFrom | None:
    """Fine-tuning `train.vae_init`: its parameters under a fresh optimizer, EMA and data position."""
    path = config.train.vae_init
    if path is None:
        return None

    def start() -> TrainState:
        model = load_params(path, nnx.to_pure_dict(abstract), model_sh, field="train.vae_init", kinds=("vae",))
        rng = jax.random.key_data(jax.random.split(jax.random.key(config.seed))[1])
        fresh = lambda p, r: new_state({"model": p}, tx, labels, r, ema=config.optimizer.ema_decay > 0)
        return jax.jit(fresh, out_shardings=plan.shardings)(model, rng)

    return InitFrom(start, f"fine-tuning {path}")


def vae_export(config: Config, out: pathlib.Path, cfg: VAEConfig, data: ShardedBatches,
               mesh: jax.sharding.Mesh) -> Callable[[TrainState], None]:
    """What a finished VAE stage writes: its EMA weights with the latent statistics of `train.vae_stat_batches`
    batches, to `WORKDIR/vae` in the converted-model format."""
    batches = config.train.vae_stat_batches

    def write(state: TrainState) -> None:
        params = overlay(state.params, state.ema)["model"] if state.ema else state.params["model"]
        mean, std = latent_stats(abstract_vae(cfg)[0], params,
                                 [global_batch(next(data), mesh, ("video",)) for _ in range(batches)])
        stats = dataclasses.replace(cfg, latents_mean=mean, latents_std=std)
        nnx_state = abstract_vae(stats)[1]
        nnx.replace_by_pure_dict(nnx_state, to_host(params))
        save_converted(out, "vae", stats, nnx_state, source="swapjax.train VAE stage (EMA)")
        log(f"vae stage: wrote {out} (latents_mean/std from {batches} batches)")

    return write


def run_vae_stage(config: Config, workdir: pathlib.Path, mesh: jax.sharding.Mesh,
                  about: tuple[str, ...] = ()) -> Outcome:
    """Trains the VAE for `train.vae_steps` steps (resuming if interrupted) and writes `WORKDIR/vae`; `about`:
    lines to log first."""
    out, train = workdir / VAE_DIR, config.train
    if (out / "swapjax_config.json").is_file():
        for line in (*about, f"vae stage: {out} exists, skipping the stage"):
            log(line)
        return Outcome(Status.DONE, step=train.vae_steps)
    cfg = config.vae if train.vae_init is None else _loaded_config(config, train.vae_init,
                                                                   load_converted(train.vae_init)[1])
    graphdef, abstract = abstract_vae(cfg)
    model_sh = nnx.to_pure_dict(state_shardings(abstract, mesh))
    labels = trainable_labels({"model": nnx.to_pure_dict(abstract)}, "all")
    tx = make_optimizer(config.optimizer, train.vae_steps, labels, lr=train.vae_lr)
    init = lambda key: {"model": nnx.to_pure_dict(nnx.split(WanVAE(cfg, rngs=nnx.Rngs(params=key)))[1])}
    plan = plan_state(init, tx, labels, {"model": model_sh}, mesh, ema=config.optimizer.ema_decay > 0,
                      key_impl="rbg")  # replicated: see load_vae
    data = ShardedBatches(config.data, config.seed, train.data_shards)
    step = make_train_step(vae_objective(graphdef, train.vae_kl_weight), tx, labels,
                           ema_decay=config.optimizer.ema_decay)
    stage = Stage(name="vae stage", plan=plan, step=step, feed=Feed(data, ("video",), _pixels_only),
                  total=train.vae_steps, about=about, checkpoints=workdir / "vae_stage" / "checkpoints",
                  workdir=workdir, prefix="vae_", init_from=vae_init_from(config, plan, tx, labels, abstract, model_sh),
                  export=vae_export(config, out, cfg, data, mesh))
    return run_stage(stage, config, mesh)[1]
