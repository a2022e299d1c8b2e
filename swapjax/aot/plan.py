"""Compile the real train step and sampling step for a mesh of compile-only devices, with abstract inputs.

Nothing is allocated: the train state is `build_dit`'s abstract state with its shardings (the same
`swapjax.train.loop.build_dit` a run uses), the batch is `assemble_batch` traced by `jax.eval_shape` on latents
of the clip's shape (what a run reading a latent cache feeds the step), and the sampling step is
`swapjax.sample.engine.Engine`'s step with the model's parameters sharded by the rules table and everything
else replicated (the engine's placement). Each step is lowered with `jax.jit(..., in_shardings,
out_shardings, donate_argnums)` and compiled; the compiler's memory analysis is per device. A plan the
compiler cannot fit raises RESOURCE_EXHAUSTED at compile time, which becomes an out-of-memory verdict here.

The mesh is entered as an abstract mesh (`jax.sharding.use_abstract_mesh`), not with `jax.set_mesh`: under a
concrete mesh of compile-only devices any eager operation (a PRNG key, a constant) would try to run on them.
The model's activation constraints only need the abstract mesh.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from swapjax import flow
from swapjax.config import Config
from swapjax.errors import require
from swapjax.models.clip_vision_config import ClipVisionConfig
from swapjax.models.fused_inputs import pack_mask
from swapjax.models.swap import abstract_swap
from swapjax.models.swap_flops import TokenCounts, swap_sample_step_flops, swap_train_flops, token_counts
from swapjax.models.vae import abstract_vae
from swapjax.parallel import LOGICAL_AXIS_RULES, state_shardings
from swapjax.sample.checkpoint import SamplingModels
from swapjax.sample.engine import Engine
from swapjax.train.hosts import batch_sharding
from swapjax.train.loop import build_dit
from swapjax.train.prepare import PrepareConfig, assemble_batch
from swapjax.train.state import replicated


@dataclasses.dataclass(frozen=True)
class Memory:
    """Per-device bytes from the compiler's memory analysis."""

    arguments: int
    outputs: int
    aliased: int  # outputs written in place of donated arguments
    temporaries: int
    code: int
    peak: int  # the compiler's peak when it reports one, else arguments + outputs - aliased + temporaries + code

    @classmethod
    def of(cls, stats: Any) -> "Memory":
        args, outs = stats.argument_size_in_bytes, stats.output_size_in_bytes
        alias, temp = stats.alias_size_in_bytes, stats.temp_size_in_bytes
        code = stats.generated_code_size_in_bytes
        peak = int(getattr(stats, "peak_memory_in_bytes", 0) or 0) or args + outs - alias + temp + code
        return cls(args, outs, alias, temp, code, peak)

    @property
    def all_live(self) -> int:
        """Every argument, output and temporary live at once: a bound the compiler's peak stays under."""
        return self.arguments + self.outputs - self.aliased + self.temporaries + self.code


@dataclasses.dataclass(frozen=True)
class StepPlan:
    """One compiled (or refused) step."""

    name: str  # "train step" / "sampling step"
    shape: str  # what it was compiled for, in words
    flops: float  # analytic matmul FLOPs of one step, all devices together
    state: dict[str, int]  # per-device bytes of the state arguments by part (hand count from the shardings)
    compile_s: float
    memory: Memory | None  # None when the compiler ran out of memory
    oom: str | None = None  # the compiler's RESOURCE_EXHAUSTED message (first line)
    xla_flops: float | None = None  # XLA's per-device count (a scanned layer stack counted once)


def sharded_bytes(tree: Any) -> int:
    """Bytes one device holds of a tree of `ShapeDtypeStruct`s with shardings."""
    total = 0
    for leaf in jax.tree.leaves(tree):
        shape = leaf.sharding.shard_shape(leaf.shape) if leaf.sharding is not None else leaf.shape
        total += math.prod(shape) * jnp.dtype(leaf.dtype).itemsize
    return total


