"""The train state, its optimizer and its sharded initialisation.

`TrainState` is one pytree: `step`, `params`, `opt_state`, `ema`, `rng`. The module structure (the NNX graphdef)
stays static outside it. `params` is a nested dict `{"model": <NNX pure dict>, "lora": <adapters>}` ("lora"
only in LoRA runs). Each parameter leaf is labelled "train" or "frozen" (`trainable_labels`); the optimizer is
`optax.multi_transform` over the labels, so frozen leaves get `set_to_zero` and **no optimizer state** (Adam's
moments exist for trained leaves only), wrapped in `optax.apply_if_finite` so a non-finite gradient makes no
update. `ema` holds the trained leaves only (frozen ones equal their parameters).

Initialisation never builds an unsharded or eager state: `jax.eval_shape(create)` gives the abstract state,
the rules table gives every leaf's sharding (`state_shardings`), and `jax.jit(create, out_shardings=...)`
builds it in place (`init_state`). The RNG is stored as raw key data (uint32) so checkpoints hold plain arrays.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import flax
import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from swapjax.train.config import OptimizerConfig

TRAIN, FROZEN = "train", "frozen"
Leaf = Any  # a jax.Array, or its ShapeDtypeStruct or Sharding where the pytree describes a state
NEVER = 2**31 - 1  # apply_if_finite's max_consecutive_errors: a non-finite update is never applied


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training (see module docstring). The same pytree also carries the state's
    abstract values (`jax.ShapeDtypeStruct`s) and its shardings, so the leaves are annotated `Leaf`."""

    step: Leaf  # int32 scalar: optimizer steps taken (= global batches consumed)
    params: dict
    opt_state: Any
    ema: dict  # the trained leaves of `params`, averaged; {} when the EMA is off
    rng: Leaf  # uint32 key data; per-step keys are fold_in(rng, step)


# ------------------------------------------------------------------------------------------------- paths
def path_name(path: tuple) -> str:
    """A key path (dict keys / `jax.tree_util` keys) -> "a/b/c"."""
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def trainable_labels(params: Mapping, stage: str, stage1_trainable: tuple[str, ...] = ()) -> dict:
    """Same tree as `params` with "train" / "frozen" leaves for `stage` ("1", "2", "lora", or "all").

    Stage 1 trains the model leaves whose path starts with one of `stage1_trainable` (matched on whole path
    components); "lora" trains the adapters only; "2" and "all" train every leaf."""
    def label(path, _):
        name = path_name(path)
        top, _, rest = name.partition("/")
        if top == "lora":
            return TRAIN
        if stage == "lora":
            return FROZEN
        if stage == "1":
            hit = any(rest == p or rest.startswith(p + "/") for p in stage1_trainable)
            return TRAIN if hit else FROZEN
        return TRAIN

    return jax.tree_util.tree_map_with_path(label, params)


def select(tree: Mapping, labels: Mapping, want: str = TRAIN) -> dict:
    """The leaves of `tree` labelled `want`, as a nested dict (subtrees left empty are dropped)."""
    flat, marks = traverse_util.flatten_dict(tree), traverse_util.flatten_dict(labels)
    return traverse_util.unflatten_dict({k: v for k, v in flat.items() if marks[k] == want})


def overlay(tree: Mapping, part: Mapping) -> dict:
    """`tree` with the leaves present in `part` replaced (e.g. params with their EMA values)."""
    flat = traverse_util.flatten_dict(tree)
    flat.update(traverse_util.flatten_dict(part))
    return traverse_util.unflatten_dict(flat)


def count(tree: Any) -> int:
    """Number of scalars in a (possibly abstract) tree."""
    return sum(int(x.size) for x in jax.tree.leaves(tree))


# --------------------------------------------------------------------------------------------- optimizer
def learning_rate(cfg: OptimizerConfig, steps: int, lr: float | None = None) -> optax.Schedule:
    """Linear warmup to the peak, then cosine decay to `peak * end_lr_fraction` over `decay_steps`."""
    peak = cfg.lr if lr is None else lr
    decay = cfg.decay_steps if cfg.decay_steps is not None else max(1, steps - cfg.warmup_steps)
    return optax.warmup_cosine_decay_schedule(0.0 if cfg.warmup_steps else peak, peak, cfg.warmup_steps,
                                              cfg.warmup_steps + decay, peak * cfg.end_lr_fraction)


