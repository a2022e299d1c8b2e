"""Streaming access to PyTorch-side checkpoints and shape checking against a swapjax parameter tree.

A `TensorReader` opens a diffusers model directory (`config.json` + one or several `*.safetensors`, with or
without `*.safetensors.index.json`) or a single file, lists tensor names and shapes without reading data, and
reads one tensor at a time as numpy (bf16 via `ml_dtypes`), so a converter never holds a second full copy of
the model. Pickle files (`.pth`, `.pt`, `.bin`) are read only when the caller passes `allow_pickle=True`;
a state dict nested under `state_dict` / `model` / `module` (training checkpoints) is unwrapped.

Every problem with the files is a `CheckpointError` with one line naming the file and the fix. Things that
convert but deserve a look (NaN/Inf weights, replaced statistics) are `ConversionWarning`s.
"""

from __future__ import annotations

import json
import pathlib
import re
import warnings
from typing import Any, Callable, Iterator, Mapping, TypeVar

import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy so safetensors can hand bf16 arrays over)
import numpy as np
from safetensors import safe_open

from swapjax.errors import CheckpointError, ConfigError  # noqa: F401  (CheckpointError: raised here, re-exported)

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
# Keys under which published training checkpoints keep the model's state dict, tried in this order.
NESTED_STATE_KEYS = ("state_dict", "model_state_dict", "model", "module")
PIPELINE_PARTS = ("transformer", "vae")
T = TypeVar("T")


class ConversionWarning(UserWarning):
    """The checkpoint converted, but something in it deserves a look (the CLI prints it as one line)."""


class TensorReader:
    """Lazy name -> numpy array access over the tensor files of one checkpoint."""

    def __init__(self, path: str | pathlib.Path, *, allow_pickle: bool = False):
        path = pathlib.Path(path)
        if not path.exists():
            raise CheckpointError(f"checkpoint {str(path)!r} does not exist: pass a diffusers model directory "
                                  "or a .safetensors file")
        files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
        if path.is_dir() and not files:
            files = [f for s in PICKLE_SUFFIXES for f in sorted(path.glob(f"*{s}"))]
        if not files:
            _raise_no_tensor_files(path)
        if path.is_dir():
            _check_shard_index(path)
        self._where: dict[str, pathlib.Path] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._pickled: dict[pathlib.Path, Mapping[str, np.ndarray]] = {}
        for f in files:
            if f.suffix in PICKLE_SUFFIXES:
                if not allow_pickle:
                    raise CheckpointError(f"checkpoint {str(f)!r} is a pickle file, which can run code when "
                                          "loaded: pass allow_pickle=True (CLI: --allow-pickle) if you trust it")
                self._pickled[f] = load_pickled_state_dict(f)
                for name, t in self._pickled[f].items():
                    self._where[name], self._shapes[name] = f, tuple(t.shape)
                continue
            try:
                with safe_open(f, framework="numpy") as handle:
                    for name in handle.keys():
                        self._where[name] = f
                        self._shapes[name] = tuple(handle.get_slice(name).get_shape())
            except Exception as err:  # safetensors raises its own error types; re-raise with the file named
                raise CheckpointError(f"checkpoint file {str(f)!r} is not a readable safetensors file ({err}): "
                                      "re-download or re-export it") from err

    def keys(self) -> list[str]:
        return list(self._where)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(self._shapes)

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def get(self, name: str) -> np.ndarray:
        """Reads one tensor (its stored dtype; bf16 arrives as `ml_dtypes.bfloat16`)."""
        f = self._where[name]
        if f in self._pickled:
            return np.asarray(self._pickled[f][name])
        with safe_open(f, framework="numpy") as handle:
            return handle.get_tensor(name)

    def items(self) -> Iterator[tuple[str, np.ndarray]]:
        for name in self._where:
            yield name, self.get(name)


