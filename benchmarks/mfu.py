"""Model-FLOPs utilisation of the DiT training step against the float32 matmul peak of the same process.

    python benchmarks/mfu.py [--repeats 7] [--quick]

Times the jitted training step of the benchmark DiT (`dit_setup.py`: forward + backward of a mean-square loss
+ AdamW, parameters donated) alternately with a float32 `jnp.dot` of two 2,048² matrices, run by run. Achieved
FLOP/s = the step's analytic matmul FLOPs (`swapjax.models.dit_flops`; XLA's `cost_analysis` counts the
scanned layer body once, so it is printed for reference only) over the median step time; the peak = the dot's
FLOPs over its median time. The last line is `mfu_vs_matmul_peak: <achieved / peak>` (goal >= 0.6).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import jax  # noqa: E402

from benchmarks.timing import allocator, alternated, cpu_threads, load_average, matmul_runner, median  # noqa: E402
from benchmarks import dit_setup  # noqa: E402
from swapjax.compile_options import compiler_options  # noqa: E402
from swapjax.models.dit import abstract_dit  # noqa: E402
from swapjax.models.dit_flops import dit_flops  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="alternated timed runs per contender")
    parser.add_argument("--quick", action="store_true", help="tiny shapes, for tests")
    args = parser.parse_args()
    cfg = dit_setup.dit_config(quick=args.quick)
    shapes = dit_setup.QUICK_SHAPES if args.quick else dit_setup.SHAPES
    graphdef, abstract = abstract_dit(cfg)
    state = dit_setup.random_state(abstract)
    data = {k: jax.device_put(v) for k, v in dit_setup.inputs(cfg, shapes).items()}
    tx = dit_setup.adamw()
    step = dit_setup.jax_train_step(graphdef, tx)
    carry = {"params": state, "opt": tx.init(state)}
    batch = (data["latents"], data["t"], data["context"], data["target"])
    compiled = step.lower(carry["params"], carry["opt"], *batch).compile()
    xla_flops = compiled.cost_analysis().get("flops", float("nan"))

    def train():
        carry["params"], carry["opt"], loss = compiled(carry["params"], carry["opt"], *batch)
        return loss.block_until_ready()

    dot, dot_flops = matmul_runner(256 if args.quick else 2048)
    samples = alternated({"train_step": train, "matmul": dot}, max(1, args.repeats))
    flops = dit_flops(cfg, batch=shapes.latent[0], video_tokens=shapes.tokens(cfg),
                      text_tokens=shapes.text_tokens).train_step
    step_s, dot_s = median(samples["train_step"].wall), median(samples["matmul"].wall)
    achieved, peak = flops / step_s, dot_flops / dot_s

    print(f"model: D={cfg.inner_dim}, {cfg.num_layers} layers, {shapes.tokens(cfg)} tokens + {shapes.text_tokens} "
          f"text, float32, {jax.default_backend()} ({cpu_threads()} cores in the affinity mask; {load_average()})")
    print(f"compiler options: {compiler_options() or 'none'}; {allocator()}")
    print(f"train step FLOPs: analytic {flops / 1e9:.2f} G (XLA cost_analysis {xla_flops / 1e9:.2f} G: the scanned "
          "body counted once)")
    print(f"repeats: {args.repeats} alternated runs each; medians")
    print(f"  train_step {step_s:.4f} s -> {achieved / 1e9:.1f} GFLOP/s   (runs: "
          f"{' '.join(f'{s:.3f}' for s in samples['train_step'].wall)})")
    print(f"  matmul     {dot_s:.4f} s -> {peak / 1e9:.1f} GFLOP/s   (runs: "
          f"{' '.join(f'{s:.3f}' for s in samples['matmul'].wall)})")
    cpu_ratio = (flops / median(samples["train_step"].cpu)) / (dot_flops / median(samples["matmul"].cpu))
    print(f"same ratio from CPU time (work done, waiting for a core left out): {cpu_ratio:.3f}")
    print(f"mfu_vs_matmul_peak: {achieved / peak:.3f}")


if __name__ == "__main__":
    main()
