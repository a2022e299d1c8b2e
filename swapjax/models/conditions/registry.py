"""Name -> builder table of the swap model's conditions, and which of them a `SwapConfig` turns on.

Built-in conditions register with the `SwapConfig` flag that turns them on (`pose_attention`, `identity_token`,
`points`); any other registered condition is turned on by naming it in `SwapConfig.extra_conditions`. Build
order (which fixes parameter initialisation and the order contributions are combined in): the built-ins that
are on, in registration order, then `extra_conditions` in the order given.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple

from flax import nnx

from swapjax.config_error import require
from swapjax.models.conditions.base import BATCH_KEYS, Condition
from swapjax.models.dit_config import DiTConfig
from swapjax.models.swap_config import SwapConfig

Builder = Callable[..., Condition]  # (DiTConfig, SwapConfig, *, rngs: nnx.Rngs) -> Condition


@dataclasses.dataclass(frozen=True)
class Registration:
    name: str
    builder: Builder
    flag: str | None  # the SwapConfig bool that turns a built-in on; None: named in SwapConfig.extra_conditions


_REGISTRY: dict[str, Registration] = {}


def register_condition(name: str, *, flag: str | None = None) -> Callable[[Builder], Builder]:
    """Decorator registering a condition class (or any builder `(cfg, swap, *, rngs) -> Condition`) as `name`."""
    if not name.isidentifier() or name.startswith("_"):
        raise ValueError(f"condition name {name!r} must be a Python identifier without a leading underscore (it "
                         "becomes the attribute holding the module): rename it")
    if flag is not None and flag not in {f.name for f in dataclasses.fields(SwapConfig)}:
        raise ValueError(f"condition {name!r}: flag {flag!r} is not a field of SwapConfig")

    def register(builder: Builder) -> Builder:
        known = _REGISTRY.get(name)
        if known is not None and known.builder is not builder:
            raise ValueError(f"condition {name!r} is already registered (by {known.builder!r}): pick another name")
        _REGISTRY[name] = Registration(name, builder, flag)
        return builder

    return register


def registered_conditions() -> tuple[str, ...]:
    """Every registered name, in registration order."""
    return tuple(_REGISTRY)


def condition_names(swap: SwapConfig) -> tuple[str, ...]:
    """The conditions `swap` turns on, in build order (see module docstring); raises `ConfigError` for an
    unknown or built-in name in `SwapConfig.extra_conditions`."""
    for name in swap.extra_conditions:
        known = _REGISTRY.get(name)
        require(known is not None, f"SwapConfig.extra_conditions names {name!r}, which is not a registered condition "
                                   f"(registered: {', '.join(_REGISTRY)}): import the module that registers it "
                                   "before building the model, or fix the name")
        require(known.flag is None, f"SwapConfig.extra_conditions names {name!r}, a built-in condition: turn it on "
                                    f"with SwapConfig.{known.flag} = True instead")
    builtins = tuple(r.name for r in _REGISTRY.values() if r.flag is not None and getattr(swap, r.flag))
    return builtins + tuple(swap.extra_conditions)


def build_conditions(cfg: DiTConfig, swap: SwapConfig, rngs: nnx.Rngs) -> dict[str, Condition]:
    """The condition modules `swap` turns on, by name, in build order."""
    return {name: _REGISTRY[name].builder(cfg, swap, rngs=rngs) for name in condition_names(swap)}


def not_configured(name: str, swap: SwapConfig) -> ValueError:
    """The error for inputs of a condition the model was not built with, naming the switch that turns it on."""
    known = _REGISTRY.get(name)
    if known is None:
        return ValueError(f"inputs were given for a condition {name!r}, but no condition of that name is registered "
                          f"(registered: {', '.join(_REGISTRY)}): fix the key in SwapInputs.conditions")
    if known.flag is not None:
        return ValueError(f"a {name!r} condition was given, but SwapConfig.{known.flag} is off: drop it, or set "
                          f"SwapConfig.{known.flag} = True")
    return ValueError(f"a {name!r} condition was given, but SwapConfig.extra_conditions {swap.extra_conditions} "
                      "does not name it: drop it, or add it there")


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
    points = swap.num_points if "keypoints" in keys else 0
    return DataNeeds("condition_latents" in keys, points, "reference_embedding" in keys)
