"""The models `swapjax.sample` reads: a swap DiT and a Wan VAE, each a folder written by
`swapjax.convert.saved.save_converted`, in one of these layouts.

    RUN/                        --checkpoint RUN (a finished `python train.py --workdir RUN`)
      export/                   kind "swap": the run's inference export (EMA)
      vae/                      kind "vae": its VAE stage's VAE; a run without a VAE stage encoded with
                                `train.vae_init`, which the run config names and is read instead

    CKPT/                       --checkpoint CKPT (one folder holding both; `save_sampling_checkpoint` writes it)
      dit/                      kind "swap": swapjax_config.json + params/
      vae/                      kind "vae":  swapjax_config.json + params/

    DIT/ and VAE/               --checkpoint DIT --vae VAE (two converted folders, e.g. from python -m
                                swapjax.convert --swap-config ... and python -m swapjax.convert --src .../vae)

    PIPE/                       --pipeline PIPE (python -m swapjax.convert --pipeline ... --swap-config ...):
      manifest.json             the parts and where they came from (`swapjax.convert.pipeline`)
      dit/, vae/                as CKPT above
      text_encoder/, tokenizer/ umT5 and its tokenizer files (`swapjax.encoding.TextEncoder`)
      image_encoder/, image_processor/   CLIP vision and its preprocessing, for I2V-based models

The run config (`--config`) is the authority on what the model is: before any parameter is read, the shapes
its `DiTConfig` + `SwapConfig` and `VAEConfig` imply are compared with the checkpoint's, and one
`CheckpointError` lists every parameter that differs with both shapes; architecture fields that change the
numbers without changing a shape (eps, rope theta, ...) must agree too. What a run learned travels with its
checkpoint instead: the VAE's latent statistics (`vae_config.LEARNED_FIELDS`, measured by the VAE stage or
shipped with a Wan VAE) are read from the VAE folder, and the config's values, placeholders for a VAE trained
from scratch, are replaced (one line on stderr says so when they differ). Execution fields (dtypes, attention
backend, remat) come from the run config; parameters are cast to its `param_dtype`.
"""

from __future__ import annotations

import functools
import json
import pathlib
import sys
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from swapjax.atomic import atomic_write
from swapjax.config import Config
from swapjax.convert import saved
from swapjax.convert.checkpoint_io import check_shapes
from swapjax.errors import CheckpointError, foreign_message
from swapjax.convert.pipeline import read_manifest
from swapjax.models.dit_config import DiTConfig
from swapjax.models.execution import architecture
from swapjax.models.swap import abstract_swap
from swapjax.models.swap_config import SwapConfig
from swapjax.models.vae import abstract_vae
from swapjax.models.vae_config import LEARNED_FIELDS, VAEConfig, learned, with_learned

DIT_DIR, VAE_DIR = "dit", "vae"
RUN_DIT_DIR, RUN_VAE_DIR = "export", "vae"  # a training run's folders (swapjax/train/loop.py, vae_stage.py)


class SamplingModels(NamedTuple):
    """Graph definitions (static) and parameter states of the swap DiT and the VAE, with the run's configs."""

    config: Config
    dit_graph: nnx.GraphDef
    dit_state: nnx.State
    vae_graph: nnx.GraphDef
    vae_state: nnx.State


def resolve(checkpoint: str | pathlib.Path, vae: str | pathlib.Path | None = None, *,
            vae_init: str | pathlib.Path | None = None) -> tuple[pathlib.Path, pathlib.Path]:
    """(swap DiT folder, VAE folder) for the layouts of the module docstring; `vae_init` is the run config's
    `train.vae_init`, the VAE of a run folder that has no `vae/`."""
    root = pathlib.Path(checkpoint)
    if not root.exists():
        raise CheckpointError(f"checkpoint {str(root)!r} does not exist: pass a finished run's folder, the folder "
                              "holding dit/ and vae/, or a converted swap model with --vae")
    run_dit = root / RUN_DIT_DIR
    is_run = (run_dit / saved.CONFIG_FILE).is_file()
    if vae is not None:
        vae = pathlib.Path(vae)
        if not (vae / saved.CONFIG_FILE).is_file():
            raise CheckpointError(f"--vae {str(vae)!r} holds no {saved.CONFIG_FILE}: pass a VAE folder written by "
                                  "python -m swapjax.convert")
        return (run_dit if is_run else root), vae
    if is_run:
        return run_dit, _run_vae(root, vae_init)
    if (root / saved.CONFIG_FILE).is_file():
        hint = ""
        if root.name == RUN_DIT_DIR and (root.parent / RUN_VAE_DIR / saved.CONFIG_FILE).is_file():
            hint = f", or the run folder {str(root.parent)!r} alone"
        raise CheckpointError(f"checkpoint {str(root)!r} is a single converted model: pass its VAE with --vae"
                              f"{hint}, or a folder holding {DIT_DIR}/ and {VAE_DIR}/")
    if (root / "checkpoints").is_dir() or (root / "metrics.jsonl").is_file():
        raise CheckpointError(f"checkpoint {str(root)!r} is a training run without {RUN_DIT_DIR}/: it has not "
                              "finished; run the same train.py command again to finish it")
    if not ((root / DIT_DIR / saved.CONFIG_FILE).is_file() and (root / VAE_DIR / saved.CONFIG_FILE).is_file()):
        raise CheckpointError(f"checkpoint {str(root)!r} holds no {DIT_DIR}/ and {VAE_DIR}/ converted models: pass a "
                              "finished run's folder, a folder written by save_sampling_checkpoint, or a swap model "
                              "with --vae")
    return root / DIT_DIR, root / VAE_DIR


