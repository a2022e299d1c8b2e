"""The one interface every optional condition of the swap model implements.

A condition is an `nnx.Module` built from `(DiTConfig, SwapConfig, rngs=...)` and registered under a name
(`registry.register_condition`); `SwapConfig.conditions` names the conditions a model has, each with its own
keyword arguments (validated by the class's `Settings` dataclass), and `SwapDiT` builds them, in that order, as
attributes named after them. A condition acts on the video stream only (never on the reference/anchor prefix, whose K/V cache therefore
does not depend on it), in two stages:

1. `prepare(inputs, video)`, once per video and guidance branch: the condition's typed inputs (the entry under
   its name in `SwapInputs.conditions`) -> a pytree of per-video arrays (pose features, point-MLP outputs and
   token indices, an identity token). It is stored in the prefix cache next to the reference K/V and reused at
   every sampling step. Every leaf must lead with the batch axis `[B, ...]`, so the guidance branches run as
   one batch (the sampling engine stacks them on that axis).
2. `layer_inputs(prepared, layer, video)`, inside the layer scan: that layer's `LayerInputs` (attention branches,
   a residual, extra key/value tokens). `layer` is this layer's slice of `layer_xs()` (a pytree with a leading
   `layers` axis, e.g. the slot of this layer's adapter; `None` for a condition without per-layer inputs).
   The inputs of all conditions are combined with `layer_inputs.combine`: branch outputs add up, residuals add,
   extra tokens concatenate, so no condition overwrites another.

Training and sampling feed a condition the same way (docs/design.md, "Conditions"): a condition declares
`batch_keys`, the arrays of a model batch it reads (`"condition_latents"`: the VAE encoding of the rendered
condition video; `"keypoints"`: `[B, F, K, 3]` tracked points in model pixels with visibility;
`"reference_embedding"`: the image encoder's embedding of the prepared reference), and `inputs_from_batch`
turns them into its typed inputs. `registry.condition_inputs` calls it for every enabled condition, from the
training batch (`train/prepare.py`) and from a sampling window (`sample/engine.py`) alike; `registry.data_needs`
tells the data pipeline what to render (`render_condition_video`, `num_keypoints`) from the same declarations.

Adding a condition is one new file (a `Condition` subclass decorated with `@register_condition("name")`) plus
naming it in `SwapConfig.conditions`; nothing in `swap.py`, `train/` or `sample/` changes. This is also the seam where
multi-subject swapping plugs in later: a per-subject condition prepares each subject's features (and token
placement) once per video and returns one branch or residual per subject, which compose like any other.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, NamedTuple

import jax
from flax import nnx

from swapjax.models.layer_inputs import LayerInputs


class VideoStream(NamedTuple):
    """What a condition knows about the video stream it conditions (static, but the rotary tables)."""

    batch: int
    latent_shape: tuple[int, int, int, int]  # [B, f, h, w] of the fused video latent
    grid: tuple[int, int, int]  # token grid (f, h', w') of the video
    prefix_frames: int  # latent frames of the prefix in front of the video (0, 1 or 2)
    rope: tuple[jax.Array, jax.Array]  # the video tokens' rotary cos/sin [Lv, H/2] (frames after the prefix)

    @property
    def num_tokens(self) -> int:
        """Lv = f · h' · w'."""
        return self.grid[0] * self.grid[1] * self.grid[2]


def layer_list_ok(layers: tuple[int, ...]) -> bool:
    """Distinct layer indices >= 0 (a condition's `layers` setting; `()` = every layer)."""
    return all(isinstance(i, int) and i >= 0 for i in layers) and len(set(layers)) == len(layers)


# The arrays a model batch may hold for the conditions, and what produces each (docs/design.md, "Conditions").
BATCH_KEYS = {
    "condition_latents": "the VAE encoding of the rendered condition video [B, f, h, w, C] (data renders it)",
    "keypoints": "tracked points [B, F, K, 3]: x, y in model pixels, visibility (data reads them)",
    "reference_embedding": "the image encoder's embedding of the prepared reference [B, E]",
}


class Condition(nnx.Module):
    """Base of the optional conditions (see module docstring); subclasses implement `prepare` and
    `layer_inputs`, and `layer_xs` when they have per-layer inputs; `batch_keys` and `inputs_from_batch` say
    how training and sampling feed them."""

    batch_keys: ClassVar[tuple[str, ...]] = ()  # keys of BATCH_KEYS this condition reads

    @classmethod
    def inputs_from_batch(cls, batch: Mapping[str, Any], swap: Any) -> Any:
        """This condition's typed inputs from a model batch holding its `batch_keys` (`swap`: the SwapConfig)."""
        raise NotImplementedError(f"{cls.__name__} must implement inputs_from_batch(batch, swap)")

    def prepare(self, inputs: Any, video: VideoStream) -> Any:
        """Typed inputs of this condition -> per-video pytree, every leaf `[B, ...]` (computed once per video)."""
        raise NotImplementedError(f"{type(self).__name__} must implement prepare(inputs, video)")

    def layer_xs(self) -> Any:
        """Per-layer scan inputs, every leaf `[layers, ...]`; `None` when the condition has none."""
        return None

    def layer_inputs(self, prepared: Any, layer: Any, video: VideoStream) -> LayerInputs:
        """This layer's contribution (its slice `layer` of `layer_xs()`) from the prepared inputs."""
        raise NotImplementedError(f"{type(self).__name__} must implement layer_inputs(prepared, layer, video)")
