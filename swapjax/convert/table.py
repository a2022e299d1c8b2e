"""Streaming conversion driven by one table: checkpoint tensor name -> swapjax parameter path, layer slot, layout.

The encoders' converters (`convert/umt5.py`, `convert/clip_vision.py`) describe their models as a list of
`Entry`s and hand it to `fill_state`, which checks every shape against the abstract state before reading any
data (one `CheckpointError` listing every missing, unexpected or mis-shaped tensor), then reads one tensor at a
time into preallocated numpy arrays (per-layer tensors into their slot of the stacked `layers` axis), so peak
memory is one copy of the model plus one tensor.

Layouts (`Entry.kind`):
- `linear`: torch `[out, in]` -> kernel `[in, out]`;
- `patch`:  torch Conv2d `[D, C, kh, kw]` -> `[kh, kw, C, D]`;
- `vector`: unchanged (biases, norm weights, embedding tables).
"""

from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence

import numpy as np
from flax import nnx

from swapjax.convert.checkpoint_io import TensorReader, check_shapes, is_finite, warn_nonfinite
from swapjax.errors import CheckpointError
from swapjax.models.layers import DTYPES


class Entry(NamedTuple):
    """One checkpoint tensor: its name, where it goes, its layer slot (None = not stacked) and layout change."""

    name: str
    path: tuple[str, ...]
    layer: int | None
    kind: str  # linear | patch | vector


def to_swapjax(tensor: np.ndarray, kind: str) -> np.ndarray:
    """Checkpoint tensor -> swapjax layout (see the module docstring)."""
    if kind == "linear":
        return tensor.T
    if kind == "patch":
        return tensor.transpose(2, 3, 1, 0)
    return tensor


def checkpoint_shape(shape: Sequence[int], kind: str) -> tuple[int, ...]:
    """The checkpoint-side shape of a swapjax parameter slice of `shape` (inverse of `to_swapjax`)."""
    if kind == "linear":
        return (shape[1], shape[0])
    if kind == "patch":
        return (shape[3], shape[2], shape[0], shape[1])
    return tuple(shape)


def fill_state(reader: TensorReader, table: list[Entry], state: nnx.State, *, what: str, param_dtype: str,
               aliases: Mapping[str, str] | None = None, ignored: Sequence[str] = ()) -> nnx.State:
    """Reads the tensors `table` names from `reader` into the abstract `state`; returns it with numpy leaves.

    `aliases`: {table name: another name the same tensor may be saved under} (tied weights saved once under
    either name; when both are present the table name is read). `ignored`: names that may be present and are
    not read (weights the swapjax model does not use, e.g. a projection head)."""
    aliases = dict(aliases or {})
    targets = dict(nnx.to_flat_state(state))
    if set(targets) != {e.path for e in table}:  # the table and the model must describe the same parameters
        raise CheckpointError(f"internal: converter table and model disagree on "
                              f"{sorted(set(targets) ^ {e.path for e in table})}")
    shapes = reader.shapes()
    source = {}  # table name -> checkpoint key holding it
    for e in table:
        alias = aliases.get(e.name)
        source[e.name] = e.name if e.name in shapes or alias not in shapes else alias
    used = set(source.values())
    spare = set(aliases.values()) | set(aliases) | set(ignored)
    found = {name: shapes[key] for name, key in source.items() if key in shapes}
    found.update({key: shape for key, shape in shapes.items() if key not in used and key not in spare})
    expected = {}
    for e in table:
        shape = targets[e.path].shape[1:] if e.layer is not None else targets[e.path].shape
        expected[e.name] = checkpoint_shape(shape, e.kind)
    check_shapes(expected, found, what=what)

    dtype = np.dtype(DTYPES[param_dtype])
    buffers = {path: np.empty(var.shape, dtype) for path, var in targets.items()}
    nonfinite = []
    for e in table:  # one tensor in memory at a time
        tensor = np.asarray(reader.get(source[e.name]))
        if not is_finite(tensor):
            nonfinite.append(source[e.name])
        value = to_swapjax(tensor, e.kind).astype(dtype)
        if e.layer is None:
            buffers[e.path][...] = value
        else:
            buffers[e.path][e.layer] = value
    warn_nonfinite(nonfinite, what)
    for path, var in targets.items():
        var.set_value(buffers[path])
    return state
