"""Streaming access to PyTorch-side checkpoints and shape checking against a swapjax parameter tree.

A `TensorReader` opens a diffusers model directory (`config.json` + one or several `*.safetensors`, with or
without `*.safetensors.index.json`) or a single file, lists tensor names and shapes without reading data, and
reads one tensor at a time as numpy (bf16 via `ml_dtypes`), so a converter never holds a second full copy of
the model. Pickle files (`.pth`, `.pt`, `.bin`) are read only when the caller passes `allow_pickle=True`.
"""

from __future__ import annotations

import json
import pathlib
from typing import Iterator, Mapping

import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy so safetensors can hand bf16 arrays over)
import numpy as np
from safetensors import safe_open

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not match the config; the message says which and how to fix it."""


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
            raise CheckpointError(f"checkpoint directory {str(path)!r} holds no .safetensors files")
        self._where: dict[str, pathlib.Path] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._pickled: dict[pathlib.Path, Mapping[str, np.ndarray]] = {}
        for f in files:
            if f.suffix in PICKLE_SUFFIXES:
                if not allow_pickle:
                    raise CheckpointError(f"checkpoint {str(f)!r} is a pickle file, which can run code when "
                                          "loaded: pass allow_pickle=True (CLI: --allow-pickle) if you trust it")
                self._pickled[f] = _load_pickle(f)
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


def _load_pickle(path: pathlib.Path) -> dict[str, np.ndarray]:
    import torch  # only for explicitly allowed pickle checkpoints

    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    out = {}
    for name, t in state.items():
        t = t.detach()
        out[name] = t.float().numpy() if t.dtype == torch.bfloat16 else t.numpy()
    return out


def read_json_config(path: str | pathlib.Path) -> dict:
    """Reads `config.json` from a model directory (or next to a file)."""
    path = pathlib.Path(path)
    cfg = (path if path.is_dir() else path.parent) / "config.json"
    if not cfg.is_file():
        raise CheckpointError(f"no config.json next to {str(path)!r}: pass the diffusers model directory, "
                              "or give the config explicitly")
    return json.loads(cfg.read_text())


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
