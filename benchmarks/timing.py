"""Timing helpers shared by the benchmarks: thread count, alternated repeats with medians, the matmul peak.

Shared machines are noisy: every benchmark runs its contenders in turn, round after round (the order rotated
each round, so no contender always follows the same one), and reports medians. CPU time is recorded beside
wall time: on a loaded machine it shows the work done, where wall time also counts the waiting for a core.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from typing import Any, Callable



def allocator() -> str:
    """The glibc malloc tunables this process runs with (for the benchmark's report).

    XLA:CPU allocates a step's temporaries afresh each run (about 0.5 GB for the DiT training step); with 4 KB
    pages their first touch costs ~130,000 page faults per step. `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (huge
    pages) removes them and cut a JAX-only process's step by ~13 %, but with torch in the same process the JAX
    step became erratic (2.5-5.2 s), so the benchmarks run with whatever the caller set (README, "Performance").
    """
    return f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '(unset)')}"


def cpu_threads() -> int:
    """Cores this process may run on (XLA's CPU thread pool is sized from the same affinity mask)."""
    return len(os.sched_getaffinity(0))


def load_average() -> str:
    """The 1-minute load average and the core count, e.g. `load 6.2 on 2 cores` (how busy the machine was)."""
    return f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


@dataclasses.dataclass
class Samples:
    """Per-run seconds of one contender: wall clock and this process's CPU time (all its threads)."""

    wall: list[float] = dataclasses.field(default_factory=list)
    cpu: list[float] = dataclasses.field(default_factory=list)


def alternated(runs: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, Samples]:
    """Wall and CPU seconds of each `runs[name]()` (which must block until its result is ready), `repeats` per name.

    Each call runs `warmup` times first (compiles, caches); then every round calls each run once, the order
    rotated by one each round.
    """
    for run in runs.values():
        for _ in range(warmup):
            run()
    names = list(runs)
    samples = {name: Samples() for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            wall, cpu = time.perf_counter(), time.process_time()
            runs[name]()
            samples[name].wall.append(time.perf_counter() - wall)
            samples[name].cpu.append(time.process_time() - cpu)
    return samples


def median(samples: list[float]) -> float:
    """Median of timing samples."""
    return statistics.median(samples)


def matmul_runner(n: int = 2048) -> tuple[Callable[[], Any], float]:
    """A run of one jitted float32 `jnp.dot` of two `[n, n]` matrices, and its FLOPs (`2 n³`)."""
    import jax  # noqa: PLC0415 - keeps this module importable without JAX
    import jax.numpy as jnp  # noqa: PLC0415

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)  # [n, n]
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    return (lambda: dot(a, b).block_until_ready()), 2.0 * n ** 3
