"""`python -m swapjax.convert` on bad inputs, tried as a new user would: each exits 2 with one line naming the
input and the fix and leaves nothing behind; a signal or a full disk during the save cleans up and says so."""

from __future__ import annotations

import errno
import json
import os
import pathlib
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import safetensors.numpy
import torch

from swapjax.convert import checkpoint_io
from swapjax.convert.__main__ import load_swap_config, main
from swapjax.convert.dit import convert_dit
from swapjax.convert.saved import CONFIG_FILE, load_converted
from helpers import flat
from wan_dit_torch import build_reference, save_reference

T2V = dict(num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, text_dim=32, freq_dim=32,
           ffn_dim=64, num_layers=2)
REPO = pathlib.Path(__file__).parent.parent.parent
WEIGHTS = "diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def model():
    return build_reference(seed=11, **T2V)


@pytest.fixture(scope="module")
def src(model, tmp_path_factory):
    return save_reference(model, tmp_path_factory.mktemp("t2v") / "transformer")


@pytest.fixture(scope="module")
def expected(src):
    return flat(convert_dit(src)[1])


def _run(capsys, *args: str) -> tuple[int, str]:
    """Runs the CLI in-process; returns (exit code, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def _one_line_error(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def _copy_with_config(src: pathlib.Path, folder: pathlib.Path, config_text: str) -> pathlib.Path:
    folder.mkdir()
    os.symlink(src / WEIGHTS, folder / WEIGHTS)
    (folder / "config.json").write_text(config_text)
    return folder


@pytest.fixture
def no_tensor_reads(monkeypatch):
    """Fails the test if the CLI opens the checkpoint (the output must be checked first)."""
    def refuse(self, *args, **kwargs):
        raise AssertionError("the checkpoint was read before the output was checked")

    monkeypatch.setattr(checkpoint_io.TensorReader, "__init__", refuse)


# ---------------------------------------------------------------------------------------------- config.json
@pytest.mark.parametrize("mutate, fragments", [
    (lambda text: text[: len(text) // 2], ["is not valid JSON", "fix it or use the file that came with"]),
    (lambda text: json.dumps([json.loads(text)]), ["holds a JSON list, not an object"]),
    (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "num_layers"}),
     ["required key 'num_layers' (an integer) is missing", "use the config.json that came with"]),
    (lambda text: json.dumps({**json.loads(text), "num_layers": "two"}),
     ["key 'num_layers' is \"two\", not an integer", "fix that value"]),
    (lambda text: json.dumps({**json.loads(text), "patch_size": 2}),
     ["key 'patch_size' is 2, not a list of values that are each an integer"]),
], ids=["not-json", "not-object", "missing-key", "wrong-type", "wrong-type-list"])
def test_broken_config_json_exits_2_naming_the_file(src, tmp_path, capsys, mutate, fragments):
    bad = _copy_with_config(src, tmp_path / "bad", mutate((src / "config.json").read_text()))
    for kind in ("auto", "dit"):
        code, err = _run(capsys, "--src", bad, "--out", tmp_path / "out", "--kind", kind)
        assert code == 2
        _one_line_error(err, str(bad / "config.json"), *fragments)
    assert sorted(os.listdir(tmp_path)) == ["bad"]


def test_broken_vae_config_json_exits_2(tmp_path, capsys):
    folder = tmp_path / "vae"
    folder.mkdir()
    safetensors.numpy.save_file({"encoder.conv_in.weight": np.zeros((4, 3, 3, 3, 3), np.float32)},
                                str(folder / WEIGHTS))
    (folder / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKLWan", "z_dim": "16"}))
    code, err = _run(capsys, "--src", folder, "--out", tmp_path / "out")
    assert code == 2
    _one_line_error(err, str(folder / "config.json"), "key 'z_dim' is \"16\", not an integer")
    assert sorted(os.listdir(tmp_path)) == ["vae"]


# ---------------------------------------------------------------------------------------------- pickles
@pytest.mark.parametrize("wrap", [
    lambda sd: {"model": sd},
    lambda sd: {"state_dict": sd, "epoch": 3, "optimizer": {"lr": 0.1}},
    lambda sd: {"module": {f"module.{k}": v for k, v in sd.items()}},
], ids=["model", "state_dict", "module"])
def test_nested_pickled_state_dicts_are_unwrapped(model, src, expected, tmp_path, capsys, wrap):
    folder = tmp_path / "pth"
    folder.mkdir()
    shutil.copy(src / "config.json", folder / "config.json")
    torch.save(wrap(model.state_dict()), folder / "model.pth")
    code, err = _run(capsys, "--src", folder, "--out", tmp_path / "out", "--allow-pickle")
    assert code == 0, err
    got = flat(load_converted(tmp_path / "out")[2])
    assert got.keys() == expected.keys()
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k], err_msg=str(k))


def test_unreadable_pickles_exit_2(model, src, tmp_path, capsys):
    folder = tmp_path / "pth"
    folder.mkdir()
    shutil.copy(src / "config.json", folder / "config.json")
    torch.save(model, folder / "model.pth")  # a whole pickled module, not a state dict
    code, err = _run(capsys, "--src", folder, "--out", tmp_path / "out", "--allow-pickle")
    assert code == 2
    _one_line_error(err, str(folder / "model.pth"), "holds a pickled", "WanTransformer3DModel object",
                    "torch.save(model.state_dict(), path)")

    torch.save(model.state_dict(), folder / "model.pth")
    data = (folder / "model.pth").read_bytes()
    (folder / "model.pth").write_bytes(data[: len(data) // 2])  # an interrupted download
    code, err = _run(capsys, "--src", folder, "--out", tmp_path / "out", "--allow-pickle")
    assert code == 2
    _one_line_error(err, str(folder / "model.pth"), "looks truncated or corrupt; re-download it")

    code, err = _run(capsys, "--src", folder, "--out", tmp_path / "out")
    assert code == 2
    _one_line_error(err, "--allow-pickle")
    assert sorted(os.listdir(tmp_path)) == ["pth"]


# ---------------------------------------------------------------------------------------------- --swap-config
def test_bad_swap_config_exits_2_before_reading(src, tmp_path, capsys, no_tensor_reads):
    (tmp_path / "swap.json").write_text("{}")
    (tmp_path / "broken.py").write_text("def get_config(:\n    pass\n")
    (tmp_path / "raises.py").write_text("import not_a_module_anywhere\n")
    cases = [("swap.json", ["is not a Python config file", "pass a configs/swap_*.py file"]),
             ("broken.py", ["broken.py", "line 1"]),
             ("raises.py", ["--swap-config", "raises.py", "failed while loading (ModuleNotFoundError",
                            "not_a_module_anywhere"]),
             ("missing.py", ["--swap-config", "does not exist"])]
    for name, fragments in cases:
        code, err = _run(capsys, "--src", src, "--out", tmp_path / "out", "--swap-config", tmp_path / name)
        assert code == 2
        _one_line_error(err, *fragments)
    assert not (tmp_path / "out").exists()


def test_set_overrides_apply_to_the_swap_config_and_bad_ones_exit_2(src, tmp_path, capsys, no_tensor_reads):
    swap_tiny = REPO / "configs" / "swap_tiny.py"
    config = load_swap_config(swap_tiny, ["swap.anchor=false", "dit.param_dtype=bfloat16"])
    assert config.swap.anchor is False and config.dit.param_dtype == "bfloat16"
    cases = [(["--swap-config", swap_tiny, "--set", "swap.anchr=false"], ["override swap.anchr='false'",
                                                                          "has no field 'anchr'", "anchor"]),
             (["--swap-config", swap_tiny, "--set", "dit.remat_policy=some"], ["dit.remat_policy='some' is invalid",
                                                                              "must be one of"]),
             (["--set", "swap.anchor=false"], ["needs --swap-config"])]
    for extra, fragments in cases:
        code, err = _run(capsys, "--src", src, "--out", tmp_path / "out", *extra)
        assert code == 2
        _one_line_error(err, *fragments)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------- --out
def test_unusable_out_is_refused_before_reading(src, tmp_path, capsys, no_tensor_reads, monkeypatch):
    (tmp_path / "done").mkdir()
    code, err = _run(capsys, "--src", src, "--out", tmp_path / "done")
    assert code == 2
    _one_line_error(err, str(tmp_path / "done"), "already exists: choose a new --out or delete it")

    (tmp_path / "file").write_text("x")
    code, err = _run(capsys, "--src", src, "--out", tmp_path / "file" / "out")
    assert code == 2
    _one_line_error(err, "is a file, not a folder")

    # Root ignores permission bits (tests/test_atomic.py runs the real check as an unprivileged user).
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if pathlib.Path(p) == tmp_path else real_access(p, mode))
    code, err = _run(capsys, "--src", src, "--out", tmp_path / "new" / "out")
    assert code == 2
    _one_line_error(err, str(tmp_path), "is read-only for this user; choose a --out in a folder you can write to")
    assert sorted(os.listdir(tmp_path)) == ["done", "file"]


def test_full_disk_during_the_save_cleans_up(src, tmp_path, capsys, monkeypatch):
    real_write = pathlib.Path.write_text

    def full_disk(self, *args, **kwargs):
        if self.name == CONFIG_FILE:  # after Orbax wrote the parameters into the temporary folder
            assert any(self.parent.iterdir())
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", full_disk)
    code, err = _run(capsys, "--src", src, "--out", tmp_path / "sub" / "out")
    assert code == 2
    _one_line_error(err, str(tmp_path / "sub" / "out"), "filled up", "partial output was removed", "free space")
    assert os.listdir(tmp_path) == []


# A full disk as orbax meets it: its first background write fails with tensorstore's RESOURCE_EXHAUSTED, and a
# write already under way lands in the temporary folder 0.3 s after the failure was reported.
_FULL_DISK_IN_ORBAX = """
import errno, json, os, pathlib, re, sys, threading, time
from orbax.checkpoint._src.serialization import type_handlers
from swapjax.convert.__main__ import main

