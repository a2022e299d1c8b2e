"""Named accelerator slices -> compile-only devices, and what each chip offers (HBM, bf16 peak).

TPU slice names follow Cloud TPU's convention: v4 and v5p names count TensorCores (two per chip, so `v5p-64` is
32 chips, the 3D torus `v5p:2x4x4`); v5e and v6e names count chips (`v6e-64` is `v6e:8x8`). The colon form
(`v5p:2x4x4`) is accepted as is. libtpu builds compile-only devices for a topology without any TPU attached
(`jax.experimental.topologies`), so a train step can be compiled and its memory planned on a CPU machine.

GPUs have no compile-only devices in JAX. A GPU plan (`h100-8`, `h200-8`, `a100-8`) is therefore compiled for
the TPU v5p slice with the same number of chips (one device each, and more HBM than the GPU, so XLA does not
stop at the GPU's limit) and its per-device memory is compared against the GPU's HBM: parameters, optimizer
state and batch are laid out identically; temporaries differ with each backend's fusion and scheduling, so a
GPU verdict is an estimate (docs/design.md, "Ahead-of-time plans").
"""

from __future__ import annotations

import dataclasses
import math
import os
import re

from swapjax.errors import ConfigError

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Chip:
    """One accelerator kind, per JAX device: HBM (as libtpu budgets it), dense bf16 peak, and naming."""

    name: str
    hbm_bytes: int  # per device: what libtpu's compiler allows (its RESOURCE_EXHAUSTED limit); GPUs: the spec
    bf16_flops: float  # dense peak FLOP/s per device
    devices_per_chip: int  # libtpu's compile-only v4 and TPU7x devices are TensorCores (two per chip)
    cores_per_name_unit: int  # 2: slice names count TensorCores (v4, v5p); 1: names count chips
    torus_dims: int  # 3: 3D torus (v4, v5p, tpu7x); 2: 2D (v5e, v6e); 0: a GPU
    tpu_platform_name: str  # the name libtpu's topology strings use


def _gib(x: float) -> int:
    return int(x * GIB)


# HBM per device as libtpu 0.0.42 reports it in RESOURCE_EXHAUSTED messages ("available HBM"); bf16 peaks from
# the vendors' spec sheets (per chip, divided among the chip's devices).
CHIPS = {
    "v4": Chip("TPU v4 TensorCore", _gib(15.25), 275e12 / 2, 2, 2, 3, "v4"),
    "v5p": Chip("TPU v5p", _gib(95.74), 459e12, 1, 2, 3, "v5p"),
    "v5e": Chip("TPU v5e", _gib(15.75), 197e12, 1, 1, 2, "v5e"),
    "v6e": Chip("TPU v6e", _gib(31.25), 918e12, 1, 1, 2, "v6e"),
    "tpu7x": Chip("TPU7x TensorCore", _gib(94.75), 2307e12 / 2, 2, 0, 3, "tpu7x"),
    "a100": Chip("NVIDIA A100 80GB", 80 * 10**9, 312e12, 1, 1, 0, ""),
    "h100": Chip("NVIDIA H100 80GB", 80 * 10**9, 989e12, 1, 1, 0, ""),
    "h200": Chip("NVIDIA H200", 141 * 10**9, 989e12, 1, 1, 0, ""),
}
ALIASES = {"v5litepod": "v5e", "v5lite": "v5e", "v6lite": "v6e", "trillium": "v6e"}
GPU_STAND_IN = "v5p"  # the TPU compiled for when a GPU plan is asked for (see module docstring)
MIN_CHIPS = 4  # libtpu's compile-only topologies start at one host's chips (2x2 / 2x2x1)


@dataclasses.dataclass(frozen=True)
class Slice:
    """A parsed slice: the chip, the chip count, libtpu's topology string and, for GPUs, the stand-in chip."""

    name: str  # as the user wrote it
    chip: Chip
    chips: int
    topology: str  # e.g. "v5p:2x4x4" (for a GPU: the stand-in TPU's)
    stand_in: Chip | None = None  # the TPU compiled for a GPU plan

    @property
    def devices(self) -> int:
        return self.chips * self.chip.devices_per_chip

    @property
    def hbm_bytes(self) -> int:
        return self.chip.hbm_bytes

    def describe(self) -> str:
        text = f"{self.name}: {self.devices} x {self.chip.name} ({self.chip.hbm_bytes / GIB:.2f} GiB HBM each)"
        if self.stand_in is not None:
            text += f", estimated by compiling for {self.topology} ({self.stand_in.name})"
        return text


