"""Checkpoints: one Orbax `CheckpointManager` owns the train state, the grain iterator state and the config.

    WORKDIR/checkpoints/<step>/
        state/      the `TrainState` (step, params, optimizer state, EMA, RNG) as a nested dict
        data_iter/  the grain iterator state, one file per process (`process_<i>-of-<n>.json`)
        config/     the run's config as JSON (for people and tools; the run itself reads its config file)

What a run starts from, in this order (decided once per stage by `trainer.initial_state`):
1. **resume**: WORKDIR has a complete checkpoint -> the latest one (state and data position); the run continues
   exactly where it stopped. Orbax writes each step under a temporary name and renames it when complete, so a
   crash mid-save (even `kill -9`) leaves the previous step as the latest one.
2. **init-from**: `train.init_from` names a training workdir (its latest checkpoint's *parameters* are loaded,
   e.g. stage 1's for stage 2; optimizer, EMA and data start fresh) or a converted model directory
   (`python -m swapjax.convert`, e.g. the Wan2.1 I2V-14B swap model).
3. **scratch**: a fresh state from the config's seed.

Saves are asynchronous (training continues while the arrays are written); `wait()` blocks until they are
done. Restoring reads into `jax.ShapeDtypeStruct`s that carry the *target* shardings, so a checkpoint written
on one mesh restores on any other; every leaf's shape is checked by name before any data is read.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from flax import nnx

from swapjax.convert.checkpoint_io import check_shapes
from swapjax.errors import CheckpointError, foreign_message
from swapjax.train.state import TrainState, path_name

STATE, DATA, CONFIG = "state", "data_iter", "config"


def state_dict(state: TrainState) -> dict:
    return {"step": state.step, "params": state.params, "opt_state": state.opt_state, "ema": state.ema,
            "rng": state.rng}


def config_json(config: Any) -> dict:
    """A config dataclass as JSON-able nested dicts (tuples as lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config),
                                  default=lambda o: o.as_dict() if hasattr(o, "as_dict") else str(o)))


def _abstract(tree: Any, shardings: Any) -> Any:
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    return {path_name(p): tuple(x.shape) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
            if hasattr(x, "shape")}


def _check(metadata: Any, target: Any, what: str) -> None:
    """The parameters in the checkpoint's `metadata` must be exactly those of `target` (one error naming every
    missing, unexpected or mis-shaped parameter with both shapes); the rest of the state follows from them."""
    check_shapes(_shapes(target["params"]), _shapes(metadata["params"]), what=what)


class Checkpoints:
    """The run's checkpoint manager (see module docstring)."""

    def __init__(self, directory: str | pathlib.Path, *, keep: int = 3):
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=True, create=True)
        handlers = {STATE: ocp.StandardCheckpointHandler(), DATA: grain.checkpoint.CheckpointHandler(),
                    CONFIG: ocp.JsonCheckpointHandler()}
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: TrainState, data_iter: Any, config: Any) -> None:
        """Starts an asynchronous save of step `step` (returns once the arrays are copied off the devices)."""
        args = {STATE: ocp.args.StandardSave(state_dict(state)), CONFIG: ocp.args.JsonSave(config_json(config))}
        if data_iter is not None:
            args[DATA] = grain.checkpoint.CheckpointSave(data_iter)
        self.manager.save(step, args=ocp.args.Composite(**args), force=True)

    def restore(self, abstract: TrainState, shardings: TrainState, data_iter: Any = None,
                step: int | None = None) -> TrainState:
        """The state of `step` (default latest) placed with `shardings`; `data_iter` is set to its position."""
        step = self.latest_step() if step is None else step
        target = _abstract(state_dict(abstract), state_dict(shardings))
        where = f"checkpoint step {step} in {str(self.directory)!r}"
        args = {STATE: ocp.args.StandardRestore(target)}
        if data_iter is not None:
            args[DATA] = grain.checkpoint.CheckpointRestore(data_iter)
        try:
            _check(self.manager.item_metadata(step)[STATE], target, where)
            restored = self.manager.restore(step, args=ocp.args.Composite(**args))
        except CheckpointError:
            raise
        except Exception as err:  # noqa: BLE001 - translated when recognised, re-raised as it is otherwise
            if isinstance(err, ValueError) and "does not exist" in str(err):
                raise CheckpointError(f"{where} has no data-iterator state for process {jax.process_index()} of "
                                      f"{jax.process_count()}: resume with the process count that wrote it") from None
            translated = _unreadable(where, err)
            if translated is err:
                raise
            raise translated from None
        return TrainState(**restored[STATE])

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()

    def __enter__(self) -> "Checkpoints":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _unreadable(where: str, err: Exception) -> Exception:
    """A `CheckpointError` for a step whose files are cut short or corrupt (a metadata file that is not JSON, or
    tensorstore's DATA_LOSS / OUT_OF_RANGE, which `errors.foreign_message` recognises); `err` itself otherwise."""
    if not isinstance(err, json.JSONDecodeError) and foreign_message(err) is None:
        return err
    said = " ".join(str(err).split("See full TensorStore details")[0].split())[:200]
    return CheckpointError(f"{where} cannot be read, it is truncated or corrupt ({type(err).__name__}: {said}): "
                           "delete that step's folder to resume from the step before, or start a new workdir")


