"""Layer stacks for the scanned DiT: the blocks themselves and per-layer adapters (pose projections, point MLPs).

`stacked` builds `count` independently initialised copies of a module as one module whose parameters lead with
a `layers` axis (the DiT's blocks, scanned; an adapter's copies). An adapter that exists on a chosen subset of
layers is built once per chosen layer. Inside the layer scan, each layer looks up its slot in the stack
(`layer_slots`) and reads that slice (`AdapterStack.at`); layers without the adapter read slot 0 and multiply
its contribution by 0, so the scan body stays one compiled program.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def stacked(make: Callable[[nnx.Rngs], nnx.Module], count: int, rngs: nnx.Rngs) -> nnx.Module:
    """`count` independently initialised `make(rngs)` as one module whose parameters lead with `layers`."""

    @nnx.split_rngs(splits=count)
    @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
    def build(rngs: nnx.Rngs) -> nnx.Module:
        return make(rngs)

    return build(rngs)


def selected_layers(num_layers: int, layers: tuple[int, ...]) -> tuple[int, ...]:
    """The chosen layer indices, sorted (`()` = every layer)."""
    return tuple(range(num_layers)) if not layers else tuple(sorted(layers))


def layer_slots(num_layers: int, layers: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per layer: its slot in the stack (`int32 [layers]`, 0 where absent) and an on flag (`float32 [layers]`)."""
    chosen = selected_layers(num_layers, layers)
    slot, on = np.zeros(num_layers, np.int32), np.zeros(num_layers, np.float32)
    for i, layer in enumerate(chosen):
        slot[layer], on[layer] = i, 1.0
    return slot, on


class AdapterStack(nnx.Module):
    """Adapters for the layers `layers` (`()` = all of `num_layers`), stacked; `at(slot)` gives one of them."""

    def __init__(self, make: Callable[[nnx.Rngs], nnx.Module], num_layers: int, layers: tuple[int, ...],
                 rngs: nnx.Rngs):
        self.num_layers, self.layers = num_layers, tuple(layers)
        self.stack = stacked(make, len(selected_layers(num_layers, layers)), rngs)

    def slots(self) -> dict[str, jax.Array]:
        """Scan inputs `{"slot": int32 [layers], "on": float32 [layers]}` for `run_blocks(layer_xs=...)`."""
        slot, on = layer_slots(self.num_layers, self.layers)
        return {"slot": jnp.asarray(slot), "on": jnp.asarray(on)}

    def at(self, slot: jax.Array) -> nnx.Module:
        """The adapter in stack position `slot` (a traced int inside the layer scan)."""
        graphdef, state = nnx.split(self.stack)
        return nnx.merge(graphdef, jax.tree.map(lambda p: p[slot], state))

    def map(self, fn: Callable[[nnx.Module], Any]) -> Any:
        """`fn(adapter)` for every adapter of the stack, outputs stacked on a new leading axis `[S, ...]`."""
        graphdef, state = nnx.split(self.stack)
        return jax.vmap(lambda s: fn(nnx.merge(graphdef, s)))(state)
