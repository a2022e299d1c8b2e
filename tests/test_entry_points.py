"""Every command line behaves the same on bad input: real subprocesses, one `error:` line, exit 2, nothing left.

The shared behaviour (`swapjax/entry.py`, `swapjax/errors.py`): `--set K=V [K=V ...]` repeatable with every value
kept; bad input is exactly one `error: <message>` line on stderr, exit code 2 and no traceback; and every folder
the failed run created (its --workdir / --out and the parents it made) is removed. Each case below runs one entry
point on one kind of bad input:

  set      `--set BAD --set GOOD`: the first --set must not be dropped (the bad value is the one reported)
  ckpt     a real tiny checkpoint (written once per session) with its largest file cut in half
  ro       the output folder's parent cannot be written (chmod; as root, `chattr +i` or a path under /sys)
  data     an empty dataset folder (`--set data.source=tfds data.tfds_dir=EMPTY`, or the CLI's dataset flag)
  config   a config file whose get_config() raises

Every run writes to a fresh output path under a folder that does not exist yet, runs in an empty working folder
(`tmp_path`), and the test compares the tree of `tmp_path` before and after: a failed run leaves no trace. The
runs share one persistent compilation cache and use the tiny configs; most fail while loading the config.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import shutil
import subprocess
import sys
from typing import Callable

import numpy as np
import pytest

from helpers import assert_one_line_error, largest_file, truncate_file
from sample_fixtures import SAMPLE_SETS  # the tiny sampler: 32x32 model frames, 5-frame windows, 2 steps

ROOT = pathlib.Path(__file__).resolve().parents[1]
PYTHON = sys.executable
TINY = ROOT / "configs" / "swap_tiny.py"
TINY_TRAIN = ROOT / "configs" / "swap_tiny_train.py"
SWEEP = ROOT / "configs" / "sweeps" / "tiny.py"
TIMEOUT = 240  # s per run: every case fails before any training or sampling, so a timeout is a failure


def _latent_cache_module() -> str:
    """The latent-cache command's module: a known name if it exists, else the module whose PROG says
    `python -m swapjax....cache...` (it is being renamed)."""
    for name in ("swapjax.train.cache_cli", "swapjax.data.cache_cli", "swapjax.train.cache"):
        path = ROOT.joinpath(*name.split(".")).with_suffix(".py")
        if path.is_file() and "def main" in path.read_text(encoding="utf-8"):
            return name
    for path in sorted((ROOT / "swapjax").rglob("*.py")):
        found = re.search(r'PROG = "python -m (swapjax\.[\w.]*cache[\w.]*)"', path.read_text(encoding="utf-8"))
        if found:
            return found.group(1)
    raise AssertionError("no latent-cache command found under swapjax/ (a module with PROG = 'python -m ...cache')")


# name -> the command that starts it (argv before its own arguments)
ENTRY_POINTS: dict[str, list[str]] = {
    "train": [PYTHON, str(ROOT / "train.py")],
    "sample": [PYTHON, str(ROOT / "sample.py")],
    "evaluate": [PYTHON, "-m", "swapjax.evaluate"],
    "demo": [PYTHON, "-m", "swapjax.demo"],
    "convert": [PYTHON, "-m", "swapjax.convert"],
    "build": [PYTHON, "-m", "swapjax.data.build"],
    "aot": [PYTHON, "-m", "swapjax.aot"],
    "scaling": [PYTHON, "-m", "swapjax.scaling"],
    "cache": [PYTHON, "-m", _latent_cache_module()],
}


# ------------------------------------------------------------------------------------------ shared inputs
@dataclasses.dataclass(frozen=True)
class Inputs:
    """The session's inputs (read-only for the runs) and the run's own paths."""

    checkpoint: pathlib.Path        # sampling checkpoint: dit/ + vae/ (tests/sample_fixtures.py)
    checkpoint_cut: pathlib.Path    # the same with its largest file cut in half (a VAE data file)
    dit_cut: pathlib.Path           # a converted swap model (its dit/) with its largest file cut in half
    diffusers: pathlib.Path         # a diffusers WanTransformer3DModel folder of the same tiny DiT
    diffusers_cut: pathlib.Path     # the same with its safetensors cut in half
    case: pathlib.Path              # one swap case NPZ for the tiny model
    cases: pathlib.Path             # a folder holding that case
    empty: pathlib.Path             # an empty folder (no dataset, no cases, no videos)
    bad_config: pathlib.Path        # get_config() raises
    bad_sweep: pathlib.Path         # get_sweep() raises
    unwritable: pathlib.Path        # a folder nothing can be created in, even by root
    fresh: pathlib.Path             # the run's output: under a folder that does not exist yet (set per test)


def _make_unwritable(folder: pathlib.Path) -> tuple[pathlib.Path, Callable[[], None]]:
    """(a folder nothing can be created in, undo). chmod 555 for a normal user; root ignores modes, so as root
    the folder is made immutable (`chattr +i`, EPERM even for root), else a path under /sys stands in (sysfs
    refuses new entries with EPERM)."""
    folder.mkdir()

    def refuses() -> bool:
        try:
            (folder / "probe").mkdir()
        except OSError:
            return True
        (folder / "probe").rmdir()
        return False

    if os.geteuid() != 0:
        folder.chmod(0o555)
        assert refuses(), f"chmod 555 did not make {folder} unwritable"
        return folder, lambda: folder.chmod(0o755)
    chattr = shutil.which("chattr")
    if chattr and subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode == 0:
        if refuses():
            return folder, lambda: subprocess.run([chattr, "-i", str(folder)], check=True)
        subprocess.run([chattr, "-i", str(folder)], check=True)
    stand_in = pathlib.Path("/sys/swapjax-unwritable")
    assert not stand_in.exists()
    try:
        stand_in.mkdir()
    except OSError:
        return stand_in, lambda: None
    stand_in.rmdir()
    raise AssertionError("found no way to make an unwritable folder as root (chattr +i and /sys both failed)")


@pytest.fixture(scope="session")
def shared(tmp_path_factory) -> Inputs:
    """The inputs every case reads, made once per session in this process (no subprocess): a random-weight
    sampling checkpoint of configs/swap_tiny.py, its DiT as a diffusers folder, a case, broken copies."""
    from flax import nnx

    from sample_fixtures import CONFIG, box_track, clip, random_models, reference, write_checkpoint
    from swapjax.train.export import export_diffusers

    root = tmp_path_factory.mktemp("entry_inputs")
    checkpoint = write_checkpoint(root / "checkpoint")
    checkpoint_cut = root / "checkpoint_cut"
    shutil.copytree(checkpoint, checkpoint_cut)
    truncate_file(largest_file(checkpoint_cut))
    dit_cut = root / "dit_cut"
    shutil.copytree(checkpoint / "dit", dit_cut)
    truncate_file(largest_file(dit_cut))
    diffusers = export_diffusers(root / "diffusers", nnx.to_pure_dict(random_models().dit_state), CONFIG.dit)
    diffusers_cut = root / "diffusers_cut"
    shutil.copytree(diffusers, diffusers_cut)
    truncate_file(largest_file(diffusers_cut))
    cases = root / "cases"
    cases.mkdir()
    source = clip(5, 32, 32)
    np.savez(cases / "walk.npz", source=source, mask=box_track(5, 32, 32), reference=reference(24),
             ground_truth=source)
    empty = root / "empty"
    empty.mkdir()
    bad_config = root / "bad_config.py"
    bad_config.write_text('def get_config():\n    raise RuntimeError("this config is broken on purpose")\n')
    bad_sweep = root / "bad_sweep.py"
    bad_sweep.write_text('def get_sweep():\n    raise RuntimeError("this sweep is broken on purpose")\n')
    unwritable, undo = _make_unwritable(root / "readonly")
    yield Inputs(checkpoint, checkpoint_cut, dit_cut, diffusers, diffusers_cut, cases / "walk.npz", cases, empty,
                 bad_config, bad_sweep, unwritable, fresh=root / "unused")
    undo()


def _env() -> dict[str, str]:
    """CPU, one device, the compilation cache the train.py tests share (tests/train_fixtures.py)."""
    cache = ROOT / ".cache" / "jax_test_compilation_cache"
    cache.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_"))}
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1",
               JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    return env


def _tree(folder: pathlib.Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _data(i: Inputs) -> list[str]:
    """One --set with both values: each alone is not the empty dataset (source alone lacks tfds_dir; tfds_dir
    alone is ignored by the synthetic source)."""
    return ["--set", "data.source=tfds", f"data.tfds_dir={i.empty}"]


# ------------------------------------------------------------------------------------------ the cases
# id -> (entry point, its arguments from the inputs, fragments the error line must hold)
Case = tuple[str, Callable[[Inputs], list], Callable[[Inputs], tuple[str, ...]]]
NONE: Callable[[Inputs], tuple[str, ...]] = lambda i: ()
CONFIG_NAMED: Callable[[Inputs], tuple[str, ...]] = lambda i: ("bad_config.py",)
RO_NAMED: Callable[[Inputs], tuple[str, ...]] = lambda i: (str(i.unwritable),)


def _flags(args: dict, first_set: str | None) -> list:
    """`--flag value ...`, then `--set FIRST_SET` (when given) before `--set <the tiny sampler>`."""
    return ([x for k, v in args.items() for x in (k, v)] + ["--quiet"] + (["--set", first_set] if first_set else [])
            + ["--set", *SAMPLE_SETS])


def _sample(i: Inputs, first_set: str | None = None, **over) -> list:
    return _flags({"--config": TINY, "--checkpoint": i.checkpoint, "--case": i.case, "--out": i.fresh / "walk.mp4",
                   **over}, first_set)


def _evaluate(i: Inputs, first_set: str | None = None, **over) -> list:
    return _flags({"--config": TINY, "--checkpoint": i.checkpoint, "--cases": i.cases, "--out": i.fresh, **over},
                  first_set)


def _demo_small() -> list[str]:  # were a case not caught, the demo would train for a few steps only
    return ["--pairs", "1", "--quiet", "--set", "train.steps=1", "train.vae_steps=1"]


CASES: dict[str, Case] = {
    # train.py
    "train-set": ("train", lambda i: ["--config", TINY_TRAIN, "--workdir", i.fresh, "--set", "optimizer.lr=oops",
                                      "--set", "train.steps=1"], lambda i: ("optimizer.lr",)),
    "train-ckpt": ("train", lambda i: ["--config", TINY_TRAIN, "--workdir", i.fresh, "--set",
                                       f"train.init_from={i.dit_cut}", "train.steps=1"], NONE),
    "train-ro": ("train", lambda i: ["--config", TINY_TRAIN, "--workdir", i.unwritable / "run", "--set",
                                     "train.steps=1"], RO_NAMED),
    "train-data": ("train", lambda i: ["--config", TINY_TRAIN, "--workdir", i.fresh, *_data(i)], NONE),
    "train-config": ("train", lambda i: ["--config", i.bad_config, "--workdir", i.fresh], CONFIG_NAMED),
    # sample.py
    "sample-set": ("sample", lambda i: _sample(i, "sample.seed=oops"), lambda i: ("sample.seed",)),
    "sample-ckpt": ("sample", lambda i: _sample(i, **{"--checkpoint": i.checkpoint_cut}), NONE),
    "sample-ro": ("sample", lambda i: _sample(i, **{"--out": i.unwritable / "new" / "walk.mp4"}), RO_NAMED),
    "sample-config": ("sample", lambda i: _sample(i, **{"--config": i.bad_config}), CONFIG_NAMED),
    # python -m swapjax.evaluate
    "evaluate-set": ("evaluate", lambda i: _evaluate(i, "sample.seed=oops"), lambda i: ("sample.seed",)),
    "evaluate-ckpt": ("evaluate", lambda i: _evaluate(i, **{"--checkpoint": i.checkpoint_cut}), NONE),
    "evaluate-ro": ("evaluate", lambda i: _evaluate(i, **{"--out": i.unwritable / "eval"}), RO_NAMED),
    "evaluate-data": ("evaluate", lambda i: _evaluate(i, **{"--cases": i.empty}), lambda i: (str(i.empty),)),
    "evaluate-config": ("evaluate", lambda i: _evaluate(i, **{"--config": i.bad_config}), CONFIG_NAMED),
    # python -m swapjax.demo (default config: configs/demo.py)
    "demo-set": ("demo", lambda i: ["--workdir", i.fresh, "--pairs", "1", "--set", "train.steps=oops",
                                    "--set", "train.vae_steps=1"], lambda i: ("train.steps",)),
    "demo-ro": ("demo", lambda i: ["--workdir", i.unwritable / "demo", *_demo_small()], RO_NAMED),
    "demo-data": ("demo", lambda i: ["--workdir", i.fresh, *_demo_small(), *_data(i)], NONE),
    "demo-config": ("demo", lambda i: ["--workdir", i.fresh, "--config", i.bad_config, *_demo_small()],
                    CONFIG_NAMED),
    # python -m swapjax.convert
    "convert-set": ("convert", lambda i: ["--src", i.diffusers, "--out", i.fresh, "--swap-config", TINY,
                                          "--set", "swap.anchor=oops", "--set", "dit.param_dtype=float32"],
                    lambda i: ("swap.anchor",)),
    "convert-ckpt": ("convert", lambda i: ["--src", i.diffusers_cut, "--out", i.fresh], NONE),
    "convert-ro": ("convert", lambda i: ["--src", i.diffusers, "--out", i.unwritable / "converted"], RO_NAMED),
    "convert-config": ("convert", lambda i: ["--src", i.diffusers, "--out", i.fresh, "--swap-config",
                                             i.bad_config], CONFIG_NAMED),
    # python -m swapjax.data.build
    "build-ro": ("build", lambda i: ["--src", i.cases, "--out", i.unwritable / "dataset"], RO_NAMED),
    "build-data": ("build", lambda i: ["--src", i.empty, "--out", i.fresh], lambda i: (str(i.empty),)),
    # python -m swapjax.aot (writes nothing)
    "aot-set": ("aot", lambda i: ["--config", TINY, "--topology", "v5p-8", "--set", "mesh.data=oops",
                                  "--set", "mesh.fsdp=1"], lambda i: ("mesh.data",)),
    "aot-config": ("aot", lambda i: ["--config", i.bad_config, "--topology", "v5p-8"], CONFIG_NAMED),
    # python -m swapjax.scaling (no --set: a sweep file carries its overrides)
    "scaling-ro": ("scaling", lambda i: ["--sweep", SWEEP, "--out", i.unwritable / "sweep"], RO_NAMED),
    "scaling-config": ("scaling", lambda i: ["--sweep", i.bad_sweep, "--out", i.fresh],
                       lambda i: ("bad_sweep.py",)),
    # the latent cache
    "cache-set": ("cache", lambda i: ["--config", TINY_TRAIN, "--out", i.fresh, "--set", "optimizer.lr=oops",
                                      "--set", "train.steps=1"], lambda i: ("optimizer.lr",)),
    "cache-ro": ("cache", lambda i: ["--config", TINY_TRAIN, "--out", i.unwritable / "cache"], RO_NAMED),
    "cache-data": ("cache", lambda i: ["--config", TINY_TRAIN, "--out", i.fresh, *_data(i)], NONE),
    "cache-config": ("cache", lambda i: ["--config", i.bad_config, "--out", i.fresh], CONFIG_NAMED),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(case, shared, tmp_path):
    entry, arguments, fragments = CASES[case]
    inputs = dataclasses.replace(shared, fresh=tmp_path / "new_parent" / "out")  # neither exists yet
    before, unwritable_before = _tree(tmp_path), _tree(inputs.unwritable) if inputs.unwritable.exists() else set()
    command = ENTRY_POINTS[entry] + [str(a) for a in arguments(inputs)]
    done = subprocess.run(command, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT)
    said = f"{' '.join(command)}\nexit {done.returncode}\nstderr:\n{done.stderr}\nstdout:\n{done.stdout[-2000:]}"
    assert done.returncode == 2, said
    print(assert_one_line_error(done.stderr, *fragments(inputs), stdout=done.stdout))  # shown by pytest -rP
    assert _tree(tmp_path) == before, f"the failed run left {sorted(_tree(tmp_path) - before)}\n{said}"
    if inputs.unwritable.exists():
        assert _tree(inputs.unwritable) == unwritable_before
