"""One trainer for both stages (docs/design.md, "Training"): a stage is a short `Stage` spec, `run_stage` runs it.

    state = initial_state(stage, checkpoints, seed)   # decided once: resume -> init-from -> scratch
    trainer = Trainer(stage.name, stage.total, mesh)
    trainer.add_hook(hook, every=n)                   # metrics, progress, checkpoints, SIGTERM, non-finite policy
    state, outcome = trainer.run(state, compile_stage(stage, state, mesh), stage.feed)

The step loop (`Trainer.run`) knows nothing of logging, checkpoints or signals: it reads this process's batch,
makes global arrays, prepares and steps, and hands each step's `StepInfo` to the hooks due at that step. A hook
runs on every `every`-th step, on the last step, and on every non-finite step (so a failure is always logged and
the policy sees it); it returns None, or an `Outcome` that stops the run after this step (the first one
returned wins, every due hook still runs). Before step 1 the batch preparation and the train step are compiled
ahead of time with explicit shardings (the state donated), and the step's memory analysis and FLOPs printed.
Everything a run opens (checkpoint manager, metrics files, progress bar, SIGTERM handler) is entered in one
`ExitStack` in `run_stage` and closed there, whatever happens.
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import time
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

from swapjax.entry import Outcome, Status
from swapjax.train.checkpoint import Checkpoints
from swapjax.train.hooks import (CheckpointHook, MetricsHook, NonfiniteHook, ProgressHook, SigtermHook,
                                 StepInfo)
from swapjax.train.hosts import batch_sharding, global_batch
from swapjax.train.state import StatePlan, TrainState, replicated
from swapjax.train.writers import MetricsWriter, log

Hook = Callable[[StepInfo], "Outcome | None"]


class Feed(NamedTuple):
    """How batches reach the step: this process's `data` iterator (saved in checkpoints), the arrays it reads,
    and the pure `prepare(args, global arrays, rng, step) -> model batch` with its `args`."""

    data: Any
    keys: tuple[str, ...]
    prepare: Callable
    args: Any = None


class InitFrom(NamedTuple):
    """A stage's init-from: `build()` -> step 0 around loaded parameters; `note` is logged after it."""

    build: Callable[[], TrainState]
    note: str


@dataclasses.dataclass(frozen=True)
class Stage:
    """One training stage: what trains (`plan`, `step`), on what (`feed`), from what (`init_from`, else scratch),
    where (`checkpoints`; metrics in `workdir/<prefix>metrics.jsonl`) and what a finished stage writes
    (`export(state)`)."""

    name: str
    plan: StatePlan
    step: Callable  # pure (state, batch, frozen) -> (state, metrics)
    feed: Feed
    total: int
    checkpoints: pathlib.Path
    workdir: pathlib.Path
    prefix: str = ""
    init_from: InitFrom | None = None
    about: tuple[str, ...] = ()  # lines logged once the initial state is decided (bad input stays one line)
    frozen: Any = None  # read-only arguments of the step (e.g. the VAE decoder of pixel loss terms)
    export: Callable[[TrainState], None] | None = None


class Compiled(NamedTuple):
    prepare: Callable
    step: Callable
    frozen: Any
    first: dict  # the first batch's global arrays, read to compile (step 1 uses them)


def report_compiled(name: str, compiled: Any) -> None:
    """Prints the per-device memory analysis and the FLOPs of a compiled step (process 0)."""
    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float((cost or {}).get("flops", float("nan")))
    mib = lambda b: f"{b / 2**20:,.1f} MiB"
    if mem is not None:
        log(f"{name}: per device: arguments {mib(mem.argument_size_in_bytes)}, outputs "
            f"{mib(mem.output_size_in_bytes)} (aliased {mib(mem.alias_size_in_bytes)}), temporaries "
            f"{mib(mem.temp_size_in_bytes)}, code {mib(mem.generated_code_size_in_bytes)}")
    log(f"{name}: {flops / 1e9:.3f} GFLOP per step per device (XLA's count; a scanned layer stack counts once)")


def compile_stage(stage: Stage, state: TrainState, mesh: jax.sharding.Mesh) -> Compiled:
    """Reads the first batch and compiles the preparation and the step for it (module docstring)."""
    tick, feed, start = time.perf_counter(), stage.feed, np.int32(int(jax.device_get(state.step)))
    first = global_batch(next(feed.data), mesh, feed.keys)
    batch_abstract = jax.eval_shape(feed.prepare, feed.args, first, state.rng, start)
    batch_sh = {k: batch_sharding(mesh, v.ndim) for k, v in batch_abstract.items()}
    prepare = jax.jit(feed.prepare, out_shardings=batch_sh).lower(feed.args, first, state.rng, start).compile()
    shardings = stage.plan.shardings
    abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)
    batch_in = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=batch_sh[k]) for k, v in batch_abstract.items()}
    frozen_sh = jax.tree.map(lambda x: x.sharding, stage.frozen)
    step = jax.jit(stage.step, in_shardings=(shardings, batch_sh, frozen_sh),
                   out_shardings=(shardings, replicated(mesh)), donate_argnums=0
                   ).lower(abstract, batch_in, stage.frozen).compile()
    log(f"{stage.name}: first batch read, preparation and train step compiled in {time.perf_counter() - tick:.1f} s")
    report_compiled(f"{stage.name} train step", step)
    return Compiled(prepare, step, stage.frozen, first)