def with_shardings(abstract: Any, shardings: Any) -> Any:
    """Abstract values + a same-structure tree of shardings -> `ShapeDtypeStruct`s carrying them."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings)


def compile_step(lower: Callable[[], Any]) -> tuple[Memory | None, str | None, float | None, float]:
    """Lowers and compiles; returns (memory, OOM message or None, XLA's FLOP count, seconds)."""
    tick = time.perf_counter()
    try:
        compiled = lower().compile()
    except jax.errors.JaxRuntimeError as err:
        text = str(err)
        if "RESOURCE_EXHAUSTED" not in text:
            raise
        line = next(s for s in text.splitlines() if "RESOURCE_EXHAUSTED" in s).strip()
        return None, line[:400], None, time.perf_counter() - tick
    seconds = time.perf_counter() - tick
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost["flops"]) if cost and "flops" in cost else None
    return Memory.of(compiled.memory_analysis()), None, flops, seconds


def _clip_tokens(config: Config, *, text: int, image: int = 0) -> TokenCounts:
    data = config.data
    return token_counts(config.dit, config.swap, frames=data.num_frames, height=data.height, width=data.width,
                        text=text, image=image)


def check_plan(config: Config, mesh: jax.sharding.Mesh) -> None:
    """The checks a run makes before compiling, against the planned mesh; raises `ConfigError`."""
    require(config.swap is not None, f"config {config.name!r} has no swap model (Config.swap is None): plan a swap "
            "config such as configs/swap_wan2_1_14b.py")
    data, train = config.data, config.train
    shards = mesh.shape["data"] * mesh.shape["fsdp"]
    require(data.batch_size % (shards * train.grad_accum) == 0,
            f"--batch / data.batch_size ({data.batch_size}) must be a multiple of mesh data x fsdp "
            f"({mesh.shape['data']} x {mesh.shape['fsdp']}) x train.grad_accum ({train.grad_accum}) = "
            f"{shards * train.grad_accum}: change the batch, the mesh (--set mesh.fsdp=...) or grad_accum")
    s, (_, ph, pw) = config.swap.pixels_per_latent, config.dit.patch_size
    require(data.height % (s * ph) == 0 and data.width % (s * pw) == 0,
            f"--height x --width ({data.height} x {data.width}) must be multiples of {s * ph} x {s * pw} (VAE factor "
            f"{s} x patch size {(ph, pw)})")
    require((data.num_frames - 1) % config.swap.frames_per_latent == 0,
            f"--frames ({data.num_frames}) must be 1 mod {config.swap.frames_per_latent} (e.g. 81)")


def abstract_latents(config: Config) -> dict[str, jax.ShapeDtypeStruct]:
    """The encoded batch a latent-cache run reads (`swapjax.train.prepare.LATENT_KEYS`), abstract."""
    data, swap, z = config.data, config.swap, config.vae.z_dim
    b, f = data.batch_size, 1 + (data.num_frames - 1) // swap.frames_per_latent
    h, w = data.height // swap.pixels_per_latent, data.width // swap.pixels_per_latent
    sds = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)  # noqa: E731
    out = {"latents": sds(b, f, h, w, z), "agnostic_latents": sds(b, f, h, w, z),
           "reference_latents": sds(b, 1, h, w, z), "mask_packed": sds(b, f, h, w, swap.frames_per_latent),
           "subject": sds(b, f, h, w)}
    if data.with_condition:
        out["condition_latents"] = sds(b, f, h, w, z)
    return out


def plan_train_step(config: Config, mesh: jax.sharding.Mesh) -> StepPlan:
    """Compiles the swap DiT's train step (the one `train.py` runs) for `mesh`."""
    check_plan(config, mesh)
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh), nnx.logical_axis_rules(LOGICAL_AXIS_RULES):
        setup = build_dit(config, mesh)
        plan = setup.plan
        prep = PrepareConfig(swap=config.swap, text_len=config.train.text_len, text_dim=config.dit.text_dim,
                             with_condition=config.data.with_condition)
        rng = jax.ShapeDtypeStruct(plan.abstract.rng.shape, plan.abstract.rng.dtype)
        batch = jax.eval_shape(functools.partial(assemble_batch, cfg=prep), abstract_latents(config), rng,
                               jax.ShapeDtypeStruct((), jnp.int32))
        batch_sh = {k: batch_sharding(mesh, v.ndim) for k, v in batch.items()}
        state_in, batch_in = with_shardings(plan.abstract, plan.shardings), with_shardings(batch, batch_sh)
        lower = lambda: jax.jit(setup.step, in_shardings=(plan.shardings, batch_sh, None),  # noqa: E731
                                out_shardings=(plan.shardings, replicated(mesh)),
                                donate_argnums=0).lower(state_in, batch_in, None)
        memory, oom, xla_flops, seconds = compile_step(lower)
    data = config.data
    tokens = _clip_tokens(config, text=config.train.text_len)
    parts = {"parameters": sharded_bytes(state_in.params), "optimizer": sharded_bytes(state_in.opt_state),
             "ema": sharded_bytes(state_in.ema), "batch": sharded_bytes(batch_in)}
    shape = (f"batch {data.batch_size}, {data.num_frames} frames {data.height}x{data.width}, {tokens.video:,} video + "
             f"{tokens.prefix:,} prefix tokens per sample, text {tokens.text}; stage {config.train.stage}, remat "
             f"{config.dit.remat_policy}, attention {config.dit.attention}, compute {config.dit.dtype}")
    return StepPlan("train step", shape, swap_train_flops(config.dit, data.batch_size, tokens), parts, seconds,
                    memory, oom, xla_flops)


