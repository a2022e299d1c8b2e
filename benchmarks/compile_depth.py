"""Compile time of the scanned DiT stack does not grow with depth: 40 layers vs 2 layers at tiny width.

    python benchmarks/compile_depth.py [--steps train|forward]

Lowers and compiles a training-style step (forward + backward of a mean-square loss, `remat_policy="full"`)
for the same tiny-width DiT with 2 and with 40 layers, from abstract shapes only (nothing is allocated),
prints both times, and ends with `compile_depth_ratio: <t40 / t2>` (goal <= 1.3). A warm-up compile of a
different shape runs first so one-time backend start-up is not charged to the first measurement; each depth
is then compiled `--repeats` times, alternating, and the fastest is kept (shared CI machines are noisy).
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from swapjax.models.dit_config import DiTConfig  # noqa: E402
from swapjax.models.dit import abstract_dit, dit_apply  # noqa: E402

TINY = DiTConfig(num_heads=2, head_dim=16, in_channels=16, out_channels=16, text_dim=32, freq_dim=32,
                 ffn_dim=64, num_layers=2, remat_policy="full")


def compile_seconds(cfg: DiTConfig, steps: str, *, frames: int = 3, size: int = 8) -> float:
    """Seconds to lower + compile one step of `cfg` on abstract inputs."""
    graphdef, state = abstract_dit(cfg)
    latents = jax.ShapeDtypeStruct((1, frames, size, size, cfg.in_channels), jnp.float32)
    t = jax.ShapeDtypeStruct((1,), jnp.float32)
    context = jax.ShapeDtypeStruct((1, 8, cfg.text_dim), jnp.float32)

    def forward(state, latents, t, context):
        return dit_apply(graphdef, state, latents, t, context)

    def train(state, latents, t, context):
        return jax.grad(lambda s: jnp.mean(jnp.square(forward(s, latents, t, context))))(state)

    fn = train if steps == "train" else forward
    start = time.perf_counter()
    jax.jit(fn).lower(state, latents, t, context).compile()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", choices=("train", "forward"), default="train")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    compile_seconds(dataclasses.replace(TINY, num_layers=3), args.steps, frames=1, size=4)  # warm-up
    times: dict[int, list[float]] = {2: [], 40: []}
    for _ in range(max(1, args.repeats)):
        for depth in times:  # every compile traces a fresh function: nothing is served from a cache
            times[depth].append(compile_seconds(dataclasses.replace(TINY, num_layers=depth), args.steps))
    print("samples:", {d: [round(x, 2) for x in v] for d, v in times.items()})
    shallow, deep = min(times[2]), min(times[40])
    print(f"compile_seconds_2_layers: {shallow:.3f}")
    print(f"compile_seconds_40_layers: {deep:.3f}")
    print(f"compile_depth_ratio: {deep / shallow:.3f}")


if __name__ == "__main__":
    main()