def _scalars(metrics: dict) -> dict:
    return {k: (v.item() if np.ndim(v) == 0 else v) for k, v in metrics.items()}


class Trainer:
    """Runs compiled steps up to `total`; the hooks do everything else (module docstring)."""

    def __init__(self, name: str, total: int, mesh: jax.sharding.Mesh):
        self.name, self.total, self.mesh = name, total, mesh
        self.hooks: list[tuple[Hook, int]] = []

    def add_hook(self, hook: Hook, every: int = 1) -> None:
        self.hooks.append((hook, max(int(every), 1)))

    def run(self, state: TrainState, compiled: Compiled, feed: Feed) -> tuple[TrainState, Outcome]:
        step, arrays, tick = int(jax.device_get(state.step)), compiled.first, time.perf_counter()
        while step < self.total:
            if arrays is None:  # read lazily: a checkpoint's data position is that of the steps taken
                arrays = global_batch(next(feed.data), self.mesh, feed.keys)
            batch = compiled.prepare(feed.args, arrays, state.rng, np.int32(step))
            state, metrics = compiled.step(state, batch, compiled.frozen)
            arrays, step = None, step + 1
            now = time.perf_counter()
            info = StepInfo(step, self.total, state, _scalars(jax.device_get(metrics)), 1.0 / max(now - tick, 1e-9))
            tick = now
            stop = self._call_hooks(info)
            if stop is not None:
                return state, stop
        return state, Outcome(Status.DONE, f"{self.name}: finished {step} steps", step=step)

    def _call_hooks(self, info: StepInfo) -> Outcome | None:
        stop = None
        for hook, every in self.hooks:
            if info.step % every == 0 or info.step == info.total or not info.finite:
                said = hook(info)
                stop = stop or said
        return stop


def initial_state(stage: Stage, checkpoints: Checkpoints, seed: int) -> TrainState:
    """Where a stage starts, decided once: its latest checkpoint (resume, with the data position), else
    `stage.init_from`, else a fresh state from `seed` (`checkpoint.py` documents the order). Nothing is logged
    before it is decided (`stage.about`, then where it started), so a checkpoint that cannot be read is the run's
    only line."""
    if checkpoints.latest_step() is not None:
        state = checkpoints.restore(stage.plan.abstract, stage.plan.shardings, stage.feed.data)
        note = f"resumed from step {int(jax.device_get(state.step))} in {checkpoints.directory}"
    elif stage.init_from is not None:
        state, note = stage.init_from.build(), stage.init_from.note
    else:
        state, note = stage.plan.create(seed), "from scratch"
    for line in (*stage.about, f"{stage.name}: {note}"):
        log(line)
    return state


def run_stage(stage: Stage, config: Any, mesh: jax.sharding.Mesh) -> tuple[TrainState, Outcome]:
    """Runs `stage` under `config.train`'s checkpoint, logging and non-finite settings; a finished stage is
    exported (`stage.export`). Returns the final state and how the stage ended."""
    train = config.train
    with contextlib.ExitStack() as opened:
        checkpoints = opened.enter_context(Checkpoints(stage.checkpoints, keep=train.keep_checkpoints))
        state = initial_state(stage, checkpoints, config.seed)
        start = int(jax.device_get(state.step))
        if start >= stage.total:
            outcome = Outcome(Status.DONE, f"{stage.name}: already at step {start} of {stage.total}", step=start)
        else:
            trainer = Trainer(stage.name, stage.total, mesh)
            _add_hooks(trainer, stage, config, checkpoints, opened, start)
            state, outcome = trainer.run(state, compile_stage(stage, state, mesh), stage.feed)
    log(outcome.message)
    if outcome.status == Status.DONE and stage.export is not None:
        stage.export(state)
    return state, outcome


def _add_hooks(trainer: Trainer, stage: Stage, config: Any, checkpoints: Checkpoints,
               opened: contextlib.ExitStack, start: int) -> None:
    """The run's hooks in order (hooks.py): non-finite policy, metrics, progress, SIGTERM, checkpoints; what
    they open is closed by `opened`."""
    train = config.train
    writer = opened.enter_context(MetricsWriter(stage.workdir, enabled=jax.process_index() == 0, prefix=stage.prefix))
    save = CheckpointHook(checkpoints, stage.feed.data, config)
    progress = ProgressHook(stage.name, stage.total, start, train.progress)
    opened.callback(progress.close)
    sigterm = SigtermHook(stage.name, save)
    opened.callback(sigterm.close)
    trainer.add_hook(NonfiniteHook(stage.name, train.max_nonfinite_steps, checkpoints), every=1)
    trainer.add_hook(MetricsHook(writer), every=train.log_every)
    trainer.add_hook(progress, every=1)
    trainer.add_hook(sigterm, every=1)
    trainer.add_hook(save, every=train.checkpoint_every)