# ------------------------------------------------------------------------------------------------ init-from
DIT_KINDS = ("swap", "dit")  # converted models whose parameters a swap model starts from


def _check_kind(path: pathlib.Path, field: str, kinds: tuple[str, ...]) -> None:
    """A converted folder given as `field` must hold one of `kinds` (one line otherwise)."""
    try:
        kind = json.loads((path / "swapjax_config.json").read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return  # load_converted reports an unreadable file
    if kind in kinds:
        return
    if kind == "vae":
        raise CheckpointError(f"{field} = {str(path)!r} is a VAE checkpoint, not a swap/DiT checkpoint: point "
                              f"{field} at a training workdir or a converted swap model (a VAE goes to "
                              "train.vae_init)")
    raise CheckpointError(f"{field} = {str(path)!r} holds a {kind!r} model, not one of {', '.join(kinds)}: point "
                          f"{field} at a training workdir or a converted {kinds[0]} model")


def _check_same_model(expected: dict, found: dict, what: str, field: str) -> None:
    """One line when `found` shares no parameter name with `expected`: another model altogether (e.g. a VAE
    stage's checkpoints), where listing every parameter would say nothing more."""
    if expected and found and not set(expected) & set(found):
        raise CheckpointError(f"{what} holds another model's parameters (none of the {len(expected)} parameters "
                              f"of this model, e.g. {sorted(found)[0]!r}): point {field} at a checkpoint of this "
                              "model (a swap/DiT training workdir for train.init_from, a VAE for train.vae_init)")


def load_params(path: str | pathlib.Path, abstract_model: Any, model_shardings: Any, *,
                field: str = "train.init_from", kinds: tuple[str, ...] = DIT_KINDS) -> dict:
    """Model parameters (an NNX pure dict placed with `model_shardings`) from `path`: a training workdir (its
    latest checkpoint's `params/model`) or a converted model directory (`swapjax_config.json`) of one of
    `kinds`. `field` names the setting in messages."""
    path = pathlib.Path(path)
    if (path / "swapjax_config.json").is_file():
        from swapjax.convert.saved import load_converted

        _check_kind(path, field, kinds)
        mesh = jax.tree.leaves(model_shardings)[0].mesh
        _, _, state = load_converted(path, mesh=mesh)
        params = nnx.to_pure_dict(state)
        check_shapes(_shapes(abstract_model), _shapes(params), what=f"converted model {str(path)!r} ({field})")
        return jax.tree.map(lambda x, s: jax.device_put(x, s), params, model_shardings)
    directory = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    manager = ocp.CheckpointManager(directory.absolute(), item_handlers={STATE: ocp.PyTreeCheckpointHandler()},
                                    options=ocp.CheckpointManagerOptions(read_only=True, create=False))
    try:
        step = manager.latest_step()
        if step is None:
            raise CheckpointError(f"{field} = {str(path)!r} holds no complete checkpoint and no "
                                  "swapjax_config.json: pass a training workdir or a converted model directory")
        target = {"params": {"model": _abstract(abstract_model, model_shardings)}}
        meta = manager.item_metadata(step)[STATE]
        what = f"{field} checkpoint step {step} in {str(directory)!r}"
        _check_same_model(_shapes(abstract_model), _shapes(meta["params"]["model"]), what, field)
        _check({"params": {"model": meta["params"]["model"]}}, target, what)
        restored = manager.restore(step, args=ocp.args.Composite(**{STATE: ocp.args.PyTreeRestore(
            target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True)}))
    finally:
        manager.close()
    return restored[STATE]["params"]["model"]
