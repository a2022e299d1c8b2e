"""swapjax's DiT against diffusers' `WanTransformer3DModel`, same weights, side by side on the CPU.

    python benchmarks/train_step_vs_torch.py [--repeats 7] [--quick]
    taskset -c 0 python benchmarks/train_step_vs_torch.py      # one core each: the work, without thread effects

Builds the diffusers model (D = 256, 2 heads × 128, FFN 1024, 4 layers; see `dit_setup.py`), converts its
weights with `swapjax.convert`, checks both forwards agree, then times, alternating run by run: the forward of
each, and a training step of each (forward + backward of a mean-square loss + one AdamW update: optax `adamw`
jitted with donated state vs `torch.optim.AdamW`). float32; torch gets as many threads as JAX's CPU pool (the
cores in this process's affinity mask); both run in one process. Prints wall and CPU-time medians and the
ratios; the last line is
`jax_over_torch_train_step: <jax / torch>` (wall-clock medians; goal <= 0.8).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from diffusers import WanTransformer3DModel  # noqa: E402

from benchmarks.timing import allocator, alternated, cpu_threads, load_average, median  # noqa: E402
from benchmarks import dit_setup  # noqa: E402
from swapjax.convert.dit import convert_dit  # noqa: E402
from swapjax.models.dit import abstract_dit  # noqa: E402


def torch_runs(model: WanTransformer3DModel, data: dict[str, np.ndarray]):
    """(forward run, training-step run, forward output in swapjax layout) of the diffusers model."""
    latents = torch.from_numpy(np.ascontiguousarray(np.moveaxis(data["latents"], -1, 1)))  # [B, C, f, h, w]
    target = torch.from_numpy(np.ascontiguousarray(np.moveaxis(data["target"], -1, 1)))
    t = torch.from_numpy(data["t"]) * 1000.0  # Wan's timestep units
    context = torch.from_numpy(data["context"])
    opt = torch.optim.AdamW(model.parameters(), lr=dit_setup.LR, betas=dit_setup.BETAS, eps=dit_setup.EPS,
                            weight_decay=dit_setup.WEIGHT_DECAY)

    def forward():
        with torch.no_grad():
            return model(latents, t, context, return_dict=False)[0]

    def train_step():
        opt.zero_grad(set_to_none=True)
        out = model(latents, t, context, return_dict=False)[0]
        loss = torch.mean(torch.square(out - target))
        loss.backward()
        opt.step()
        return loss.item()

    reference = np.moveaxis(forward().numpy(), 1, -1)  # [B, f, h, w, C]
    return forward, train_step, reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="alternated timed runs per contender")
    parser.add_argument("--quick", action="store_true", help="tiny shapes, for tests")
    args = parser.parse_args()
    threads = cpu_threads()
    torch.set_num_threads(threads)
    torch_config = dit_setup.QUICK_TORCH_CONFIG if args.quick else dit_setup.TORCH_CONFIG
    shapes = dit_setup.QUICK_SHAPES if args.quick else dit_setup.SHAPES

    torch.manual_seed(0)
    model = WanTransformer3DModel(**torch_config)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        cfg, state = convert_dit(tmp)
    graphdef, _ = abstract_dit(cfg)
    params = jax.device_put(state)
    data = dit_setup.inputs(cfg, shapes)
    torch_forward, torch_train, reference = torch_runs(model, data)

    forward = dit_setup.jax_forward(graphdef)
    x = {k: jax.device_put(v) for k, v in data.items()}
    out = np.asarray(forward(params, x["latents"], x["t"], x["context"]))
    err = float(np.abs(out - reference).max() / np.abs(reference).max())

    tx = dit_setup.adamw()
    train = dit_setup.jax_train_step(graphdef, tx)
    carry = {"params": jax.device_put(state), "opt": tx.init(params)}

    def jax_train():
        carry["params"], carry["opt"], loss = train(carry["params"], carry["opt"], x["latents"], x["t"],
                                                    x["context"], x["target"])
        return loss.block_until_ready()

    runs = {"jax_forward": lambda: forward(params, x["latents"], x["t"], x["context"]).block_until_ready(),
            "torch_forward": torch_forward, "jax_train_step": jax_train, "torch_train_step": torch_train}
    samples = alternated(runs, max(1, args.repeats))
    wall = {name: median(s.wall) for name, s in samples.items()}
    cpu = {name: median(s.cpu) for name, s in samples.items()}

    print(f"model: D={cfg.inner_dim} ({cfg.num_heads} heads x {cfg.head_dim}), ffn {cfg.ffn_dim}, "
          f"{cfg.num_layers} layers, latent {list(shapes.latent)} -> {shapes.tokens(cfg)} tokens, text "
          f"{shapes.text_tokens} x {cfg.text_dim}, float32, CPU")
    print(f"threads: jax {threads} (XLA CPU pool = cores in the affinity mask), torch {torch.get_num_threads()}; "
          f"{load_average()} at the end; {allocator()}")
    print(f"forward agreement: max|jax - torch| / max|torch| = {err:.2e}")
    print(f"repeats: {args.repeats} alternated runs each; medians in s, wall (cpu = this process's CPU time, all "
          "threads; torch's OpenMP threads spin while they wait, which counts as CPU time)")
    for name, s in samples.items():
        print(f"  {name:18s} wall {wall[name]:.4f}  cpu {cpu[name]:.4f}   (wall runs: "
              f"{' '.join(f'{v:.3f}' for v in s.wall)})")
    print(f"jax_over_torch_forward: {wall['jax_forward'] / wall['torch_forward']:.3f}")
    print(f"jax_over_torch_train_step: {wall['jax_train_step'] / wall['torch_train_step']:.3f}")

if __name__ == "__main__":
    main()