real_write = type_handlers.NumpyHandler._open_and_write
failed = []

async def full_disk(self, value, tspec, ts_context):
    if failed:
        return await real_write(self, value, tspec, ts_context)
    folder = pathlib.Path(re.search(r"(/[^\\"']*?\\.out\\.partial-[0-9a-f]+)", json.dumps(tspec)).group(1))

    def still_writing():
        time.sleep(0.3)
        (folder / "params.orbax-checkpoint-tmp" / "d").mkdir(parents=True, exist_ok=True)
        (folder / "params.orbax-checkpoint-tmp" / "d" / "late").write_bytes(bytes(64))

    failed.append(threading.Thread(target=still_writing))
    failed[0].start()
    raise ValueError(f"RESOURCE_EXHAUSTED: Error writing in OCDBT database at local file {folder}: Failed to write "
                     f"49619 bytes to file 14: {os.strerror(errno.ENOSPC)} [os_error_code='28']")

type_handlers.NumpyHandler._open_and_write = full_disk
code = main(["--src", sys.argv[1], "--out", sys.argv[2]])
failed[0].join()
sys.exit(code)
"""


def test_full_disk_inside_orbax_is_one_line_and_leaves_nothing(src, tmp_path):
    """One line on stderr (none of orbax's thread tracebacks, none of tensorstore's closed-event-loop ones), and
    neither the temporary folder, recreated by the late write, nor the parents made for OUT stay behind."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    (tmp_path / "disk").mkdir()
    run = subprocess.run([sys.executable, "-c", _FULL_DISK_IN_ORBAX, str(src), str(tmp_path / "disk" / "sub" / "out")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    _one_line_error(run.stderr, str(tmp_path / "disk" / "sub" / "out"), "filled up", "partial output was removed",
                    "free space")
    assert os.listdir(tmp_path / "disk") == []


def test_repeated_set_is_kept_and_a_failed_run_leaves_no_folder(src, tmp_path):
    """The real command: every value of every --set reaches the config (here: both are named in the error of a
    run without --swap-config), and the run, failing, leaves none of the folders --out would have made."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    out = tmp_path / "new" / "deep" / "out"
    run = subprocess.run([sys.executable, "-m", "swapjax.convert", "--src", str(src), "--out", str(out),
                          "--set", "swap.anchor=false", "--set", "dit.remat_policy=full", "dit.scan_layers=false"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    _one_line_error(run.stderr, "--set swap.anchor=false dit.remat_policy=full dit.scan_layers=false needs "
                    "--swap-config")
    run = subprocess.run([sys.executable, "-m", "swapjax.convert", "--src", str(src), "--out", str(out),
                          "--swap-config", str(REPO / "configs" / "swap_tiny.py"), "--set", "swap.anchor=false",
                          "--set", "dit.remat_policy=some"], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    _one_line_error(run.stderr, "dit.remat_policy='some' is invalid")  # the second --set was applied
    assert os.listdir(tmp_path) == []


def test_converted_folder_gets_the_umask_permissions(src, tmp_path, capsys):
    old = os.umask(0o027)
    try:
        code, err = _run(capsys, "--src", src, "--out", tmp_path / "out")
    finally:
        os.umask(old)
    assert code == 0, err
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o750
    for root, dirs, files in os.walk(tmp_path / "out"):
        for name in dirs + files:  # everything inside readable by the group, as the umask allows
            assert (pathlib.Path(root) / name).stat().st_mode & stat.S_IRGRP, pathlib.Path(root) / name


_SLOW_SAVE = """
import pathlib, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C as in a terminal, whatever the parent ignores
import orbax.checkpoint as ocp
from swapjax.convert.__main__ import main

real_save = ocp.Checkpointer.save

def slow_save(self, directory, *args, **kwargs):
    real_save(self, directory, *args, **kwargs)
    pathlib.Path(sys.argv[3]).touch()  # the temporary folder now holds the parameters
    time.sleep(300)

ocp.Checkpointer.save = slow_save
sys.exit(main(["--src", sys.argv[1], "--out", sys.argv[2]]))
"""


def test_sigterm_and_ctrl_c_during_the_save_leave_nothing(src, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    runs = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        folder = tmp_path / sig.name
        folder.mkdir()
        marker = tmp_path / f"{sig.name}.saving"
        proc = subprocess.Popen([sys.executable, "-c", _SLOW_SAVE, str(src), str(folder / "out"), str(marker)],
                                env=env, stderr=subprocess.PIPE, text=True)
        runs[sig] = (proc, folder, marker)
    for sig, (proc, folder, marker) in runs.items():
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the conversion never reached the save"
            time.sleep(0.2)
        assert [p.name.startswith(".out.partial-") for p in folder.iterdir()] == [True]
        proc.send_signal(sig)
    for sig, (proc, folder, _) in runs.items():
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, err
        stop = "SIGTERM" if sig == signal.SIGTERM else "Ctrl-C"
        _one_line_error(err, f"stopped by {stop} while converting", "nothing was written",
                        "temporary folder, if any, was removed")
        assert os.listdir(folder) == []


# ---------------------------------------------------------------------------------------------- --src
def test_missing_shard_is_named(model, tmp_path, capsys):
    folder = tmp_path / "sharded"
    model.save_pretrained(folder, safe_serialization=True, max_shard_size="20KB")
    shards = sorted(folder.glob("*.safetensors"))
    assert len(shards) > 2
    shards[1].unlink()
    code, err = _run(capsys, "--src", folder, "--out", tmp_path / "out")
    assert code == 2
    _one_line_error(err, "names 1 shard file(s) missing", shards[1].name, "download them")
    assert "missing from checkpoint" not in err and not (tmp_path / "out").exists()


def test_pipeline_root_points_to_its_model_folders(src, tmp_path, capsys):
    root = tmp_path / "Wan2.1-T2V-Diffusers"
    root.mkdir()
    os.symlink(src, root / "transformer")
    (root / "vae").mkdir()
    (root / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    for kind in ("auto", "dit", "vae"):
        code, err = _run(capsys, "--src", root, "--out", tmp_path / "out", "--kind", kind)
        assert code == 2
        _one_line_error(err, "is a diffusers pipeline folder, not one model",
                        f"pass '{root / 'transformer'}' or '{root / 'vae'}'")
    assert sorted(os.listdir(tmp_path)) == [root.name]


def test_nonfinite_weights_convert_with_one_warning(model, src, expected, tmp_path, capsys):
    tensors = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    tensors["blocks.0.attn1.to_q.weight"][0, 0] = np.nan
    tensors["proj_out.bias"][1] = np.inf
    folder = tmp_path / "nan"
    folder.mkdir()
    shutil.copy(src / "config.json", folder / "config.json")
    safetensors.numpy.save_file(tensors, str(folder / WEIGHTS))
    code, err = _run(capsys, "--src", folder, "--out", tmp_path / "out")
    assert code == 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: "), err
    assert "2 tensor(s) hold NaN or Inf" in lines[0] and str(folder) in lines[0]
    assert "blocks.0.attn1.to_q.weight" in lines[0] and "proj_out.bias" in lines[0]
    got = flat(load_converted(tmp_path / "out")[2])
    assert np.isnan(got["blocks/self_attn/q/kernel"][0, 0, 0])
    assert np.isposinf(got["proj_out/bias"][1])
    np.testing.assert_array_equal(got["patch_embed/kernel"], expected["patch_embed/kernel"])
