"""The run-level `Config`: it composes the sections, checks them against each other, and loads with overrides.

Each section's dataclass lives beside the code that reads it (`models/dit_config.py`, `models/vae_config.py`,
`models/swap_config.py`, `data/config.py`, ...); modules receive the small config they need, never the whole
`Config`. An experiment is a `configs/*.py` file whose `get_config()` returns a `Config`; `load_config(path,
overrides)` imports it and applies dotted command-line overrides such as `dit.remat_policy=full` or
`data.mask.grid_cell_min=8` (see `apply_overrides`). Every dataclass validates itself in `__post_init__` and
raises `ConfigError` naming the values involved, so an override is validated exactly like a config file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import pathlib
import types
import typing
from typing import Any, Sequence

import tyro

from swapjax.errors import ConfigError, SwapjaxError, require
from swapjax.data.config import DataConfig, StageFromTrain
from swapjax.models.dit_config import DiTConfig
from swapjax.models.swap_config import Conditions, SwapConfig, validate_swap
from swapjax.models.vae_config import VAEConfig
from swapjax.parallel import MeshConfig
from swapjax.python_file import call_factory
from swapjax.sample.config import SampleConfig
from swapjax.losses import LossConfig
from swapjax.train.config import OptimizerConfig, TrainConfig

__all__ = ["Config", "ConfigError", "load_config", "apply_overrides"]


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything one run needs: the model sections, the data, the seed."""

    name: str
    dit: DiTConfig
    vae: VAEConfig
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
    seed: int = 0
    swap: SwapConfig | None = None  # None: a plain Wan2.1 DiT; set: the swap model (swapjax.models.swap)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)  # swapjax.train: steps, stage, checkpoints
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)  # swapjax.losses: which objectives train
    sample: SampleConfig = dataclasses.field(default_factory=SampleConfig)  # swapjax.sample: solver, steps, guidance

    def __post_init__(self):
        self._follow_train_stage()
        if self.swap is not None:
            validate_swap(self.dit, self.swap)
            vae, swap = self.vae, self.swap
            require(vae.spatial_factor == swap.pixels_per_latent and vae.temporal_factor == swap.frames_per_latent,
                    f"SwapConfig: pixels_per_latent / frames_per_latent ({swap.pixels_per_latent} / "
                    f"{swap.frames_per_latent}) must equal the VAE's factors ({vae.spatial_factor} / "
                    f"{vae.temporal_factor})")
            require(self.dit.out_channels == vae.z_dim,
                    f"DiTConfig.out_channels ({self.dit.out_channels}) must equal VAEConfig.z_dim ({vae.z_dim}) "
                    "for the swap model")

    def _follow_train_stage(self) -> None:
        """`data.stage` None (or derived before) follows `train.stage`: "1" -> 1, "2" -> 2, "lora" -> 1, so
        `train.stage=2` turns on the stage-2 data (reference jitter); a `data.stage` the user set is kept."""
        stage = self.data.stage
        if stage is not None and not isinstance(stage, StageFromTrain):
            return
        derived = StageFromTrain(2 if self.train.stage == "2" else 1)
        object.__setattr__(self, "data", dataclasses.replace(self.data, stage=derived))

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)


def load_config(path: str | pathlib.Path, overrides: Sequence[str] = ()) -> Config:
    """Imports a `configs/*.py` file, calls its `get_config()` and applies `overrides` (`key=value` strings).

    Any error the file raises while it is imported or while `get_config()` runs becomes one `ConfigError`
    naming the file and the error (a `ConfigError` it raises, e.g. from a section's checks, is kept as it is)."""
    try:
        config = call_factory(path, "get_config", Config, label="config file",
                              missing_hint="pass a path such as configs/tiny.py",
                              syntax_hint=": fix it, or pass a configs/*.py file")
    except SwapjaxError:
        raise
    except Exception as err:  # the user's code: say what it raised in one line, the traceback is theirs to get
        said = " ".join(str(err).split())[:300]
        raise ConfigError(f"config file {str(path)!r} raised {type(err).__name__}"
                          f"{': ' + said if said else ''} while building its Config: fix it") from None
    return apply_overrides(config, overrides)


# ------------------------------------------------------------------------------------------ overrides
def apply_overrides(config: Any, overrides: Sequence[str]) -> Any:
    """`config` with `key=value` overrides applied; keys are dotted field paths (`data.mask.feather=3`).

    The value is parsed to the field's declared type by `tyro` (ints, floats, bools `true/false`, strings,
    `None` for optional fields, tuples as `1,2,3`). All overrides are gathered first (a later one of the same key
    wins), then each changed dataclass is rebuilt once with `dataclasses.replace`, innermost first, so every
    `__post_init__` check runs on the final values (overrides that only make sense together, such as turning a
    section on and widening the model to match, work in any order). An optional section that is `None` is
    created from its defaults when one of its fields is set. Errors are one `ConfigError` naming the key, the
    value and what is allowed.
    """
    tree: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value: write e.g. dit.remat_policy=full")
        node = tree
        *parents, leaf = key.split(".")
        for name in parents:
            if isinstance(node.get(name), tuple):  # the path was also set as a whole: kept under ""
                node[name] = {"": node[name]}
            node = node.setdefault(name, {})
        if isinstance(node.get(leaf), dict):
            node[leaf][""] = (key, value.strip())
        else:
            node[leaf] = (key, value.strip())
    return _rebuild(config, tree, "")


