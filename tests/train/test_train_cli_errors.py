"""`train.py` on bad input, through the shared entry (`swapjax/entry.py`): exactly one `error:` line, exit code 2,
and a `--workdir` the run created is gone again (no empty `W/checkpoints` left behind). Each case is one real
`train.py` child on the tiny training config; most fail before anything compiles."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from train_fixtures import ROOT, compile_cache, run_train, tiny_config  # noqa: F401

TINY = ("train.steps=1",)


def one_error_line(done: subprocess.CompletedProcess) -> str:
    """The one `error:` line of a run that exited 2 (fails on a traceback or any other line)."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), \
        f"exit {done.returncode}, stderr:\n{done.stderr[-3000:]}"
    return lines[0]


def test_every_set_applies_and_the_first_one_is_not_dropped(tmp_path, compile_cache):  # noqa: F811
    workdir = tmp_path / "new" / "w"
    done = run_train(workdir, compile_cache, "optimizer.lr=-1", "--set", "train.steps=3")
    assert "OptimizerConfig.lr (-1.0) must be a positive number" in one_error_line(done)
    assert not (tmp_path / "new").exists()


@pytest.fixture
def unwritable(tmp_path):
    """A folder nothing can be created in: chmod 555, or as root (which ignores modes) `chattr +i`."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root on a file system without chattr +i: no folder can be made unwritable")
    yield folder
    subprocess.run([chattr, "-i", str(folder)], check=True)


def test_a_workdir_that_cannot_be_written_is_one_line(unwritable, compile_cache):  # noqa: F811
    inside = one_error_line(run_train(unwritable / "w", compile_cache, *TINY))
    assert f"workdir '{unwritable / 'w'}' cannot be created or written" in inside, inside
    assert not (unwritable / "w").exists()
    itself = one_error_line(run_train(unwritable, compile_cache, *TINY))  # an existing folder, read-only
    assert f"workdir '{unwritable}' cannot be created or written" in itself, itself
    assert list(unwritable.iterdir()) == []


def test_a_folder_without_a_dataset_is_one_line_and_leaves_no_workdir(tmp_path, compile_cache):  # noqa: F811
    (tmp_path / "empty").mkdir()
    workdir = tmp_path / "w"
    done = run_train(workdir, compile_cache, *TINY, "data.source=tfds", f"data.tfds_dir={tmp_path / 'empty'}")
    assert f"dataset folder '{tmp_path / 'empty'}' holds no swap_clips" in one_error_line(done)
    assert not workdir.exists()


def test_a_config_file_that_raises_is_one_line(tmp_path, compile_cache):  # noqa: F811
    config = tmp_path / "raising.py"
    config.write_text("def get_config():\n    return {'a': 1}['b']\n")
    done = run_train(tmp_path / "w", compile_cache, *TINY, config=config)
    line = one_error_line(done)
    assert f"config file '{config}' raised KeyError: 'b' while building its Config: fix it" in line, line
    assert not (tmp_path / "w").exists()


def test_init_from_a_vae_folder_is_one_line(tmp_path, compile_cache):  # noqa: F811
    from sample_fixtures import random_values
    from swapjax.convert.saved import save_converted
    from swapjax.models.vae import abstract_vae

    vae = tiny_config().vae
    save_converted(tmp_path / "vae", "vae", vae, random_values(abstract_vae(vae)[1], 0, 0.1))
    done = run_train(tmp_path / "w", compile_cache, *TINY, f"train.init_from={tmp_path / 'vae'}")
    line = one_error_line(done)
    assert (f"train.init_from = '{tmp_path / 'vae'}' is a VAE checkpoint, not a swap/DiT checkpoint: point "
            "train.init_from at") in line, line
    assert not (tmp_path / "w").exists()  # with the checkpoints/ folder the run had opened


@pytest.mark.parametrize("cut", ["_METADATA", "ocdbt.process_0/d"])
def test_a_truncated_checkpoint_on_resume_is_one_line(tmp_path, compile_cache, cut):  # noqa: F811
    """The state's metadata file, or its largest data file, cut in half."""
    from train_fixtures import on_mesh
    from swapjax.train.checkpoint import Checkpoints
    from swapjax.train.data import ShardedBatches
    from swapjax.train.loop import build_dit

    config, workdir = tiny_config(), tmp_path / "w"
    with on_mesh() as mesh:  # what a run leaves at its first save: state, data position, config
        setup = build_dit(config, mesh)
        with Checkpoints(workdir / "checkpoints") as checkpoints:
            checkpoints.save(1, setup.plan.create(0), ShardedBatches(config.data, config.seed), config)
    state = workdir / "checkpoints" / "1" / "state"
    largest = max((f for f in (state / cut).rglob("*") if f.is_file()), key=lambda f: f.stat().st_size) \
        if (state / cut).is_dir() else state / cut
    largest.write_bytes(largest.read_bytes()[: largest.stat().st_size // 2])
    line = one_error_line(run_train(workdir, compile_cache, "train.steps=2"))
    assert f"checkpoint step 1 in '{workdir / 'checkpoints'}' cannot be read, it is truncated or corrupt" in line, line
    assert (workdir / "checkpoints" / "1").is_dir()  # not the run's to remove: it existed before