def torus(chips: int, dims: int) -> tuple[int, ...]:
    """Cloud TPU's default torus for `chips` chips: 2D `a x b` (a <= b) or 3D (`2x2x1` for 4, then doubling the
    last of the smallest sides: 2x2x2, 2x2x4, 2x4x4, 4x4x4, ...)."""
    if chips < MIN_CHIPS or chips & (chips - 1):
        raise ValueError(f"{chips} chips: need a power of two >= {MIN_CHIPS}")
    if dims == 2:
        shape = [1, 1]
        while math.prod(shape) < chips:
            shape[0 if shape[0] < shape[1] else 1] *= 2
        return tuple(shape)
    if chips == 4:
        return (2, 2, 1)
    shape = [2, 2, 2]
    while math.prod(shape) < chips:
        low = min(shape)
        shape[max(i for i, s in enumerate(shape) if s == low)] *= 2
    return tuple(shape)


def _chip(kind: str, whole: str) -> Chip:
    kind = ALIASES.get(kind.lower(), kind.lower())
    if kind not in CHIPS:
        raise ConfigError(f"--topology {whole!r}: unknown accelerator {kind!r}; use one of "
                          f"{', '.join(sorted(CHIPS))} (e.g. v5p-64, v6e-64, v5p:2x4x4, h100-8)")
    return CHIPS[kind]


def parse_slice(name: str) -> Slice:
    """`v5p-64` / `v6e-64` / `v5p:2x4x4` / `h100-8` -> a `Slice`; raises `ConfigError` (one line) if malformed."""
    text = name.strip()
    colon = re.fullmatch(r"([A-Za-z0-9]+):(\d+(?:x\d+){1,2})", text)
    if colon:
        chip = _chip(colon.group(1), name)
        if not chip.torus_dims:
            raise ConfigError(f"--topology {name!r}: GPUs have no torus; write {colon.group(1)}-<number of GPUs>")
        shape = tuple(int(s) for s in colon.group(2).split("x"))
        if len(shape) != chip.torus_dims or min(shape) < 1:
            raise ConfigError(f"--topology {name!r}: {chip.name} slices are {chip.torus_dims}D, e.g. "
                              f"{chip.tpu_platform_name}:{'x'.join(['2'] * chip.torus_dims)}")
        return Slice(text, chip, math.prod(shape), f"{chip.tpu_platform_name}:{colon.group(2)}")
    dash = re.fullmatch(r"([A-Za-z0-9]+?)-(\d+)", text)
    if not dash:
        raise ConfigError(f"--topology {name!r} is not a slice name: write e.g. v5p-64, v6e-64, v5p:2x4x4 or h100-8")
    chip, units = _chip(dash.group(1), name), int(dash.group(2))
    if chip.torus_dims and not chip.cores_per_name_unit:
        raise ConfigError(f"--topology {name!r}: give {chip.name} slices in the colon form, e.g. "
                          f"{chip.tpu_platform_name}:2x2x1")
    per = max(1, chip.cores_per_name_unit)
    if units < per or units % per:
        raise ConfigError(f"--topology {name!r}: {chip.name} names count TensorCores ({per} per chip); use a "
                          f"multiple of {per}, e.g. {dash.group(1)}-{8 * per}")
    chips = units // per
    if chips < MIN_CHIPS or chips & (chips - 1):
        good = per * max(MIN_CHIPS, 2 ** round(math.log2(chips)))
        raise ConfigError(f"--topology {name!r}: {chips} chips; compile-only slices have a power of two of at least "
                          f"{MIN_CHIPS} chips, e.g. {dash.group(1)}-{good}")
    if chip.torus_dims == 0:
        stand_in = CHIPS[GPU_STAND_IN]
        return Slice(text, chip, chips, f"{stand_in.tpu_platform_name}:{'x'.join(map(str, torus(chips, 3)))}",
                     stand_in)
    return Slice(text, chip, chips, f"{chip.tpu_platform_name}:{'x'.join(map(str, torus(chips, chip.torus_dims)))}")


def libtpu_available() -> bool:
    """True if libtpu (the optional `tpu` extra) is installed."""
    import importlib.util
    return importlib.util.find_spec("libtpu") is not None


def compile_only_devices(sl: Slice) -> list:
    """libtpu's compile-only devices for `sl` (no TPU needed); raises `ConfigError` if libtpu is missing or
    rejects the topology.

    Compile-only use needs no exclusive hold on TPU chips, so several compiles (or a TPU job) may run at once:
    libtpu's process lock is skipped (ALLOW_MULTIPLE_LIBTPU_LOAD) unless the environment sets it otherwise."""
    if not libtpu_available():
        raise ConfigError("libtpu is not installed: pip install -e '.[tpu]' (the optional tpu extra) to compile for "
                          "TPU slices")
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    import jax
    from jax.experimental import topologies
    try:
        desc = topologies.get_topology_desc(platform="tpu", topology_name=sl.topology)
    except jax.errors.JaxRuntimeError as err:  # libtpu reports a bad shape as INVALID_ARGUMENT; name the input
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"--topology {sl.name!r}: libtpu rejects topology {sl.topology!r} ({first}); use a "
                          "Cloud TPU slice such as v5p-64 or v6e-64") from None
    return list(desc.devices)