def _rebuild(node: Any, changes: dict[str, Any], prefix: str) -> Any:
    cls = type(node)
    fields = {f.name for f in dataclasses.fields(node)}
    hints = typing.get_type_hints(cls)
    new: dict[str, Any] = {}
    for name, change in changes.items():
        path = f"{prefix}{name}"
        if name not in fields:
            key, value = _first(change)
            raise ConfigError(f"override {key}={value!r}: {cls.__name__} has no field {name!r}; allowed: "
                              f"{', '.join(sorted(fields))}")
        if isinstance(change, tuple):
            key, value = change
            new[name] = _parse(hints[name], value, f"{key}={value!r}")
            continue
        child = getattr(node, name)
        if isinstance(child, Conditions):  # swap.conditions=<names> and swap.conditions.<name>.<argument>=value
            if "" in change:
                key, value = change.pop("")
                child = _parse(Conditions, value, f"{key}={value!r}")
            new[name] = _condition_overrides(child, change, f"{path}.")
            continue
        if "" in change:
            key, value = change[""]
            raise ConfigError(f"override {key}={value!r} sets {path}, which other overrides set fields inside: "
                              f"{cls.__name__}.{name} is a section; set its fields, e.g. {path}.<field>=...")
        if child is None and _dataclass_in(hints[name]) is not None:
            child = _dataclass_in(hints[name])()
        if not dataclasses.is_dataclass(child):
            key, value = _first(change)
            raise ConfigError(f"override {key}={value!r}: {cls.__name__}.{name} is a value, not a section; set it "
                              f"as {path}=...")
        new[name] = _rebuild(child, change, f"{path}.")
    try:
        return dataclasses.replace(node, **new)
    except ConfigError as err:
        said = ", ".join(f"{k}={v!r}" for k, v in _all(changes))
        raise ConfigError(f"override {said} is invalid: {err}") from None


def _condition_overrides(conditions: Conditions, changes: dict[str, Any], prefix: str) -> Conditions:
    """`conditions` with `<name>.<argument>=value` overrides: each value parsed to the type of that argument in
    the condition's `Settings`; naming a condition that is off turns it on."""
    from swapjax.models.conditions import registered_conditions, settings_type

    for name, args in changes.items():
        key, value = _first(args)
        if name not in registered_conditions():
            raise ConfigError(f"override {key}={value!r}: no condition {name!r} is registered (registered: "
                              f"{', '.join(registered_conditions())})")
        if isinstance(args, tuple):
            raise ConfigError(f"override {key}={value!r}: set an argument of the condition, e.g. "
                              f"{prefix}{name}.<argument>=..., or turn conditions on with {prefix[:-1]}={name}")
        cls = settings_type(name)
        hints = typing.get_type_hints(cls) if cls is not None else {}
        parsed = {}
        for arg, change in args.items():
            key, value = _first(change)
            if arg not in hints or not isinstance(change, tuple):
                raise ConfigError(f"override {key}={value!r}: condition {name!r} has no argument {arg!r}; allowed: "
                                  f"{', '.join(sorted(hints)) or 'none'}")
            parsed[arg] = _parse(hints[arg], value, f"{key}={value!r}")
        conditions = conditions.with_kwargs(name, **parsed)
    return conditions


def _first(change: Any) -> tuple[str, str]:
    return change if isinstance(change, tuple) else _first(next(iter(change.values())))


def _all(changes: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for change in changes.values():
        out += [change] if isinstance(change, tuple) else _all(change)
    return out


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass type inside `X` or `X | None`, else None."""
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
        else (hint,)
    return next((a for a in args if dataclasses.is_dataclass(a)), None)


def _parse(hint: Any, value: str, what: str) -> Any:
    if Conditions in (hint, *typing.get_args(hint)):  # swap.conditions=pose,points (names; "" or none = none)
        names = [n.strip() for n in value.strip().strip("()[]").split(",") if n.strip()]
        return Conditions(()) if names in ([], ["none"], ["None"]) else Conditions(names)
    if _dataclass_in(hint) is not None:
        raise ConfigError(f"override {what}: that is a section; set its fields, e.g. "
                          f"{what.split('=')[0]}.<field>=...")
    tokens = _tokens(hint, value)
    try:
        # tyro may still print its own multi-line report of a bad value; the ConfigError below says it in one line
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            return tyro.cli(hint, args=tokens, console_outputs=False)
    except SystemExit:
        raise ConfigError(f"override {what}: cannot read {value!r} as {_type_name(hint)}") from None


def _tokens(hint: Any, value: str) -> list[str]:
    """Command-line tokens for tyro: tuples are written `1,2` (or `(1, 2)`), everything else is one token."""
    origin = typing.get_origin(hint)
    is_tuple = origin is tuple or any(typing.get_origin(a) is tuple for a in typing.get_args(hint))
    if is_tuple and value != "None":
        inner = value.strip().strip("()[]")
        return [t.strip() for t in inner.split(",") if t.strip()]
    if typing.get_origin(hint) is None and hint is bool:
        return [{"1": "True", "true": "True", "yes": "True", "0": "False", "false": "False", "no": "False"}
                .get(value.lower(), value)]
    return [value]


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")