def _raise_no_tensor_files(path: pathlib.Path) -> None:
    parts = [str(path / p) for p in PIPELINE_PARTS if (path / p).is_dir()]
    if parts or (path / "model_index.json").is_file():
        choices = " or ".join(repr(p) for p in parts or [str(path / p) for p in PIPELINE_PARTS])
        raise CheckpointError(f"{str(path)!r} is a diffusers pipeline folder, not one model: pass {choices}")
    raise CheckpointError(f"checkpoint directory {str(path)!r} holds no .safetensors files (nor, with "
                          f"--allow-pickle, {'/'.join(PICKLE_SUFFIXES)} files): pass a diffusers model directory "
                          "or a checkpoint file")


def _check_shard_index(folder: pathlib.Path) -> None:
    """Every shard a `*.safetensors.index.json` names must be present (an interrupted download misses some)."""
    for index in sorted(folder.glob("*.safetensors.index.json")):
        weight_map = _read_json_object(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"shard index {str(index)!r} has no \"weight_map\" object: re-download it")
        missing = sorted({str(f) for f in weight_map.values()} - {f.name for f in folder.iterdir()})
        if missing:
            raise CheckpointError(f"shard index {str(index)!r} names {len(missing)} shard file(s) missing from "
                                  f"{str(folder)!r}: {', '.join(missing)}; download them (an interrupted download "
                                  "leaves shards out)")


def load_pickled_state_dict(path: pathlib.Path) -> dict[str, np.ndarray]:
    """A PyTorch pickle checkpoint -> {name: array}, loaded with `weights_only=True` (tensors and plain
    containers only). A state dict nested under `NESTED_STATE_KEYS` is unwrapped, and a `module.` prefix
    (DataParallel) on every name is dropped."""
    import torch  # only for explicitly allowed pickle checkpoints

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for bad bytes; each becomes one line naming the file
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if "Weights only load failed" in str(err):
            what = f"a pickled {found.group(1)} object" if found else "pickled Python objects"
            raise CheckpointError(f"checkpoint {str(path)!r} holds {what}, not a state dict of tensors (a whole "
                                  "torch.nn.Module?): re-save it with torch.save(model.state_dict(), path) or "
                                  "as .safetensors") from None
        first = (str(err).splitlines() or [""])[0].split(". ")[0][:160]  # torch's first sentence names the fault
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read as a PyTorch file ({type(err).__name__}"
                              f"{': ' + first if first else ''}): it looks truncated or corrupt; re-download it"
                              ) from None
    trail = []
    while isinstance(state, dict) and not any(isinstance(v, torch.Tensor) for v in state.values()):
        key = next((k for k in NESTED_STATE_KEYS if isinstance(state.get(k), dict)), None)
        if key is None:
            break
        state, trail = state[key], [*trail, key]
    where = "".join(f"[{k!r}]" for k in trail)
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        keys = list(state)[:5] if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"checkpoint {str(path)!r}{where} holds no tensors (found {keys}): pass a state "
                              f"dict, or one nested under one of {NESTED_STATE_KEYS}")
    others = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if others:
        raise CheckpointError(f"checkpoint {str(path)!r}{where} mixes tensors with other entries ({others[:3]}): "
                              "pass a plain state dict (name -> tensor)")
    if all(str(k).startswith("module.") for k in state):
        state = {str(k)[len("module."):]: v for k, v in state.items()}
    out = {}
    for name, t in state.items():
        t = t.detach()
        out[str(name)] = t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()
    return out


def config_json_path(path: str | pathlib.Path) -> pathlib.Path:
    """Where the config.json of a model directory (or of a checkpoint file's folder) lives."""
    path = pathlib.Path(path)
    return (path if path.is_dir() else path.parent) / "config.json"


def read_json_config(path: str | pathlib.Path) -> dict:
    """Reads `config.json` from a model directory (or next to a file); it must be a JSON object."""
    cfg = config_json_path(path)
    if not cfg.is_file():
        raise CheckpointError(f"no config.json next to {str(path)!r}: pass the diffusers model directory, "
                              "or give the config explicitly")
    return _read_json_object(cfg)


