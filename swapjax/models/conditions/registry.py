"""Name -> builder table of the swap model's conditions, which of them a `SwapConfig` turns on, and their settings.

A condition is turned on by naming it in `SwapConfig.conditions` with its own keyword arguments, validated by the
condition's `Settings` dataclass (`settings(swap, name)`; a condition without one takes none). Build order (which
fixes parameter initialisation and the order contributions are combined in) is the order of
`SwapConfig.conditions`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple

from flax import nnx

from swapjax.errors import require
from swapjax.models.conditions.base import BATCH_KEYS, Condition
from swapjax.models.dit_config import DiTConfig
from swapjax.models.swap_config import SwapConfig

Builder = Callable[..., Condition]  # (DiTConfig, SwapConfig, *, rngs: nnx.Rngs) -> Condition


@dataclasses.dataclass(frozen=True)
class Registration:
    name: str
    builder: Builder


_REGISTRY: dict[str, Registration] = {}


def register_condition(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering a condition class (or any builder `(cfg, swap, *, rngs) -> Condition` with the same
    class attributes) as `name`, the key it is turned on by in `SwapConfig.conditions`."""
    if not name.isidentifier() or name.startswith("_"):
        raise ValueError(f"condition name {name!r} must be a Python identifier without a leading underscore (it "
                         "becomes the attribute holding the module): rename it")

    def register(builder: Builder) -> Builder:
        known = _REGISTRY.get(name)
        if known is not None and known.builder is not builder:
            raise ValueError(f"condition {name!r} is already registered (by {known.builder!r}): pick another name")
        _REGISTRY[name] = Registration(name, builder)
        return builder

    return register


def registered_conditions() -> tuple[str, ...]:
    """Every registered name, in registration order."""
    return tuple(_REGISTRY)


def condition_names(swap: SwapConfig) -> tuple[str, ...]:
    """The conditions `swap` turns on, in build order; raises `ConfigError` for a name nobody registered."""
    for name in swap.conditions.names:
        require(name in _REGISTRY, f"SwapConfig.conditions names {name!r}, which is not a registered condition "
                                   f"(registered: {', '.join(_REGISTRY)}): import the module that registers it "
                                   "before building the model, or fix the name")
    return swap.conditions.names


def settings_type(name: str) -> type | None:
    """The `Settings` dataclass of registered condition `name` (None: it takes no arguments)."""
    return getattr(_REGISTRY[name].builder, "Settings", None)


def settings(swap: SwapConfig, name: str) -> Any:
    """Condition `name`'s `Settings` built from its arguments in `swap.conditions`; `ConfigError` names a bad one."""
    cls, kwargs = settings_type(name), swap.conditions.kwargs(name)
    if cls is None:
        require(not kwargs, f"SwapConfig.conditions[{name!r}] = {kwargs}: condition {name!r} takes no arguments")
        return None
    allowed = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(kwargs) - allowed)
    require(not unknown, f"SwapConfig.conditions[{name!r}] has no argument(s) {unknown}; allowed: "
                         f"{', '.join(sorted(allowed))}")
    return cls(**kwargs)


def check_settings(swap: SwapConfig) -> None:
    """Every enabled condition is registered and its arguments are valid (`ConfigError` otherwise)."""
    for name in condition_names(swap):
        settings(swap, name)


def check_layers(swap: SwapConfig, num_layers: int) -> None:
    """Every enabled condition's `layers` setting indexes layers below `num_layers`."""
    for name in condition_names(swap):
        layers = getattr(settings(swap, name), "layers", ())
        require(all(i < num_layers for i in layers), f"SwapConfig.conditions[{name!r}] layers {layers} must index "
                                                     f"layers below DiTConfig.num_layers ({num_layers})")


def build_conditions(cfg: DiTConfig, swap: SwapConfig, rngs: nnx.Rngs) -> dict[str, Condition]:
    """The condition modules `swap` turns on, by name, in build order."""
    return {name: _REGISTRY[name].builder(cfg, swap, rngs=rngs) for name in condition_names(swap)}


def not_configured(name: str, swap: SwapConfig) -> ValueError:
    """The error for inputs of a condition the model was not built with, naming the setting that turns it on."""
    if name not in _REGISTRY:
        return ValueError(f"inputs were given for a condition {name!r}, but no condition of that name is registered "
                          f"(registered: {', '.join(_REGISTRY)}): fix the key in SwapInputs.conditions")
    return ValueError(f"a {name!r} condition was given, but SwapConfig.conditions {list(swap.conditions.names)} does "
                      f"not name it: drop it, or turn it on with swap.conditions.{name} (e.g. --set "
                      f"swap.conditions={','.join((*swap.conditions.names, name))})")


def condition_classes(swap: SwapConfig) -> dict[str, Builder]:
    """The builders (normally `Condition` subclasses) of the conditions `swap` turns on, in build order."""
    return {name: _REGISTRY[name].builder for name in condition_names(swap)}


def needed_batch_keys(swap: SwapConfig) -> tuple[str, ...]:
    """Every batch key (`base.BATCH_KEYS`) an enabled condition reads, in first-use order; raises `ConfigError`
    for a condition that declares an unknown key."""
    keys: list[str] = []
    for name, builder in condition_classes(swap).items():
        for key in getattr(builder, "batch_keys", ()):
            require(key in BATCH_KEYS, f"condition {name!r} declares batch key {key!r}, which no part of the "
                                       f"pipeline produces (known: {', '.join(BATCH_KEYS)}): use one of those")
            if key not in keys:
                keys.append(key)
    return tuple(keys)


def condition_inputs(swap: SwapConfig, batch: Mapping[str, Any]) -> dict[str, Any]:
    """Every enabled condition's typed inputs from a model batch: the one function training (`train/prepare.py`)
    and sampling (`sample/engine.py`) both call. A condition whose batch keys are not all present is left out
    (the model then runs without it, exactly the base model for it)."""
    out = {}
    for name, builder in condition_classes(swap).items():
        keys = getattr(builder, "batch_keys", ())
        if keys and all(batch.get(k) is not None for k in keys):
            out[name] = builder.inputs_from_batch(batch, swap)
    return out


class DataNeeds(NamedTuple):
    """What the data pipeline must render for the enabled conditions."""

    condition_video: bool  # render keypoints into a condition video (its VAE latent is "condition_latents")
    keypoints: int  # at least this many keypoints per frame in each example ("keypoints"); 0 = none
    reference_embedding: bool  # the image encoder embeds the prepared reference


def data_needs(swap: SwapConfig) -> DataNeeds:
    """The data the enabled conditions read (from their `batch_keys`)."""
    keys = needed_batch_keys(swap)
    points = max((getattr(settings(swap, n), "num_points", 0) for n in condition_names(swap)), default=0)
    points = points if "keypoints" in keys else 0
    return DataNeeds("condition_latents" in keys, points, "reference_embedding" in keys)