def _run_vae(run: pathlib.Path, vae_init: str | pathlib.Path | None) -> pathlib.Path:
    """The VAE a finished run encoded with: its VAE stage's `vae/`, else the config's `train.vae_init`."""
    for folder in (run / RUN_VAE_DIR, vae_init):
        if folder is not None and (pathlib.Path(folder) / saved.CONFIG_FILE).is_file():
            return pathlib.Path(folder)
    raise CheckpointError(f"run {str(run)!r} has no {RUN_VAE_DIR}/ (it had no VAE stage) and the config's "
                          f"train.vae_init ({vae_init!r}) is no converted VAE: pass the VAE it trained with as --vae")


def pipeline_parts(folder: str | pathlib.Path) -> dict[str, pathlib.Path]:
    """{part: folder} of a converted pipeline (`CheckpointError` naming the folder or a missing part)."""
    parts = read_manifest(folder)
    missing = [p for p in (DIT_DIR, VAE_DIR, "text_encoder", "tokenizer") if p not in parts]
    if missing:
        raise CheckpointError(f"--pipeline {str(folder)!r} has no {', '.join(f'{m}/' for m in missing)}: convert the "
                              "whole pipeline with python -m swapjax.convert --pipeline ... --swap-config ...")
    return parts


def _meta(folder: pathlib.Path, kind: str) -> Any:
    meta_file = folder / saved.CONFIG_FILE
    try:
        meta = json.loads(meta_file.read_text())
        found = meta["kind"]
        fields = meta["config"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{str(meta_file)!r} cannot be read ({err}): re-run python -m swapjax.convert") from None
    if found != kind:
        raise CheckpointError(f"checkpoint {str(folder)!r} holds a {found!r} model, but a {kind!r} model belongs "
                              "there: check which folder is which")
    try:
        if kind == "swap":  # {"dit": {DiTConfig fields}, "swap": {SwapConfig fields}} (see convert/saved.py)
            return _dataclass(DiTConfig, fields["dit"]), _dataclass(SwapConfig, fields["swap"])
        return _dataclass(VAEConfig, fields)
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"{str(meta_file)!r} holds an invalid {kind} config ({err}): re-run the conversion") \
            from None


def _dataclass(cls: type, fields: dict[str, Any]) -> Any:
    """A config dataclass from its JSON fields (lists back to tuples)."""
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def _shapes(state: nnx.State) -> dict[str, tuple[int, ...]]:
    return {"/".join(str(k) for k in path): tuple(var.shape) for path, var in nnx.to_flat_state(state)}


@functools.lru_cache(maxsize=16)
def _swap_shapes(dit: DiTConfig, swap: SwapConfig) -> dict[str, tuple[int, ...]]:
    return _shapes(abstract_swap(dit, swap)[1])


@functools.lru_cache(maxsize=16)
def _vae_shapes(vae: VAEConfig) -> dict[str, tuple[int, ...]]:
    return _shapes(abstract_vae(vae)[1])


def _agree(what: str, run: dict[str, Any], found: dict[str, Any]) -> None:
    diff = [f"{k}: config {run[k]!r}, checkpoint {found.get(k)!r}" for k in sorted(run) if run[k] != found.get(k)]
    if diff:
        raise CheckpointError(f"{what} was converted with other architecture values than the config "
                              f"({'; '.join(diff)}): use the config the checkpoint was made with")