def plan_sample_step(config: Config, mesh: jax.sharding.Mesh) -> StepPlan:
    """Compiles one sampling step (`Engine`'s, every guidance branch batched) for one clip on `mesh`."""
    check_plan(config, mesh)
    dit, swap, data, cfg = config.dit, config.swap, config.data, config.sample
    image_tokens = ClipVisionConfig().num_tokens if dit.is_i2v else 0
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh), nnx.logical_axis_rules(LOGICAL_AXIS_RULES):
        dit_graph, dit_state = abstract_swap(dit, swap)
        vae_graph, vae_state = abstract_vae(config.vae)
        engine = Engine(SamplingModels(config, dit_graph, dit_state, vae_graph, vae_state), cfg)
        rep = replicated(mesh)
        params_sh = state_shardings(dit_state, mesh)
        params_in = with_shardings(dit_state, params_sh)
        nb, f = cfg.num_branches, 1 + (data.num_frames - 1) // swap.frames_per_latent
        h, w = data.height // swap.pixels_per_latent, data.width // swap.pixels_per_latent
        sds = lambda *shape, dtype=jnp.float32: jax.ShapeDtypeStruct(shape, dtype)  # noqa: E731
        x = sds(1, f, h, w, dit.out_channels)  # [1, f, h, w, z]
        prefix = sds(nb, swap.num_prefix_frames, h, w, dit.in_channels) if swap.num_prefix_frames else None
        image = sds(nb, image_tokens, dit.image_dim) if image_tokens else None
        cache = jax.eval_shape(functools.partial(engine._prefix, fused_shape=(1, f, h, w, dit.in_channels)),
                               dit_state, prefix, sds(nb, cfg.text_len, dit.text_dim), {}, image)
        mask = jax.eval_shape(functools.partial(pack_mask, frames_per_latent=swap.frames_per_latent,
                                                pixels_per_latent=swap.pixels_per_latent),
                              sds(1, data.num_frames, data.height, data.width))
        parts = {"mask": mask, "agnostic": x, "condition": x if swap.condition_channels else None}
        solver = jax.eval_shape(functools.partial(flow.init_state, cfg.sampler.solver), x)
        rest = (cache, x, solver, sds(dtype=jnp.int32), sds(*engine.sigmas.shape), sds(*engine.times.shape),
                sds(2), parts)
        rest_in = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=rep), rest)
        lower = lambda: jax.jit(engine._step, in_shardings=(params_sh,) + (rep,) * len(rest),  # noqa: E731
                                out_shardings=rep).lower(params_in, *rest_in)
        memory, oom, xla_flops, seconds = compile_step(lower)
    tokens = _clip_tokens(config, text=cfg.text_len, image=image_tokens)
    state = {"parameters": sharded_bytes(params_in), "prefix cache": sharded_bytes(rest_in[0])}
    shape = (f"{nb} guidance branches, {data.num_frames} frames {data.height}x{data.width}, {tokens.video:,} video + "
             f"{tokens.prefix:,} cached prefix tokens, text {tokens.text}, image {tokens.image}; attention "
             f"{dit.attention}, parameters {dit.param_dtype}, compute {dit.dtype}")
    return StepPlan("sampling step", shape, swap_sample_step_flops(dit, nb, tokens), state, seconds, memory, oom,
                    xla_flops)

