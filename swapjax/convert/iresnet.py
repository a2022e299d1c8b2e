"""insightface IResNet checkpoints (the public PyTorch `iresnet*` state-dict layout) -> `(IResNetConfig, nnx.State)`.

The torch names (`conv1.weight`, `bn1.running_mean`, `prelu.weight`, `layer3.7.conv2.weight`,
`layer1.0.downsample.0.weight`, `fc.weight`, `features.running_var`, ...) map onto `models/iresnet.IResNet`
through one table (`param_table`). Layout changes:

- `conv`:   torch Conv2d `[O, I, kh, kw]` -> `[kh, kw, I, O]`;
- `fc`:     torch `[E, C·s·s]` whose columns run (c, h, w) -> `[s·s·C, E]` with rows in (h, w, c) order,
            because our feature map is channels-last when flattened;
- `vector`: unchanged (BatchNorm weight/bias/running stats, PReLU slopes).

Block `j` of stage `k` goes to `stages[k-1].first` when `j == 0`, else to slot `j − 1` of the stacked
`stages[k-1].rest`. `num_batches_tracked` counters are ignored; a `module.` prefix (DistributedDataParallel) is
stripped. With no config given, the depth, width, feature size and input size are read off the tensor shapes
(public checkpoints ship without a config file).
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import re
from typing import NamedTuple

import numpy as np
from flax import nnx

from swapjax.convert.checkpoint_io import TensorReader, check_shapes
from swapjax.errors import CheckpointError
from swapjax.models.iresnet import IResNetConfig, abstract_iresnet
from swapjax.models.layers import DTYPES

IGNORED_SUFFIX = "num_batches_tracked"
STRIPPED_PREFIX = "module."
_BN = (("weight", "scale"), ("bias", "bias"), ("running_mean", "mean"), ("running_var", "var"))


class Entry(NamedTuple):
    """One checkpoint tensor: its torch name, swapjax path, slot in a stacked module, layout change."""

    torch: str
    path: tuple
    slot: int | None
    kind: str  # conv | fc | vector


def _bn(name: str, path: tuple, slot: int | None = None) -> list[Entry]:
    return [Entry(f"{name}.{t}", (*path, ours), slot, "vector") for t, ours in _BN]


def _block(name: str, path: tuple, slot: int | None, downsample: bool) -> list[Entry]:
    t = _bn(f"{name}.bn1", (*path, "bn1"), slot)
    t.append(Entry(f"{name}.conv1.weight", (*path, "conv1", "kernel"), slot, "conv"))
    t += _bn(f"{name}.bn2", (*path, "bn2"), slot)
    t.append(Entry(f"{name}.prelu.weight", (*path, "prelu", "weight"), slot, "vector"))
    t.append(Entry(f"{name}.conv2.weight", (*path, "conv2", "kernel"), slot, "conv"))
    t += _bn(f"{name}.bn3", (*path, "bn3"), slot)
    if downsample:
        t.append(Entry(f"{name}.downsample.0.weight", (*path, "down_conv", "kernel"), slot, "conv"))
        t += _bn(f"{name}.downsample.1", (*path, "down_bn"), slot)
    return t


def param_table(cfg: IResNetConfig) -> list[Entry]:
    """Every variable of `IResNet(cfg)` with its insightface state-dict name."""
    t = [Entry("conv1.weight", ("conv1", "kernel"), None, "conv")]
    t += _bn("bn1", ("bn1",))
    t.append(Entry("prelu.weight", ("prelu", "weight"), None, "vector"))
    for k, depth in enumerate(cfg.layers):
        t += _block(f"layer{k + 1}.0", ("stages", k, "first"), None, downsample=True)
        for j in range(1, depth):
            t += _block(f"layer{k + 1}.{j}", ("stages", k, "rest"), j - 1, downsample=False)
    t += _bn("bn2", ("bn2",))
    t += [Entry("fc.weight", ("fc", "kernel"), None, "fc"), Entry("fc.bias", ("fc", "bias"), None, "vector")]
    t += _bn("features", ("features",))
    return t


def to_swapjax(tensor: np.ndarray, kind: str, cfg: IResNetConfig) -> np.ndarray:
    """Checkpoint tensor -> swapjax layout (see module docstring)."""
    if kind == "conv":
        return tensor.transpose(2, 3, 1, 0)
    if kind == "fc":
        s, c = cfg.head_cells, cfg.stage_widths[-1]
        return tensor.reshape(tensor.shape[0], c, s, s).transpose(2, 3, 1, 0).reshape(s * s * c, -1)
    return tensor


def checkpoint_shape(shape: tuple[int, ...], kind: str) -> tuple[int, ...]:
    """The checkpoint-side shape of a swapjax variable of `shape` (inverse of `to_swapjax`)."""
    if kind == "conv":
        return (shape[3], shape[2], shape[0], shape[1])
    if kind == "fc":
        return (shape[1], shape[0])
    return tuple(shape)


def iresnet_config_from_shapes(shapes: dict[str, tuple[int, ...]], **overrides) -> IResNetConfig:
    """Reads layers, width, num_features and input_size off an insightface state dict's tensor shapes."""
    for need in ("conv1.weight", "fc.weight"):
        if need not in shapes:
            raise CheckpointError(f"checkpoint has no {need!r}: not an insightface IResNet state dict (its keys "
                                  f"start {sorted(shapes)[:5]}); pass config= if the names differ")
    width = shapes["conv1.weight"][0]
    layers = []
    for k in range(1, 5):
        blocks = {int(m.group(1)) for name in shapes if (m := re.match(rf"layer{k}\.(\d+)\.", name))}
        if not blocks:
            raise CheckpointError(f"checkpoint has no layer{k}.* tensors: not an insightface IResNet state dict")
        layers.append(max(blocks) + 1)
    num_features, fc_in = shapes["fc.weight"]
    cells = math.isqrt(fc_in // (8 * width)) if fc_in % (8 * width) == 0 else 0
    if cells == 0 or cells * cells * 8 * width != fc_in:
        raise CheckpointError(f"fc.weight has {fc_in} inputs, not (input_size/16)² · {8 * width} for any input "
                              "size: not an insightface IResNet, or pass config= explicitly")
    fields = dict(layers=tuple(layers), width=width, num_features=num_features, input_size=16 * cells)
    return IResNetConfig(**{**fields, **overrides})


def convert_iresnet(src: str | pathlib.Path, *, config: IResNetConfig | None = None, dtype: str | None = None,
                    allow_pickle: bool = False) -> tuple[IResNetConfig, nnx.State]:
    """Reads an insightface IResNet state dict (`.safetensors`, or a `.pth` with `allow_pickle=True`).

    `config`: the architecture (default: read off the tensor shapes). `dtype`: parameter dtype of the result
    (default: the config's). Returns `(config, state)` for `nnx.merge(abstract_iresnet(config)[0], state)`;
    the state's leaves are numpy arrays.
    """
    reader = TensorReader(src, allow_pickle=allow_pickle)
    keys = [k for k in reader.keys() if not k.endswith(IGNORED_SUFFIX)]
    strip = bool(keys) and all(k.startswith(STRIPPED_PREFIX) for k in keys)
    raw = {k[len(STRIPPED_PREFIX):] if strip else k: k for k in keys}
    all_shapes = reader.shapes()
    found = {name: all_shapes[key] for name, key in raw.items()}
    if config is None:
        config = iresnet_config_from_shapes(found)
    if dtype is not None:
        config = dataclasses.replace(config, param_dtype=dtype)
    _, state = abstract_iresnet(config)
    table = param_table(config)
    targets = dict(nnx.to_flat_state(state))
    if set(targets) != {e.path for e in table}:  # the table and the model must describe the same variables
        raise CheckpointError(f"internal: converter table and IResNet disagree on "
                              f"{set(targets) ^ {e.path for e in table}}")
    expected = {}
    for e in table:
        shape = targets[e.path].shape[1:] if e.slot is not None else targets[e.path].shape
        expected[e.torch] = checkpoint_shape(tuple(shape), e.kind)
    check_shapes(expected, found, what=f"IResNet checkpoint {str(src)!r}")

    np_dtype = np.dtype(DTYPES[config.param_dtype])
    buffers = {path: np.empty(var.shape, np_dtype) for path, var in targets.items()}
    for e in table:  # one tensor in memory at a time
        value = to_swapjax(np.asarray(reader.get(raw[e.torch]), np.float32), e.kind, config).astype(np_dtype)
        if e.slot is None:
            buffers[e.path][...] = value
        else:
            buffers[e.path][e.slot] = value
    for path, var in targets.items():
        var.set_value(buffers[path])
    return config, state