def make_optimizer(cfg: OptimizerConfig, steps: int, labels: Mapping, lr: float | None = None
                   ) -> optax.GradientTransformation:
    """`apply_if_finite(multi_transform({train: clip -> AdamW(schedule), frozen: set_to_zero}))`.

    Clipping sits inside the "train" branch, so the global norm is over the trained leaves only; frozen
    leaves hold no state. A non-finite gradient anywhere skips the whole update (counted in the state)."""
    inner = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm > 0 else []
    inner.append(optax.adamw(learning_rate(cfg, steps, lr), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                             weight_decay=cfg.weight_decay))
    tx = optax.multi_transform({TRAIN: optax.chain(*inner), FROZEN: optax.set_to_zero()}, labels)
    return optax.apply_if_finite(tx, NEVER)


def finite_info(opt_state: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(last step finite?, consecutive non-finite steps, total non-finite steps) from `apply_if_finite`."""
    return opt_state.last_finite, opt_state.notfinite_count, opt_state.total_notfinite


# -------------------------------------------------------------------------------------------------- EMA
def ema_update(ema: dict, params: Mapping, labels: Mapping, decay: float, applied: jax.Array) -> dict:
    """`decay * ema + (1 - decay) * params` on the trained leaves, only where the update was `applied`."""
    if not ema:
        return ema
    new = select(params, labels)
    return jax.tree.map(lambda e, p: jnp.where(applied, decay * e + (1.0 - decay) * p.astype(e.dtype), e), ema, new)


# ------------------------------------------------------------------------------------------------ sharding
def replicated(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def state_shardings(abstract: TrainState, param_shardings: dict, labels: Mapping, tx: optax.GradientTransformation,
                    mesh: jax.sharding.Mesh) -> TrainState:
    """Shardings of every leaf of a `TrainState`: parameters from the rules table (`param_shardings`), the
    optimizer's parameter-shaped leaves (Adam moments, found by their path ending in the parameter's path)
    like their parameters, its counters replicated, the EMA like the parameters it averages."""
    rep = replicated(mesh)
    by_name = {path_name(p): (s, tuple(x.shape)) for (p, s), (_, x) in
               zip(jax.tree_util.tree_flatten_with_path(param_shardings)[0],
                   jax.tree_util.tree_flatten_with_path(abstract.params)[0])}

    def like_param(path, leaf):
        parts = path_name(path).split("/")
        for i in range(len(parts)):  # the optimizer nests each parameter-shaped leaf under its parameter's path
            hit = by_name.get("/".join(parts[i:]))
            if hit is not None and hit[1] == tuple(leaf.shape):
                return hit[0]
        return rep

    opt = jax.tree_util.tree_map_with_path(like_param, abstract.opt_state)
    ema = select(param_shardings, labels) if abstract.ema else {}
    return TrainState(step=rep, params=param_shardings, opt_state=opt, ema=ema, rng=rep)


class StatePlan(NamedTuple):
    """How to build a state: its abstract shape, its shardings and the jitted builder `create(seed)`."""

    abstract: TrainState
    shardings: TrainState
    create: Callable[[int], TrainState]


def plan_state(init_params: Callable[[jax.Array], dict], tx: optax.GradientTransformation, labels: Mapping,
               param_shardings: dict, mesh: jax.sharding.Mesh, *, ema: bool, key_impl: str | None = None
               ) -> StatePlan:
    """`jax.eval_shape` of a fresh state -> its shardings -> a builder jitted with them as `out_shardings`, so
    the state is created in place, sharded (never eagerly on one device). `init_params(key)` builds the params
    dict; `create(seed)` builds the state (nothing is allocated before it is called). `key_impl` picks the PRNG
    of the initialisation (e.g. "rbg", much faster to compile for models of many small parameters; use it only
    where the parameters are replicated, as its values may depend on the sharding)."""
    def build(seed_key: jax.Array) -> TrainState:
        key_params, key_run = jax.random.split(seed_key)
        params = init_params(key_params)
        run_key = jax.random.key(jax.random.randint(key_run, (), 0, 2**31 - 1))  # the default PRNG for training
        return new_state(params, tx, labels, jax.random.key_data(run_key), ema=ema)

    abstract = jax.eval_shape(build, jax.random.key(0, impl=key_impl))
    shardings = state_shardings(abstract, param_shardings, labels, tx, mesh)
    jitted = jax.jit(build, out_shardings=shardings)
    return StatePlan(abstract, shardings, lambda seed: jitted(jax.random.key(seed, impl=key_impl)))


def new_state(params: dict, tx: optax.GradientTransformation, labels: Mapping, rng: jax.Array, *,
              ema: bool) -> TrainState:
    """Step 0 around `params` (fresh optimizer state; EMA starting at the trained parameters)."""
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      ema=jax.tree.map(jnp.copy, select(params, labels)) if ema else {}, rng=rng)
