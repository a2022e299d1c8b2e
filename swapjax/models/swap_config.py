"""`SwapConfig`: the swap model's prefix slots and optional conditions (read by `models/swap.py`), and the
check that a swap config fits its DiT (and VAE)."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

from swapjax.errors import require
from swapjax.models.dit_config import DiTConfig


class Conditions:
    """The swap model's optional conditions, in build order: name -> that condition's own keyword arguments
    (validated by the condition's `Settings`, see `swapjax.models.conditions`). Immutable and hashable, so a
    `SwapConfig` stays a static jit argument.

        Conditions({"pose": {"scale": 0.5}, "points": {"num_points": 5}})
        Conditions(("pose", "identity"))        # names alone: each condition's default settings
    """

    __slots__ = ("specs",)

    def __init__(self, value: Any = ()):
        if isinstance(value, Conditions):
            specs = value.specs
        elif isinstance(value, Mapping):
            specs = tuple((name, _frozen_kwargs(name, kw)) for name, kw in value.items())
        else:
            specs = tuple((v, ()) if isinstance(v, str) else (v[0], _frozen_kwargs(v[0], v[1])) for v in value)
        names = [name for name, _ in specs]
        require(all(isinstance(n, str) and n.isidentifier() for n in names) and len(set(names)) == len(names),
                f"SwapConfig.conditions names {names}: they must be distinct registered condition names")
        object.__setattr__(self, "specs", specs)

    def __setattr__(self, name, value):
        raise AttributeError("Conditions is immutable: build a new one (with_names / with_kwargs)")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.specs)

    def kwargs(self, name: str) -> dict[str, Any]:
        """The keyword arguments given for condition `name` ({} when it is on with its defaults, or off)."""
        return dict(next((kw for n, kw in self.specs if n == name), ()))

    def with_names(self, names: Sequence[str]) -> "Conditions":
        """Exactly the conditions `names`, in that order, keeping the arguments of those already set."""
        return Conditions(tuple((n, self.kwargs(n)) for n in names))

    def with_kwargs(self, name: str, **kwargs: Any) -> "Conditions":
        """`name` turned on (appended if new) with `kwargs` updating its arguments."""
        names = self.names if name in self.names else (*self.names, name)
        return Conditions(tuple((n, {**self.kwargs(n), **(kwargs if n == name else {})}) for n in names))

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __iter__(self):
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.specs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Conditions) and self.specs == other.specs

    def __hash__(self) -> int:
        return hash(self.specs)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """`{name: {argument: value}}` in build order (JSON-ready once tuples become lists)."""
        return {n: dict(kw) for n, kw in self.specs}

    def __reduce__(self):  # copy, deepcopy (dataclasses.asdict) and pickle rebuild through __init__
        return (Conditions, (self.as_dict(),))

    def __repr__(self) -> str:
        return f"Conditions({self.as_dict()})"


def _frozen_kwargs(name: str, kwargs: Any) -> tuple[tuple[str, Any], ...]:
    require(isinstance(kwargs, Mapping), f"SwapConfig.conditions[{name!r}] = {kwargs!r}: give the condition's keyword "
            "arguments as a dict, e.g. {'scale': 0.5}")
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in kwargs.items())


@dataclasses.dataclass(frozen=True)
class SwapConfig:
    """The swap model on a Wan2.1 DiT (docs/design.md, "The swap model"): prefix slots and the optional
    conditions, all off but the reference slot. Fused input channels: [noisy latent z | mask (frames_per_latent) |
    agnostic latent z | guide latent (condition_channels)], so `DiTConfig.in_channels = 2 z +
    frames_per_latent + condition_channels` (52 for Wan2.1). The guide latent (`fused_inputs.py`) is not one of the
    conditions; its width keeps the name `condition_channels` that configs, `--set swap.condition_channels=` and
    converted models' JSON already use."""

    reference: bool = True  # reference latent frame prepended; one-way attention; its K/V cached per video
    anchor: bool = False  # anchor slot: one clean latent frame of the window (fused_inputs.anchor_index)
    condition_channels: int = 16  # guide latent (rendered pose/hands/landmarks), zeros when absent; 0 = none
    pixels_per_latent: int = 8  # the VAE's spatial factor (points: pixel -> latent coordinates)
    frames_per_latent: int = 4  # the VAE's temporal factor (mask packing, point frames)
    # optional conditions (swapjax.models.conditions), in build order: name -> its own keyword arguments, e.g.
    # {"pose": {"scale": 0.5}, "identity": {}, "points": {"num_points": 5}}; see each condition's `Settings`
    # (pose: DreamID-V pose-attention; identity: DreamID-V identity token; points: VideoSwap semantic points)
    conditions: Conditions | Mapping[str, Any] | Sequence[Any] = Conditions()  # a Conditions after __post_init__

    def __post_init__(self):
        object.__setattr__(self, "conditions", Conditions(self.conditions))
        require(self.condition_channels >= 0,
                f"SwapConfig.condition_channels ({self.condition_channels}) must be >= 0 (0: no guide latent channels)")
        require(self.pixels_per_latent >= 1 and self.frames_per_latent >= 1,
                f"SwapConfig: pixels_per_latent ({self.pixels_per_latent}) and frames_per_latent "
                f"({self.frames_per_latent}) must be >= 1")
        if self.conditions:
            from swapjax.models.conditions.registry import check_settings  # registers the built-ins on first use

            check_settings(self)

    def fused_channels(self, latent_channels: int) -> int:
        """Input channels of the swap DiT for a VAE with `latent_channels` (52 for Wan2.1's 16)."""
        return 2 * latent_channels + self.frames_per_latent + self.condition_channels

    @property
    def num_prefix_frames(self) -> int:
        """Latent frames prepended to the video: the reference, then the anchor."""
        return int(self.reference) + int(self.anchor)

    def replace(self, **changes: Any) -> "SwapConfig":
        return dataclasses.replace(self, **changes)


def validate_swap(dit: DiTConfig, swap: SwapConfig) -> None:
    """Checks that a swap config fits its DiT; raises `ConfigError` naming the values (the VAE is checked by the
    run-level `Config`)."""
    want = swap.fused_channels(dit.out_channels)
    require(dit.in_channels == want,
            f"DiTConfig.in_channels ({dit.in_channels}) must be 2 * out_channels ({dit.out_channels}) + "
            f"SwapConfig.frames_per_latent ({swap.frames_per_latent}) + condition_channels "
            f"({swap.condition_channels}) = {want} for the swap model's fused input")
    require(dit.patch_size[0] == 1,
            f"DiTConfig.patch_size ({dit.patch_size}) must have temporal size 1 for the swap model: the reference "
            "and anchor are single latent frames")
    if swap.conditions:
        from swapjax.models.conditions.registry import check_layers

        check_layers(swap, dit.num_layers)
