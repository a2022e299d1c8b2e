"""Name -> builder table of the swap model's conditions, and which of them a `SwapConfig` turns on.

Built-in conditions register with the `SwapConfig` flag that turns them on (`pose_attention`, `identity_token`,
`points`); any other registered condition is turned on by naming it in `SwapConfig.extra_conditions`. Build
order (which fixes parameter initialisation and the order contributions are combined in): the built-ins that
are on, in registration order, then `extra_conditions` in the order given.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from flax import nnx

from swapjax.config_error import require
from swapjax.models.conditions.base import Condition
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
