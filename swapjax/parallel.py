"""The device mesh, the logical axis vocabulary, the one rules table mapping it to mesh axes, and helpers.

Mesh axes: `data, fsdp, tensor, sequence` (`make_mesh(MeshConfig)`). Modules name *logical* axes only, for
parameters (via `sharded_init`) and for activations (via `constrain`); mesh axes appear nowhere but in
`LOGICAL_AXIS_RULES`, the single table both go through.

Logical axes of parameters:
  embed (model width), heads (attention inner dim N·H), mlp (FFN hidden), text_embed (text/image encoder
  widths), in_channels, conv_in / conv_out (VAE channels), kernel (conv taps), layers (scan axis); norms use
  the axis of the width they normalise.
Logical axes of activations:
  batch; length (video tokens; sharded over `sequence` for sequence parallelism); kv_length (the keys/values
  a query reads, gathered whole so sequence-sharded queries see every key); text_len (text tokens) and
  image_len (image-encoder tokens) of the cross-attention context; embed, heads (attention heads N), kv
  (per-head dim H), mlp (FFN hidden); frames, height, width (video grids).

A mesh axis is used at most once per array: when two dimensions map to the same mesh axis, the earlier
dimension keeps it. Activations `[B, L, D]` (batch, length, embed) therefore shard the batch over
`data × fsdp` and keep D whole, while parameter kernels (embed, heads) shard D over `fsdp` — FSDP.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import jax
from flax import nnx
from jax.sharding import AxisType, PartitionSpec

from swapjax.errors import require

MESH_AXES = ("data", "fsdp", "tensor", "sequence")

# logical axis -> mesh axis (or tuple of mesh axes, or None = replicated). Names are unique.
LOGICAL_AXIS_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", "sequence"),
    ("kv_length", None),
    ("frames", None),
    ("height", None),
    ("width", None),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("mlp", "tensor"),
    ("kv", None),
    ("text_len", None),
    ("image_len", None),
    ("text_embed", None),
    ("in_channels", None),
    ("conv_in", None),
    ("conv_out", None),
    ("kernel", None),
    ("layers", None),
)


# ------------------------------------------------------------------------------------------------- mesh
@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Sizes of the mesh axes `data, fsdp, tensor, sequence`; one of them may be -1 to take the devices left.

    The default puts every device on `data` (pure data parallelism), which is also right for one device.
    """

    data: int = -1
    fsdp: int = 1
    tensor: int = 1
    sequence: int = 1

    def __post_init__(self):
        for name, size in zip(MESH_AXES, self.sizes):
            require(isinstance(size, int) and not isinstance(size, bool) and (size >= 1 or size == -1),
                    f"MeshConfig.{name} = {size!r}: use a positive number of devices, or -1 to fill the devices "
                    "the other axes leave")
        require(self.sizes.count(-1) <= 1,
                f"MeshConfig {self._describe()}: at most one axis may be -1 (fill the rest); give the others sizes")

    @property
    def sizes(self) -> tuple[int, int, int, int]:
        return (self.data, self.fsdp, self.tensor, self.sequence)

    def _describe(self, sizes: Sequence[int] | None = None) -> str:
        return ", ".join(f"{n}={s}" for n, s in zip(MESH_AXES, self.sizes if sizes is None else sizes))

    def resolve(self, num_devices: int) -> tuple[int, int, int, int]:
        """The four axis sizes for `num_devices` devices, -1 filled in; raises `ConfigError` if they don't fit."""
        fixed = math.prod(s for s in self.sizes if s != -1)
        if -1 in self.sizes:
            require(num_devices % fixed == 0,
                    f"MeshConfig {self._describe()}: the fixed axes multiply to {fixed}, which does not divide the "
                    f"{num_devices} devices; choose sizes whose product divides {num_devices}")
            return tuple(num_devices // fixed if s == -1 else s for s in self.sizes)
        require(fixed == num_devices,
                f"MeshConfig {self._describe()}: the sizes multiply to {fixed}, but there are {num_devices} "
                f"devices; make their product {num_devices}, or set one axis to -1 to fill the rest")
        return self.sizes


def make_mesh(cfg: MeshConfig, devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
    """A `(data, fsdp, tensor, sequence)` mesh over `devices` (default: every device of every process).

    `jax.make_mesh` orders the devices by the physical topology (rings on TPU slices, processes contiguous), so
    the same call is right on one host and on many. An axis size that splits a torus side (fsdp = 32 on a v6e
    8x8 slice) falls back to splitting the physical axes, which keeps each mesh axis on contiguous chips. The axes are `AxisType.Auto`: the model pins layouts with
    `constrain` at block boundaries and leaves the rest to the compiler's propagation; Explicit axes would make
    the sharding part of every array's type and ask for `out_sharding=` on each matmul with a sharded
    contracting dimension (FSDP kernels), which the model code is not written for.
    """
    devices = jax.devices() if devices is None else list(devices)
    shape = cfg.resolve(len(devices))
    axis_types = (AxisType.Auto,) * len(MESH_AXES)
    try:
        return jax.make_mesh(shape, MESH_AXES, axis_types=axis_types, devices=devices)
    except NotImplementedError:  # an axis size that is not a product of whole torus sides (e.g. 32 on v6e 8x8)
        from jax.experimental import mesh_utils

        grid = mesh_utils.create_device_mesh(shape, devices, allow_split_physical_axes=True)
        return jax.sharding.Mesh(grid, MESH_AXES, axis_types=axis_types)


# ---------------------------------------------------------------------------------------- logical axes
def logical_spec(names: Sequence[str | None], rules: Sequence[tuple[str, Any]] = LOGICAL_AXIS_RULES,
                 mesh_axes: Sequence[str] = MESH_AXES) -> PartitionSpec:
    """Logical axis names (one per dimension, None = replicated) -> a mesh `PartitionSpec` via `rules`.

    Only mesh axes in `mesh_axes` are used, each at most once (the earlier dimension keeps it).
    """
    table = dict(rules)
    used: set[str] = set()
    spec = []
    for name in names:
        if name is None:
            spec.append(None)
            continue
        if name not in table:
            raise ValueError(f"logical axis {name!r} has no rule: add it to swapjax.parallel.LOGICAL_AXIS_RULES "
                             f"or use one of {sorted(table)}")
        target = table[name]
        targets = () if target is None else (target,) if isinstance(target, str) else tuple(target)
        free = tuple(a for a in targets if a in mesh_axes and a not in used)
        used.update(free)
        spec.append(free[0] if len(free) == 1 else (free or None))
    return PartitionSpec(*spec)


def constrain(x: jax.Array, names: Sequence[str | None],
              rules: Sequence[tuple[str, Any]] = LOGICAL_AXIS_RULES) -> jax.Array:
    """Pins the layout of activation `x` to its logical axes `names` (one per dimension) under the current mesh.

    A no-op unless a mesh is set (`with jax.set_mesh(mesh):` in an entry point), so single-device code is
    unchanged. Only the mesh's Auto axes are used: inside `shard_map` (Manual axes) nothing is constrained.
    """
    if len(names) != x.ndim:
        raise ValueError(f"constrain: {len(names)} logical axes {tuple(names)} for an array of shape {x.shape}: "
                         "give one name (or None) per dimension")
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    auto = [a for a, kind in zip(mesh.axis_names, mesh.axis_types) if kind == AxisType.Auto]
    if not auto:
        return x
    return jax.lax.with_sharding_constraint(x, logical_spec(names, rules, auto))


# ------------------------------------------------------------------------------------------ parameters
def sharded_init(initializer: Callable, axes: Sequence[str | None]) -> Callable:
    """Wraps an initializer so the created `nnx.Param` carries logical axis names (one per dimension).

    Variables are not placed at creation (`eager_sharding=False`): models are built abstractly with
    `nnx.eval_shape` and placed by `jax.jit(..., out_shardings=...)` (see `state_shardings`).
    """
    return nnx.with_partitioning(initializer, tuple(axes), eager_sharding=False)


def logical_specs(state: Any, rules: Sequence[tuple[str, Any]] = LOGICAL_AXIS_RULES) -> Any:
    """`nnx.State` of Variables -> same tree of mesh `PartitionSpec`s, via the rules table."""
    with nnx.logical_axis_rules(tuple(rules)):
        return nnx.get_partition_spec(state)


def state_shardings(state: Any, mesh: jax.sharding.Mesh,
                    rules: Sequence[tuple[str, Any]] = LOGICAL_AXIS_RULES) -> Any:
    """`nnx.State` -> same tree of `NamedSharding`s on `mesh`."""
    specs = logical_specs(state, rules)
    return jax.tree.map(lambda p: jax.sharding.NamedSharding(mesh, p), specs,
                        is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
