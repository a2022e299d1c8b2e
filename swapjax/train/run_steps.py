"""The step loop shared by the VAE and DiT stages: compile, report, step, log, checkpoint, stop.

`run_steps` takes a built state and a data iterator and runs until `total` steps are done, SIGTERM arrives or
`max_nonfinite` steps in a row were non-finite. Before step 1 it compiles the batch preparation and the train
step ahead of time with explicit shardings (the state donated) and prints the step's compiled memory analysis
and FLOPs. Each step reads one per-process batch, makes global arrays, prepares and steps; metrics go to JSONL
/ TensorBoard and a tqdm bar (process 0). Checkpoints are saved every `checkpoint_every` steps, at the end and
on SIGTERM, never while a run of non-finite steps is in progress (those steps changed nothing, and the last
good checkpoint stays the latest).
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import time
from typing import Any, Callable

import jax
import numpy as np
from tqdm import tqdm

from swapjax.train.checkpoint import Checkpoints
from swapjax.train.hosts import any_process, batch_sharding, global_batch
from swapjax.train.state import TrainState, replicated
from swapjax.train.writers import MetricsWriter


@dataclasses.dataclass
class Outcome:
    """How a stage ended: "done", "preempted" (SIGTERM, saved) or "nonfinite" (stopped, nothing saved)."""

    status: str
    step: int
    message: str = ""


class _Sigterm:
    """Records SIGTERM instead of dying, so the loop can save and exit cleanly (restored on `close`)."""

    def __init__(self):
        self.received = False
        self.previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        self.received = True

    def close(self):
        signal.signal(signal.SIGTERM, self.previous)


def log(message: str) -> None:
    """One line to stderr from process 0."""
    if jax.process_index() == 0:
        print(message, file=sys.stderr, flush=True)


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


def _scalars(metrics: dict) -> dict:
    return {k: (v.item() if np.ndim(v) == 0 else v) for k, v in metrics.items()}


def run_steps(*, name: str, state: TrainState, shardings: TrainState, step_fn: Callable, prepare_fn: Callable,
              prepare_args: Any, data_iter: Any, data_keys: tuple[str, ...], mesh: jax.sharding.Mesh,
              checkpoints: Checkpoints, config: Any, total: int, checkpoint_every: int, log_every: int,
              max_nonfinite: int, writer: MetricsWriter, frozen: Any = None, progress: bool = True
              ) -> tuple[TrainState, Outcome]:
    """Runs steps `state.step + 1 .. total` (see module docstring); returns the final state and how it ended.

    `prepare_fn(prepare_args, pixels, rng, step) -> batch` and `step_fn(state, batch, frozen) -> (state,
    metrics)` are pure; both are compiled here once."""
    start = int(jax.device_get(state.step))
    if start >= total:
        return state, Outcome("done", start, f"{name}: already at step {start} of {total}")
    rep = replicated(mesh)
    tick = time.perf_counter()
    local = next(data_iter)
    pixels = global_batch(local, mesh, data_keys)
    batch_abstract = jax.eval_shape(prepare_fn, prepare_args, pixels, state.rng, np.int32(start))
    batch_sh = {k: batch_sharding(mesh, v.ndim) for k, v in batch_abstract.items()}
    prepare_c = jax.jit(prepare_fn, out_shardings=batch_sh).lower(prepare_args, pixels, state.rng,
                                                                   np.int32(start)).compile()
    abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)
    batch_in = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=batch_sh[k]) for k, v in batch_abstract.items()}
    frozen_sh = jax.tree.map(lambda x: x.sharding, frozen)
    step_c = jax.jit(step_fn, in_shardings=(shardings, batch_sh, frozen_sh), out_shardings=(shardings, rep),
                     donate_argnums=0).lower(abstract, batch_in, frozen).compile()
    log(f"{name}: first batch read, preparation and train step compiled in {time.perf_counter() - tick:.1f} s")
    report_compiled(f"{name} train step", step_c)

    sigterm = _Sigterm()
    bar = tqdm(total=total, initial=start, desc=name, disable=not progress or jax.process_index() != 0,
               dynamic_ncols=True, file=sys.stderr)
    outcome, step, bad_from, tick = None, start, None, time.perf_counter()
    try:
        while step < total:
            if local is None:
                local = next(data_iter)
                pixels = global_batch(local, mesh, data_keys)
            batch = prepare_c(prepare_args, pixels, state.rng, np.int32(step))
            local = None
            state, metrics = step_c(state, batch, frozen)
            step += 1
            m = _scalars(jax.device_get(metrics))
            now = time.perf_counter()
            rate, tick = 1.0 / max(now - tick, 1e-9), now
            if step % log_every == 0 or not m["finite"]:
                writer.write(step, {**m, "steps_per_s": rate})
            bar.update(1)
            bar.set_postfix(loss=f"{m['loss']:.4g}", steps_per_s=f"{rate:.2f}")
            if not m["finite"]:
                bad_from = bad_from or step
                log(f"{name}: step {step}: non-finite loss or gradient, no update (streak {m['nonfinite_streak']}, "
                    f"total {m['nonfinite_total']})")
                if m["nonfinite_streak"] >= max_nonfinite:
                    last = checkpoints.latest_step()
                    outcome = Outcome("nonfinite", step, (
                        f"{name}: steps {bad_from}-{step} had a non-finite loss or gradient ({max_nonfinite} in a "
                        f"row): stopped. No update was made on those steps; the last good checkpoint is "
                        f"{'step ' + str(last) if last is not None else 'none'} in {checkpoints.directory}. Check "
                        "the data of those steps, or lower optimizer.lr."))
                    break
                continue
            bad_from = None
            stop = any_process(sigterm.received)
            if step % checkpoint_every == 0 or step == total or stop:
                checkpoints.save(step, state, data_iter, config)
            if stop:
                outcome = Outcome("preempted", step, f"{name}: SIGTERM: saved step {step} in {checkpoints.directory}; "
                                  "run the same command again to resume")
                break
    finally:
        bar.close()
        sigterm.close()
        checkpoints.wait()
    return state, outcome or Outcome("done", step, f"{name}: finished {step} steps")
