"""`python -m swapjax.aot`: will this config fit on that slice? Compile the real steps and say.

    python -m swapjax.aot --config configs/swap_wan2_1_14b.py --topology v5p-64 \
        --set mesh.data=1 mesh.fsdp=-1 dit.attention=splash train.text_len=512 --batch 32

Exit codes (`swapjax.entry`): 0 every compiled step fits; 1 a step does not fit (the compiler ran out of memory,
or its peak is above the chip's HBM, e.g. a GPU plan); 2 bad input (one `error:` line, before any compile).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Sequence

from swapjax.aot.topology import GIB, Slice, compile_only_devices, parse_slice
from swapjax.cli_parser import OneLineParser
from swapjax.config import load_config
from swapjax.entry import EXIT_OK, EXIT_PARTIAL, add_set_argument, run_main
from swapjax.errors import ConfigError

EXIT_OOM = EXIT_PARTIAL  # the plan ran; a step does not fit
STEPS = ("train", "sample")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = OneLineParser(prog="python -m swapjax.aot", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="a configs/*.py file")
    p.add_argument("--topology", required=True,
                   help="slice: v5p-64, v6e-64, v4-32, v5e-16, the colon form v5p:2x4x4, or GPUs such as h100-8")
    add_set_argument(p, help="config overrides, e.g. mesh.fsdp=-1 dit.attention=splash")
    p.add_argument("--batch", type=int, help="global batch (data.batch_size)")
    p.add_argument("--frames", type=int, help="pixel frames per clip (data.num_frames), 1 mod 4")
    p.add_argument("--height", type=int, help="pixel height (data.height)")
    p.add_argument("--width", type=int, help="pixel width (data.width)")
    p.add_argument("--mfu", type=float, default=0.4, help="model-FLOPs utilisation for the step-time projection")
    p.add_argument("--steps", default="train,sample", help="which steps to compile: train, sample or both")
    return p.parse_args(argv)


def _overrides(args: argparse.Namespace) -> list[str]:
    named = {"batch": "data.batch_size", "frames": "data.num_frames", "height": "data.height", "width": "data.width"}
    return list(args.overrides) + [f"{key}={getattr(args, flag)}" for flag, key in named.items()
                             if getattr(args, flag) is not None]


def _gib(b: float) -> str:
    return f"{b / GIB:,.2f} GiB" if abs(b) >= GIB / 4 else f"{b / 2**20:,.1f} MiB"


def _flop(f: float) -> str:
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9)):
        if f >= scale:
            return f"{f / scale:,.2f} {unit}"
    return f"{f / 1e6:,.2f} MFLOP"


def _seconds(s: float) -> str:
    return f"{s:,.2f} s" if s >= 0.01 else f"{s * 1e3:,.3f} ms"


def _attention_for(config, sl: Slice):
    """The config to compile on `sl`'s devices and a note, for attention backends tied to one platform: cuDNN
    cannot be compiled without a GPU, so a GPU plan (compiled for a TPU stand-in) compiles the blocked `xla`
    attention in its place (both keep memory linear in the sequence); on a TPU slice cuDNN is refused."""
    if config.dit.attention != "cudnn":
        return config, ""
    if sl.stand_in is None:
        raise ConfigError(f"dit.attention=cudnn is a GPU kernel and cannot run on {sl.name}: use "
                          "--set dit.attention=splash (or xla) for TPU slices")
    dit = dataclasses.replace(config.dit, attention="xla")
    return config.replace(dit=dit), ("note: cuDNN attention compiles only with a GPU attached; this estimate "
                                     "compiles the blocked xla attention in its place (memory linear in the "
                                     "sequence, as cuDNN's fused kernel)")


def report(step, sl: Slice, mfu: float) -> tuple[list[str], bool]:
    """Lines describing one `StepPlan` on slice `sl`, and whether it fits."""
    hbm = sl.hbm_bytes
    lines = [f"{step.name} ({step.shape})"]
    state = ", ".join(f"{k} {_gib(v)}" for k, v in step.state.items())
    lines.append(f"  per device, counted from the shardings: {state}")
    seconds = step.flops / (sl.devices * sl.chip.bf16_flops * mfu)
    lines.append(f"  FLOPs per step {_flop(step.flops)} (analytic matmuls); projected step time "
                 f"{_seconds(seconds)} at MFU {mfu:.2f} of {sl.devices} x "
                 f"{sl.chip.bf16_flops / 1e12:,.0f} TFLOP/s bf16")
    if step.memory is None:
        lines.append(f"  compile: {step.compile_s:.0f} s, the compiler ran out of memory: {step.oom}")
        lines.append(f"  verdict: OUT OF MEMORY on {sl.chip.name} ({_gib(hbm)} HBM)")
        return lines, False
    m = step.memory
    lines.append(f"  per device, compiled: arguments {_gib(m.arguments)}, outputs {_gib(m.outputs)} (aliased "
                 f"{_gib(m.aliased)}), temporaries {_gib(m.temporaries)}, code {_gib(m.code)}; peak {_gib(m.peak)} "
                 f"of {_gib(hbm)} HBM ({100 * m.peak / hbm:.0f} %; all of them live at once: {_gib(m.all_live)})")
    if step.xla_flops is not None:
        lines.append(f"  XLA's count {_flop(step.xla_flops)} per device (a scanned layer stack counts "
                     f"once); compiled in {step.compile_s:.0f} s")
    fits = m.peak <= hbm
    lines.append(f"  verdict: {'fits' if fits else 'OUT OF MEMORY'} on {sl.chip.name}: "
                 + (f"{_gib(hbm - m.peak)} free" if fits else f"needs {_gib(m.peak - hbm)} more per device"))
    return lines, fits


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_main(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    steps = tuple(s.strip() for s in args.steps.split(",") if s.strip())
    if not steps or any(s not in STEPS for s in steps):
        raise ConfigError(f"--steps {args.steps!r}: name train, sample or both (train,sample)")
    if not 0 < args.mfu <= 1:
        raise ConfigError(f"--mfu {args.mfu}: give a fraction in (0, 1], e.g. 0.4")
    sl = parse_slice(args.topology)
    config = load_config(args.config, _overrides(args))
    config, note = _attention_for(config, sl)
    devices = compile_only_devices(sl)
    from swapjax.aot.plan import check_plan, plan_sample_step, plan_train_step
    from swapjax.parallel import MESH_AXES, make_mesh
    try:
        mesh = make_mesh(config.mesh, devices)
    except NotImplementedError:  # jax's device assignment: an axis size that splits a torus side
        sides = sl.topology.split(":")[1].replace("x", ", ")
        sizes = ", ".join(f"{n}={v}" for n, v in zip(MESH_AXES, config.mesh.resolve(len(devices))))
        raise ConfigError(f"mesh {sizes} does not map onto the {sl.topology} torus: every mesh axis size must be "
                          f"a product of torus sides ({sides}); change --set mesh.*") from None
    check_plan(config, mesh)
    print(f"{config.name} on {sl.describe()}; mesh {', '.join(f'{k}={v}' for k, v in mesh.shape.items())}",
          flush=True)
    if note:
        print(note, flush=True)
    fits = True
    for name in steps:
        step = plan_train_step(config, mesh) if name == "train" else plan_sample_step(config, mesh)
        lines, ok = report(step, sl, args.mfu)
        print("\n".join(lines), flush=True)
        fits = fits and ok
    print(f"plan: {'fits' if fits else 'OUT OF MEMORY'} ({sl.name})")
    return EXIT_OK if fits else EXIT_OOM
