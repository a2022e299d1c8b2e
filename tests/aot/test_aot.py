"""swapjax.aot: slice names, one-line errors, and compiles for TPU slices with libtpu's compile-only devices.

The compile tests need libtpu (the optional `tpu` extra: pip install -e '.[tpu]') and are skipped without it,
so CI (which installs '.[test]') does not depend on it. The full-size 14B plans take minutes to compile on a
2-core machine; their figures are in the README ("Plans for the 14B swap model"), and
tests/aot/test_aot_14b.py (slow) compiles the 14B train step itself.
"""

from __future__ import annotations

import pathlib

import pytest

from swapjax.aot.cli import main, report
from swapjax.aot.topology import CHIPS, compile_only_devices, libtpu_available, parse_slice, torus
from swapjax.errors import ConfigError

needs_libtpu = pytest.mark.skipif(not libtpu_available(), reason="libtpu is not installed: pip install -e '.[tpu]' "
                                  "(the optional tpu extra) to compile for TPU slices")
TINY = "configs/swap_tiny_train.py"
FSDP = ["--set", "mesh.data=1", "mesh.fsdp=-1"]


@pytest.mark.parametrize("name, topology, chips, devices", [
    ("v5p-64", "v5p:2x4x4", 32, 32),  # v5p names count TensorCores, two per chip
    ("v5p-8", "v5p:2x2x1", 4, 4),
    ("v5p-128", "v5p:4x4x4", 64, 64),
    ("v4-32", "v4:2x2x4", 16, 32),  # libtpu's v4 devices are TensorCores
    ("v6e-64", "v6e:8x8", 64, 64),  # v5e / v6e names count chips
    ("v6e-8", "v6e:2x4", 8, 8),
    ("v5litepod-16", "v5e:4x4", 16, 16),
    ("v5p:2x4x4", "v5p:2x4x4", 32, 32),  # the colon form as is
    ("tpu7x:2x2x2", "tpu7x:2x2x2", 8, 16),
    ("h100-8", "v5p:2x2x2", 8, 8),  # GPUs: the v5p slice of as many chips stands in
])
def test_slice_names(name, topology, chips, devices):
    sl = parse_slice(name)
    assert (sl.topology, sl.chips, sl.devices) == (topology, chips, devices)
    assert (sl.stand_in is not None) == name.startswith("h100")


def test_torus_shapes_follow_cloud_tpu_defaults():
    assert [torus(n, 3) for n in (4, 8, 16, 32, 64, 128, 256)] == [
        (2, 2, 1), (2, 2, 2), (2, 2, 4), (2, 4, 4), (4, 4, 4), (4, 4, 8), (4, 8, 8)]
    assert [torus(n, 2) for n in (4, 8, 16, 32, 64, 256)] == [(2, 2), (2, 4), (4, 4), (4, 8), (8, 8), (16, 16)]


@pytest.mark.parametrize("name, match", [
    ("v5p-63", "count TensorCores"), ("v5p-2", "at least 4 chips"), ("x9-4", "unknown accelerator 'x9'"),
    ("v6e:8x8x1", "2D"), ("h100:2x2", "GPUs have no torus"), ("tpu7x-8", "colon form"), ("64", "not a slice name"),
])
def test_bad_slice_names_say_what_to_write(name, match):
    with pytest.raises(ConfigError, match=match):
        parse_slice(name)


