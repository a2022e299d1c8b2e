"""On-disk format of converted parameters, written by `python -m swapjax.convert` and read by `load_converted`.

    OUT/
      swapjax_config.json   {"kind": "dit" | "vae" | "swap" | "umt5" | "clip_vision", "config": {the model config's
                            fields (DiTConfig, VAEConfig, UMT5Config, ClipVisionConfig), or for a swap model
                            {"dit": {DiTConfig fields}, "swap": {SwapConfig fields}}}, "source": ...}
      params/               Orbax StandardSave of the parameter state as a pure nested dict

The directory is assembled under a temporary name next to OUT and renamed when complete (`swapjax.atomic`), so
an interrupted conversion, a full disk or SIGTERM never leaves something behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import pathlib
import sys
from typing import Any, Iterator

import jax
import orbax.checkpoint as ocp
from flax import nnx

from swapjax.atomic import atomic_write, check_output
from swapjax.convert.checkpoint_io import check_shapes
from swapjax.errors import CheckpointError
from swapjax.models.clip_vision_config import ClipVisionConfig
from swapjax.models.dit_config import DiTConfig
from swapjax.models.swap_config import Conditions, SwapConfig
from swapjax.models.umt5_config import UMT5Config
from swapjax.models.vae_config import VAEConfig
from swapjax.parallel import state_shardings

CONFIG_FILE = "swapjax_config.json"
PARAMS_DIR = "params"
KINDS = ("dit", "vae", "swap", "umt5", "clip_vision")
# a swap model is (its DiT, its swap options)
ModelConfig = DiTConfig | VAEConfig | UMT5Config | ClipVisionConfig | tuple[DiTConfig, SwapConfig]
_CLASSES = {"dit": DiTConfig, "vae": VAEConfig, "umt5": UMT5Config, "clip_vision": ClipVisionConfig}


def _fields_to_json(cfg: Any) -> dict[str, Any]:
    def plain(v: Any) -> Any:
        if isinstance(v, Conditions):  # SwapConfig.conditions: {name: {argument: value}}
            return {n: {k: plain(x) for k, x in kw.items()} for n, kw in v.as_dict().items()}
        return list(v) if isinstance(v, tuple) else v

    return {f.name: plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def _fields_from_json(cls: type, fields: dict[str, Any]) -> Any:
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def _config_to_json(kind: str, cfg: ModelConfig) -> dict[str, Any]:
    if kind == "swap":
        return {"dit": _fields_to_json(cfg[0]), "swap": _fields_to_json(cfg[1])}
    return _fields_to_json(cfg)


def _config_from_json(kind: str, fields: dict[str, Any]) -> ModelConfig:
    if kind == "swap":
        return _fields_from_json(DiTConfig, fields["dit"]), _fields_from_json(SwapConfig, fields["swap"])
    return _fields_from_json(_CLASSES[kind], fields)


def abstract_state(kind: str, cfg: ModelConfig) -> nnx.State:
    """State of `jax.ShapeDtypeStruct`s (with logical-axis metadata) of the model `kind` built from `cfg`."""
    if kind == "dit":
        from swapjax.models.dit import abstract_dit

        return abstract_dit(cfg)[1]
    if kind == "swap":
        from swapjax.models.swap import abstract_swap

        return abstract_swap(*cfg)[1]
    if kind == "umt5":
        from swapjax.models.umt5 import abstract_umt5

        return abstract_umt5(cfg)[1]
    if kind == "clip_vision":
        from swapjax.models.clip_vision import abstract_clip_vision

        return abstract_clip_vision(cfg)[1]
    from swapjax.models.vae import abstract_vae  # imported lazily: the DiT path must not need the VAE module

    return abstract_vae(cfg)[1]


def save_converted(out: str | pathlib.Path, kind: str, cfg: ModelConfig, state: nnx.State, *,
                   source: str = "") -> pathlib.Path:
    """Writes `state` and `cfg` to the directory `out` (which must not exist yet); returns its path.

    Written through `swapjax.atomic.atomic_write`: `out` appears only when complete, with the permissions
    the umask asks for. Raises `OutputError` for an unusable `out` or a full disk (nothing is left behind).
    """
    out = check_output(out)
    # After a failed write orbax's background writes may still land in the temporary folder for a moment.
    with orbax_failures_quiet(), atomic_write(out, replace=False, make_parents=True, settle_s=ORBAX_SETTLE_S) as tmp:
        tmp.mkdir()
        with ocp.Checkpointer(ocp.StandardCheckpointHandler()) as ckptr:
            ckptr.save(tmp / PARAMS_DIR, args=ocp.args.StandardSave(nnx.to_pure_dict(state)))
        meta = {"kind": kind, "config": _config_to_json(kind, cfg), "source": source}
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return out


ORBAX_SETTLE_S = 1.0
_ORBAX_THREAD_FAILURE = "_SignalingThread.run() raised an exception"


class _DropOrbaxThreadFailures(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _ORBAX_THREAD_FAILURE not in str(record.msg)


@contextlib.contextmanager
def orbax_failures_quiet() -> Iterator[None]:
    """While orbax saves, its failures are reported once: as the exception `save` raises (which the caller turns
    into one line). Dropped meanwhile: orbax's own ERROR logs with tracebacks from its background threads (the
    same error again) and the tracebacks tensorstore prints when its writes complete into orbax's already
    closed event loop (`RuntimeError: Event loop is closed`, reported as unraisable). Everything else is kept."""
    logger, drop = logging.getLogger("absl"), _DropOrbaxThreadFailures()
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        err = unraisable.exc_value
        if not (isinstance(err, RuntimeError) and str(err) == "Event loop is closed"):
            previous(unraisable)

    logger.addFilter(drop)
    sys.unraisablehook = hook
    try:
        yield
    finally:
        logger.removeFilter(drop)
        sys.unraisablehook = previous


def load_converted(path: str | pathlib.Path, *, mesh: jax.sharding.Mesh | None = None
                   ) -> tuple[str, ModelConfig, nnx.State]:
    """Reads a directory written by `save_converted` -> (kind, config, state with logical-axis metadata);
    the config of a "swap" model is the pair `(DiTConfig, SwapConfig)`.

    Shapes are checked per parameter (from Orbax metadata, before any data is read) against the model the
    config describes: one `CheckpointError` lists every mismatch. Arrays are then restored straight into
    their final dtype and, with `mesh`, their final shardings (`swapjax.parallel.state_shardings`), so no
    second host copy is made.
    """
    path = pathlib.Path(path).absolute()
    meta_file = path / CONFIG_FILE
    if not meta_file.is_file():
        raise CheckpointError(f"{str(path)!r} holds no {CONFIG_FILE}: pass a directory written by "
                              "python -m swapjax.convert")
    meta = json.loads(meta_file.read_text())
    kind = meta.get("kind")
    if kind not in KINDS:
        raise CheckpointError(f"{str(meta_file)!r} has kind {kind!r}: expected one of {KINDS}")
    cfg = _config_from_json(kind, meta["config"])
    state = abstract_state(kind, cfg)
    # Orbax hands dict keys back as strings (list indices included): match paths as "a/0/b" strings.
    targets = {_name(p): var for p, var in nnx.to_flat_state(state)}
    shardings = {}
    if mesh is not None:
        shardings = {_name(p): s for p, s in nnx.to_flat_state(state_shardings(state, mesh))}
    with ocp.Checkpointer(ocp.StandardCheckpointHandler()) as ckptr:
        saved = ckptr.metadata(path / PARAMS_DIR).item_metadata
        found = {_name(p): tuple(m.shape) for p, m in _flatten(saved)}
        check_shapes({name: tuple(var.shape) for name, var in targets.items()}, found,
                     what=f"converted params {str(path)!r}")
        target = jax.tree_util.tree_map_with_path(
            lambda p, m: jax.ShapeDtypeStruct(m.shape, targets[_name(p)].get_value().dtype,
                                              sharding=_sharding_value(shardings.get(_name(p)))),
            _as_dict(saved))
        restored = ckptr.restore(path / PARAMS_DIR, args=ocp.args.StandardRestore(target))
    for p, value in _flatten(restored):
        targets[_name(p)].set_value(value)
    return kind, cfg, state


def _name(path: tuple) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def _sharding_value(var: Any) -> Any:
    return None if var is None else var.get_value()


def _as_dict(tree: Any) -> Any:
    """Orbax tree metadata -> plain nested dict with the same keys and leaves."""
    return {k: _as_dict(v) for k, v in tree.items()} if hasattr(tree, "items") else tree


def _flatten(tree: Any, prefix: tuple = ()) -> list[tuple[tuple, Any]]:
    """Nested mapping -> [(key path, leaf)]."""
    out = []
    for k, v in tree.items():
        if hasattr(v, "items"):
            out += _flatten(v, (*prefix, k))
        else:
            out.append(((*prefix, k), v))
    return out