def check_against_config(config: Config, dit: pathlib.Path, vae: pathlib.Path) -> None:
    """Raises `CheckpointError` unless the two folders hold the models `config` describes (shapes, then values)."""
    if config.swap is None:
        raise CheckpointError(f"config {config.name!r} has no swap section: sample with a swap config such as "
                              "configs/swap_tiny.py")
    dit_cfg, swap_cfg = _meta(dit, "swap")
    vae_cfg = _meta(vae, "vae")
    check_shapes(_swap_shapes(config.dit, config.swap), _swap_shapes(dit_cfg, swap_cfg),
                 what=f"swap model {str(dit)!r}")
    check_shapes(_vae_shapes(config.vae), _vae_shapes(vae_cfg), what=f"VAE {str(vae)!r}")
    _agree(f"swap model {str(dit)!r}", {**architecture(config.dit), **architecture(config.swap)},
           {**architecture(dit_cfg), **architecture(swap_cfg)})
    _agree(f"VAE {str(vae)!r}", _fixed(config.vae), _fixed(vae_cfg))


def _fixed(cfg: VAEConfig) -> dict[str, Any]:
    """The VAE's architecture fields a checkpoint must agree on (its learned fields are read from it)."""
    return {k: v for k, v in architecture(cfg).items() if k not in LEARNED_FIELDS}


def take_learned(config: Config, vae: pathlib.Path) -> Config:
    """`config` with the VAE checkpoint's learned fields (latent statistics) in place of the config's; one line on
    stderr when they differ."""
    trained = _meta(vae, "vae")
    if learned(trained) == learned(config.vae):
        return config
    print(f"VAE {str(vae)!r}: {' and '.join(LEARNED_FIELDS)} read from the checkpoint (what its training measured); "
          "the config's values only seed a VAE trained from scratch", file=sys.stderr, flush=True)
    return config.replace(vae=with_learned(config.vae, trained))


def _cast(state: nnx.State, like: nnx.State) -> nnx.State:
    """`state`'s values in the dtypes of `like` (an abstract state of the run config)."""
    dtypes = {path: var.dtype for path, var in nnx.to_flat_state(like)}
    for path, var in nnx.to_flat_state(state):
        if var.get_value().dtype != dtypes[path]:
            var.set_value(jnp.asarray(var.get_value(), dtypes[path]))
    return state


def load_models(config: Config, checkpoint: str | pathlib.Path, vae: str | pathlib.Path | None = None, *,
                mesh: jax.sharding.Mesh | None = None) -> SamplingModels:
    """Checks, then reads the swap DiT and the VAE for `config`; with `mesh`, parameters land sharded by the rules.
    The returned config carries the VAE checkpoint's latent statistics (`take_learned`)."""
    dit_dir, vae_dir = resolve(checkpoint, vae, vae_init=config.train.vae_init)
    check_against_config(config, dit_dir, vae_dir)
    config = take_learned(config, vae_dir)
    dit_graph, dit_like = abstract_swap(config.dit, config.swap)
    vae_graph, vae_like = abstract_vae(config.vae)
    dit_state = _restore(dit_dir, "swap model", mesh)
    vae_state = _restore(vae_dir, "VAE", mesh)
    return SamplingModels(config, dit_graph, _cast(dit_state, dit_like), vae_graph, _cast(vae_state, vae_like))


def _restore(folder: pathlib.Path, what: str, mesh: jax.sharding.Mesh | None) -> nnx.State:
    """The parameters in `folder`; a file orbax/tensorstore cannot read (truncated by a full disk or an interrupted
    copy, corrupt) is one `CheckpointError` naming the folder and the fix, not a traceback."""
    try:
        return saved.load_converted(folder, mesh=mesh)[2]
    except Exception as err:  # orbax/tensorstore raise their own types; only the ones errors.py recognises
        if foreign_message(err) is None:
            raise
        detail = " ".join(str(err).split())[:200]
        raise CheckpointError(f"{what} {str(folder)!r} could not be read, its parameters are truncated or corrupt "
                              f"({detail}): copy or convert the checkpoint again (python -m swapjax.convert), or "
                              "point at a complete one") from None


def save_sampling_checkpoint(out: str | pathlib.Path, config: Config, dit_state: nnx.State, vae_state: nnx.State,
                             *, source: str = "") -> pathlib.Path:
    """Writes `out/dit` and `out/vae` (the one-folder layout) atomically; `out` must not exist."""
    out = pathlib.Path(out).absolute()
    if out.exists():
        raise CheckpointError(f"checkpoint output {str(out)!r} already exists: choose a new path or delete it")
    with atomic_write(out) as tmp:
        tmp.mkdir()
        saved.save_converted(tmp / DIT_DIR, "swap", (config.dit, config.swap), dit_state, source=source)
        saved.save_converted(tmp / VAE_DIR, "vae", config.vae, vae_state, source=source)
    return out
