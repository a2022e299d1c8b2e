"""A sampling step of the swap model with and without the per-video reference K/V cache.

    python benchmarks/ref_cache.py [--repeats 7] [--quick]

The swap DiT (I2V-shaped: D = 256, 2 heads × 128, FFN 1024, 4 layers, 52 fused input channels, 512 × 4096 text
and 257 × 1280 CLIP-image context) on a video of 21 latent frames (81 pixel frames) with one reference frame in
front: the reference tokens are 1/22 = 4.5 % of the tokens, as at 480p × 81 frames. Uncached, every step runs
the training forward `swap_apply` (context embeddings, the reference stream, then the video stream); cached,
`swap_prefix_cache` runs once per video (not timed) and each step is `swap_video_step`. Alternated runs,
medians; the last line is `cached_over_uncached_step: <cached / uncached>` (goal <= 1 - reference share + 0.02).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.dit_setup import random_state  # noqa: E402
from benchmarks.timing import allocator, alternated, load_average, median  # noqa: E402
from swapjax.compile_options import compiler_options  # noqa: E402
from swapjax.models.dit_config import DiTConfig  # noqa: E402
from swapjax.models.swap import (SwapInputs, abstract_swap, swap_apply, swap_prefix_cache,  # noqa: E402
                                 swap_video_step)
from swapjax.models.swap_config import SwapConfig  # noqa: E402

SWAP = SwapConfig(reference=True, anchor=False)
DIT = DiTConfig(num_heads=2, head_dim=128, in_channels=SWAP.fused_channels(16), out_channels=16, text_dim=4096,
                freq_dim=256, ffn_dim=1024, num_layers=4, image_dim=1280, added_kv_proj_dim=256)
QUICK_DIT = DiTConfig(num_heads=2, head_dim=16, in_channels=SWAP.fused_channels(16), out_channels=16, text_dim=64,
                      freq_dim=32, ffn_dim=64, num_layers=2, image_dim=32, added_kv_proj_dim=32)
# latent video [f, h, w], text tokens, image tokens
SIZES = ((21, 16, 16), 512, 257)
QUICK_SIZES = ((3, 8, 8), 16, 4)


def swap_inputs(cfg: DiTConfig, sizes, seed: int = 0) -> SwapInputs:
    """Random fused video, reference prefix frame, t, text and image context for one video (batch 1)."""
    (f, h, w), lt, li = sizes
    rng = np.random.default_rng(seed)
    normal = lambda *shape: jax.device_put(rng.standard_normal(shape, dtype=np.float32))  # noqa: E731
    return SwapInputs(fused=normal(1, f, h, w, cfg.in_channels), t=jax.device_put(np.float32([0.7])),
                      context=normal(1, lt, cfg.text_dim), image_context=normal(1, li, cfg.image_dim),
                      prefix=normal(1, SWAP.num_prefix_frames, h, w, cfg.in_channels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="alternated timed runs per contender")
    parser.add_argument("--quick", action="store_true", help="tiny shapes, for tests")
    args = parser.parse_args()
    cfg, sizes = (QUICK_DIT, QUICK_SIZES) if args.quick else (DIT, SIZES)
    graphdef, abstract = abstract_swap(cfg, SWAP)
    state = random_state(abstract)  # every parameter random: zero-initialised heads would output zeros
    inputs = swap_inputs(cfg, sizes)
    options = compiler_options()
    uncached = jax.jit(swap_apply, static_argnums=0, compiler_options=options)
    step = jax.jit(swap_video_step, static_argnums=0, compiler_options=options)
    cache = jax.jit(swap_prefix_cache, static_argnums=0, compiler_options=options)(graphdef, state, inputs)
    reference = np.asarray(uncached(graphdef, state, inputs))
    same = np.abs(np.asarray(step(graphdef, state, cache, inputs.fused, inputs.t)) - reference).max() / np.abs(
        reference).max()

    runs = {"uncached": lambda: uncached(graphdef, state, inputs).block_until_ready(),
            "cached": lambda: step(graphdef, state, cache, inputs.fused, inputs.t).block_until_ready()}
    samples = alternated(runs, max(1, args.repeats))
    wall = {name: median(s.wall) for name, s in samples.items()}
    (f, h, w), lt, li = sizes
    per_frame = (h // cfg.patch_size[1]) * (w // cfg.patch_size[2])
    share = SWAP.num_prefix_frames / (SWAP.num_prefix_frames + f)

    print(f"swap model: D={cfg.inner_dim}, {cfg.num_layers} layers; video {f} latent frames x {per_frame} tokens + "
          f"{SWAP.num_prefix_frames} reference frame(s) -> reference share {share:.3f}; text {lt}, image {li} tokens")
    print(f"{jax.default_backend()}, {load_average()}; compiler options: {options or 'none'}; {allocator()}")
    print(f"cached vs uncached output: max|Δ| / max|uncached| = {same:.1e}")
    print(f"repeats: {args.repeats} alternated runs each; medians in s (wall, and CPU time of this process)")
    for name, s in samples.items():
        print(f"  {name:9s} wall {wall[name]:.4f}  cpu {median(s.cpu):.4f}   (wall runs: "
              f"{' '.join(f'{v:.3f}' for v in s.wall)})")
    print(f"goal: <= 1 - share + 0.02 = {1 - share + 0.02:.3f}")
    print(f"cached_over_uncached_step: {wall['cached'] / wall['uncached']:.3f}")


if __name__ == "__main__":
    main()