def config_from_json(path: str | pathlib.Path, translate: Callable[..., T], **overrides: Any) -> T:
    """`translate(read_json_config(path), **overrides)`, with any problem reported as one `CheckpointError`
    that names the config.json file."""
    d = read_json_config(path)
    try:
        return translate(d, **overrides)
    except (CheckpointError, ConfigError) as err:
        raise CheckpointError(f"{str(config_json_path(path))!r}: {err}") from None


def _read_json_object(path: pathlib.Path) -> dict:
    try:
        d = json.loads(path.read_text())
    except UnicodeDecodeError:
        raise CheckpointError(f"{str(path)!r} is not a text file: use the JSON file that came with the checkpoint "
                              "(re-download it)") from None
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{str(path)!r} is not valid JSON ({err.msg} at line {err.lineno}, column "
                              f"{err.colno}): fix it or use the file that came with the checkpoint") from None
    if not isinstance(d, dict):
        raise CheckpointError(f"{str(path)!r} holds a JSON {type(d).__name__}, not an object of named settings: "
                              "use the file that came with the checkpoint")
    return d


_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {  # kind -> (check, what a value of it looks like)
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "number": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "a string"),
}
_REQUIRED = object()


def json_value(d: Mapping[str, Any], key: str, kind: str, default: Any = _REQUIRED) -> Any:
    """`d[key]` checked to be of `kind`: "int", "number", "bool", "str", or a list of one ("[int]", ...).

    A missing key (or a null) gives `default`; without a default it is an error. Raises `CheckpointError`
    naming the key, the value and what it should be."""
    is_list = kind.startswith("[")
    check, desc = _KINDS[kind.strip("[]")]
    if is_list:
        desc = f"a list of values that are each {desc}"
    value = d.get(key)
    if value is None:
        if default is _REQUIRED:
            raise CheckpointError(f"required key {key!r} ({desc}) is {'null' if key in d else 'missing'}: use "
                                  "the config.json that came with the checkpoint")
        return default
    ok = isinstance(value, (list, tuple)) and all(check(v) for v in value) if is_list else check(value)
    if not ok:
        raise CheckpointError(f"key {key!r} is {json.dumps(value)}, not {desc}: fix that value or use the "
                              "config.json that came with the checkpoint")
    return value


def is_finite(array: np.ndarray) -> bool:
    """True unless a floating-point `array` holds NaN or Inf."""
    return not np.issubdtype(array.dtype, np.inexact) or bool(np.isfinite(array).all())


def warn_nonfinite(names: list[str], what: str) -> None:
    """One `ConversionWarning` naming the tensors that hold NaN or Inf (nothing if `names` is empty)."""
    if names:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        warnings.warn(ConversionWarning(f"{what}: {len(names)} tensor(s) hold NaN or Inf values and were converted "
                                        f"as they are: {shown}; check the checkpoint (re-download it if it should "
                                        "be finite)"), stacklevel=2)


def check_shapes(expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]],
                 *, what: str) -> None:
    """Raises one `CheckpointError` listing every missing, unexpected and mis-shaped parameter path."""
    problems = []
    for name in sorted(set(expected) | set(found)):
        if name not in found:
            problems.append(f"  {name}: missing from checkpoint (expected {tuple(expected[name])})")
        elif name not in expected:
            problems.append(f"  {name}: unexpected in checkpoint (shape {tuple(found[name])})")
        elif tuple(expected[name]) != tuple(found[name]):
            problems.append(f"  {name}: config expects {tuple(expected[name])}, checkpoint has {tuple(found[name])}")
    if problems:
        raise CheckpointError(f"{what} does not match its config ({len(problems)} parameters differ; check that "
                              "the config matches the checkpoint):\n" + "\n".join(problems))
