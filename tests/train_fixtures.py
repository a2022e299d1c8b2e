"""Shared pieces of the training tests: the CPU-fast config, meshes, random model batches, a compiled step."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from swapjax.config import Config, load_config
from swapjax.parallel import LOGICAL_AXIS_RULES, MeshConfig, make_mesh
from swapjax.train.hosts import batch_sharding
from swapjax.train.loop import DiTSetup, build_dit
from swapjax.train.state import replicated, select

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "swap_tiny_train.py"


def tiny_config(*overrides: str) -> Config:
    return load_config(CONFIG, list(overrides))


@contextlib.contextmanager
def on_mesh(sizes: dict[str, int] | None = None):
    """A mesh over the first devices (default: one device), entered with the rules table as the loop does."""
    cfg = MeshConfig(**{"data": 1, **(sizes or {})})
    n = cfg.data * cfg.fsdp * cfg.tensor * cfg.sequence
    mesh = make_mesh(cfg, jax.devices()[:n])
    with jax.set_mesh(mesh), nnx.logical_axis_rules(LOGICAL_AXIS_RULES):
        yield mesh


def model_batch(config: Config, b: int, seed: int) -> dict[str, np.ndarray]:
    """Random prepared inputs for the swap DiT of `config` (what `prepare.assemble_batch` hands the step)."""
    rng = np.random.default_rng(seed)
    d, s = config.data, config.swap
    f, h, w = (d.num_frames - 1) // s.frames_per_latent + 1, d.height // s.pixels_per_latent, d.width // s.pixels_per_latent
    c, z = config.dit.in_channels, config.dit.out_channels
    return {"fused": rng.standard_normal((b, f, h, w, c)).astype(np.float32),
            "prefix": rng.standard_normal((b, s.num_prefix_frames, h, w, c)).astype(np.float32),
            "t": rng.uniform(0.05, 0.95, (b,)).astype(np.float32),
            "target": rng.standard_normal((b, f, h, w, z)).astype(np.float32),
            "subject": (rng.uniform(size=(b, f, h, w)) < 0.3).astype(np.float32),
            "context": rng.standard_normal((b, config.train.text_len, config.dit.text_dim)).astype(np.float32)}


def randomized(setup: DiTSetup, state, seed: int = 0):
    """`state` with every parameter (and its EMA) moved by 0.2 N(0, 1): the init zeroes the output head and
    the zero-init branches, so gradients would vanish and hide bugs."""
    leaves, treedef = jax.tree.flatten(state.params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    params = treedef.unflatten([p + 0.2 * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys)])
    params = jax.device_put(params, setup.plan.shardings.params)
    ema = jax.tree.map(jnp.copy, select(params, setup.labels)) if state.ema else state.ema  # own buffers
    return state.replace(params=params, ema=ema)


def compiled_step(setup: DiTSetup, mesh: jax.sharding.Mesh, batch: dict):
    """The train step jitted as the loop does it: explicit shardings, the state donated."""
    batch_sh = {k: batch_sharding(mesh, np.ndim(v)) for k, v in batch.items()}
    return jax.jit(setup.step, in_shardings=(setup.plan.shardings, batch_sh, None),
                   out_shardings=(setup.plan.shardings, replicated(mesh)), donate_argnums=0), batch_sh


def run(config: Config, sizes: dict[str, int] | None, batches: list[dict], seed: int = 0):
    """Builds the state from `seed` on the mesh `sizes` and runs one step per batch -> (losses, final params
    on the host, setup)."""
    with on_mesh(sizes) as mesh:
        setup = build_dit(config, mesh)
        state = randomized(setup, setup.plan.create(seed), seed)
        step, batch_sh = compiled_step(setup, mesh, batches[0])
        losses = []
        for batch in batches:
            state, metrics = step(state, {k: jax.device_put(v, batch_sh[k]) for k, v in batch.items()}, None)
            losses.append(float(metrics["loss"]))
        return losses, jax.device_get(state.params), setup


def subprocess_env(cache: pathlib.Path, devices: int = 1, fast_compile: bool = True) -> dict[str, str]:
    """Environment for a `train.py` child: CPU, `devices` fake devices, a shared compilation cache (later runs
    of the same program skip compiling) and, with `fast_compile`, the suite's quick-to-compile XLA level
    (conftest.TEST_XLA_FLAGS; a child that trains for hundreds of steps runs faster without it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    flags = f"--xla_force_host_platform_device_count={devices}" + (" --xla_backend_optimization_level=0" * fast_compile)
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=flags,
               JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0", PYTHONUNBUFFERED="1")
    return env


PYTHON = sys.executable


# ------------------------------------------------------------------------------------ train.py children
import json  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def compile_cache() -> pathlib.Path:
    """One persistent compilation cache for every `train.py` child (in the git-ignored .cache/, kept between
    sessions: JAX keys its entries by program, version and flags, so a stale entry is never used)."""
    path = ROOT / ".cache" / "jax_test_compilation_cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def train_command(workdir: pathlib.Path, *overrides: str, config: pathlib.Path = CONFIG) -> list[str]:
    return [PYTHON, str(ROOT / "train.py"), "--config", str(config), "--workdir", str(workdir),
            *(("--set", *overrides) if overrides else ())]


def run_train(workdir: pathlib.Path, cache: pathlib.Path, *overrides: str, timeout: float = 300,
              devices: int = 1, config: pathlib.Path = CONFIG) -> subprocess.CompletedProcess:
    return subprocess.run(train_command(workdir, *overrides, config=config), env=subprocess_env(cache, devices), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def losses(workdir: pathlib.Path, prefix: str = "") -> dict[int, float]:
    """{step: loss} from a run's metrics.jsonl (the last record of each step)."""
    from swapjax.train.writers import read_metrics

    return {s: r["loss"] for s, r in read_metrics(workdir / f"{prefix}metrics.jsonl").items()}


def wait_for_step(workdir: pathlib.Path, step: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Blocks until the child logged `step` (fails if it exits or the time runs out)."""
    path, deadline = workdir / "metrics.jsonl", time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            steps = [json.loads(line)["step"] for line in path.read_text().splitlines() if line.endswith("}")]
            if steps and max(steps) >= step:
                return
        if proc.poll() is not None:
            raise AssertionError(f"train.py exited ({proc.returncode}) before step {step}: {proc.stderr.read()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"train.py did not reach step {step} in {timeout} s")


# ------------------------------------------------------------------------------------ resume checks
from unittest import mock  # noqa: E402

import orbax.checkpoint as ocp  # noqa: E402

from swapjax.train.checkpoint import Checkpoints  # noqa: E402

BREAKS = ("opt_state", "params")


def _broken(state, what: str):
    """`state` as a restore that lost `what` would give it: "opt_state" -> a fresh optimizer state (Adam's moments
    and step count zero, as `tx.init` makes them); "params" -> the trained parameters re-drawn (the adapters
    of a LoRA run, else the model)."""
    if what == "opt_state":
        fresh = jax.tree.map(lambda x: x if x.dtype == jnp.bool_ else jnp.zeros_like(x), state.opt_state)
        return state.replace(opt_state=fresh)
    part = "lora" if "lora" in state.params else "model"
    leaves, treedef = jax.tree.flatten(state.params[part])
    keys = jax.random.split(jax.random.key(1234), len(leaves))
    drawn = [jax.device_put(0.1 * jax.random.normal(k, x.shape, x.dtype), x.sharding) for x, k in zip(leaves, keys)]
    return state.replace(params={**state.params, part: treedef.unflatten(drawn)})


@contextlib.contextmanager
def broken_restore(what: str):
    """`Checkpoints.restore` breaks on purpose while entered (`what` in `BREAKS`, see `_broken`), so a test can
    show that its resume check notices a restore that lost the optimizer state or the parameters."""
    assert what in BREAKS, what
    restore = Checkpoints.restore
    with mock.patch.object(Checkpoints, "restore", lambda self, *a, **k: _broken(restore(self, *a, **k), what)):
        yield


def flat(tree) -> dict[str, np.ndarray]:
    """{"params/model/...": host array} of a pytree (TrainState fields, nested dicts, optax states)."""
    from swapjax.train.state import path_name

    return {path_name(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(jax.device_get(tree))[0]}


def saved_state(workdir: pathlib.Path, step: int | None = None) -> dict[str, np.ndarray]:
    """The train state a run saved at `step` (default its latest) as flat host arrays (`flat`), read without
    placing anything on devices (works for checkpoints written by any number of processes)."""
    directory = workdir / "checkpoints"
    step = step if step is not None else max(int(d.name) for d in directory.iterdir() if d.name.isdigit())
    path = directory / str(step) / "state"
    with ocp.PyTreeCheckpointer() as checkpointer:
        tree = checkpointer.metadata(path).item_metadata
        tree = tree.tree if hasattr(tree, "tree") else tree
        args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        return flat(checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=args)))


def assert_same_run(got: tuple[list[float], dict], want: tuple[list[float], dict], what: str = "") -> None:
    """(losses, flat final state) of a resumed run equal those of the uninterrupted run, bit for bit."""
    (got_losses, got_state), (want_losses, want_state) = got, want
    assert got_losses == want_losses, f"{what}: losses {got_losses} != uninterrupted {want_losses}"
    assert sorted(got_state) == sorted(want_state), what
    differ = [k for k in want_state if not np.array_equal(got_state[k], want_state[k])]
    assert not differ, f"{what}: final state differs from the uninterrupted run's in {differ[:5]} ({len(differ)} leaves)"


def random_init_workdir(directory: pathlib.Path, config: Config) -> pathlib.Path:
    """A workdir whose checkpoint holds `randomized` parameters of `config`'s model (output head included, which a
    fresh model has at zero): `train.init_from=<it>` starts a run whose loss depends on every parameter."""
    with on_mesh() as mesh:
        setup = build_dit(config.replace(train=dataclasses.replace(config.train, stage="2")), mesh)
        checkpoints = Checkpoints(directory / "checkpoints")
        checkpoints.save(0, randomized(setup, setup.plan.create(config.seed), config.seed), None, config)
        checkpoints.close()
    return directory


@pytest.fixture(scope="session")
def random_init(tmp_path_factory) -> pathlib.Path:
    """`random_init_workdir` of the tiny training config (one per test session)."""
    return random_init_workdir(tmp_path_factory.mktemp("random_init"), tiny_config())