@pytest.mark.parametrize("argv, match", [
    (["--topology", "v5p-63"], "--topology 'v5p-63'"),
    (["--topology", "v5p-8", "--steps", "infer"], "--steps 'infer'"),
    (["--topology", "v5p-8", "--mfu", "1.5"], "--mfu 1.5"),
    (["--topology", "v5p-8", "--set", "dit.num_layers=0"], "num_layers"),
    (["--topology", "v5p-8", "--set", "dit.attention=cudnn"], "dit.attention=cudnn is a GPU kernel"),
])
def test_bad_input_is_one_line_exit_2(argv, match, capsys):
    assert main(["--config", TINY, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err


def test_hbm_table_is_per_device():
    assert CHIPS["v5p"].hbm_bytes > 90 * 2**30 and CHIPS["v6e"].hbm_bytes > 30 * 2**30
    assert CHIPS["v4"].devices_per_chip == 2 and CHIPS["v5e"].hbm_bytes < 16 * 2**30


@needs_libtpu
def test_batch_that_does_not_split_over_the_mesh_is_refused_before_compiling(capsys):
    assert main(["--config", TINY, "--topology", "v5p-8", *FSDP, "--batch", "6"]) == 2
    assert "--batch / data.batch_size (6) must be a multiple of mesh data x fsdp (1 x 4)" in capsys.readouterr().err


@needs_libtpu
def test_tiny_plan_compiles_both_steps_and_fits(capsys):
    assert main(["--config", TINY, "--topology", "v5p-8", *FSDP, "--batch", "4", "--mfu", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "mesh data=1, fsdp=4, tensor=1, sequence=1" in out
    assert out.count("verdict: fits on TPU v5p") == 2 and out.rstrip().endswith("plan: fits (v5p-8)")
    assert "train step (batch 4, 5 frames 32x32" in out and "sampling step (2 guidance branches" in out


def test_a_gpu_plan_over_the_gpus_hbm_is_out_of_memory_even_when_the_stand_in_compiles():
    from swapjax.aot.plan import Memory, StepPlan

    gib = 2**30
    step = StepPlan("train step", "shape", 1e15, {"parameters": 10 * gib}, 1.0,
                    Memory(arguments=20 * gib, outputs=20 * gib, aliased=20 * gib, temporaries=60 * gib, code=0,
                           peak=80 * gib))
    lines, fits = report(step, parse_slice("h100-8"), 0.4)  # 80 GiB > an H100's 80 GB (74.5 GiB)
    assert not fits and lines[-1].startswith("  verdict: OUT OF MEMORY on NVIDIA H100 80GB: needs 5.49 GiB more")
    lines, fits = report(step, parse_slice("h200-8"), 0.4)
    assert fits and "verdict: fits on NVIDIA H200" in lines[-1]
    assert "projected step time 0.32 s at MFU 0.40 of 8 x 989 TFLOP/s" in "\n".join(lines)


@needs_libtpu
def test_14b_plan_that_cannot_fit_says_out_of_memory_with_exit_1(capsys):
    # The config's default mesh is pure data parallelism: every device holds the whole 16.4B-parameter state.
    argv = ["--config", "configs/swap_wan2_1_14b.py", "--topology", "v5p-8", "--batch", "4", "--frames", "5",
            "--height", "128", "--width", "128", "--steps", "train"]
    assert main(argv) == 1  # the plan ran; a step does not fit (swapjax.entry: 1 = part of the run failed)
    out = capsys.readouterr().out
    assert "the compiler ran out of memory: RESOURCE_EXHAUSTED" in out
    assert "verdict: OUT OF MEMORY on TPU v5p" in out and out.rstrip().endswith("plan: OUT OF MEMORY (v5p-8)")


@needs_libtpu
def test_mesh_axes_that_split_a_torus_side_still_map():
    # v6e-64 is an 8x8 torus: jax.make_mesh refuses fsdp=32 (not a product of whole sides); make_mesh splits them
    from swapjax.parallel import MeshConfig, make_mesh

    devices = compile_only_devices(parse_slice("v6e-64"))
    for sizes in ({"fsdp": 32, "sequence": 2}, {"fsdp": 16, "sequence": 4}, {"fsdp": 8, "sequence": 8}):
        mesh = make_mesh(MeshConfig(data=1, **sizes), devices)
        assert dict(mesh.shape) == {"data": 1, "tensor": 1, **sizes}
        assert sorted(d.id for d in mesh.devices.flat) == sorted(d.id for d in devices)


@needs_libtpu
def test_a_gpu_plan_with_cudnn_attention_compiles_the_blocked_xla_attention_in_its_place(capsys):
    argv = ["--config", TINY, "--topology", "h100-8", *FSDP, "--batch", "8", "--steps", "train",
            "--set", "dit.attention=cudnn"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "note: cuDNN attention compiles only with a GPU attached" in out
    assert "mesh data=1, fsdp=8" in out and "attention xla" in out and out.rstrip().endswith("plan: fits (h100-8)")


def test_the_command_keeps_every_repeated_set(tmp_path):
    """The real command: the second `--set` is applied (its bad value is the error), one line, exit 2."""
    import os
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, "-m", "swapjax.aot", "--config", TINY, "--topology", "v5p-8",
                          "--set", "mesh.data=1", "mesh.fsdp=-1", "--set", "dit.num_layers=0"],
                         cwd=root, env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True,
                         timeout=300)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "num_layers" in lines[0], \
        run.stderr
