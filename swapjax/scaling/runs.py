"""The sweep's runs: one `swapjax.train.train` run per (width, depth, budget), and their results.

Each run is an ordinary training run of the base config with the model resized and `train.steps` set to what
its budget buys (budget / analytic FLOPs per step, rounded); it lives in `OUT/runs/<name>/`, so an interrupted
sweep resumes where it stopped (a finished run left `sweep_result.json` and is not trained again). Its final
loss is the mean training loss over the last `loss_tail` share of its steps, read from the run's `metrics.jsonl`.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time

import numpy as np

from swapjax.atomic import atomic_write
from swapjax.config import Config, load_config
from swapjax.models.dit import param_count
from swapjax.models.swap import abstract_swap
from swapjax.models.swap_flops import swap_train_flops, token_counts
from swapjax.scaling.config import SweepConfig
from swapjax.train.writers import read_metrics

FIELDS = ("name", "heads", "head_dim", "width", "depth", "params", "flops_per_step", "steps", "flops", "budget",
          "final_loss", "seconds")


@dataclasses.dataclass(frozen=True)
class Run:
    """One point of the grid (everything but its outcome)."""

    name: str
    heads: int
    head_dim: int
    depth: int
    budget: float
    config: Config
    params: int
    flops_per_step: float
    steps: int

    @property
    def width(self) -> int:
        return self.heads * self.head_dim

    @property
    def flops(self) -> float:
        return self.steps * self.flops_per_step


def model_overrides(sweep: SweepConfig, heads: int, depth: int, i2v: bool) -> list[str]:
    """Overrides that resize the base config's DiT to `heads x head_dim`, `depth` layers."""
    width = heads * sweep.head_dim
    out = [f"dit.num_heads={heads}", f"dit.head_dim={sweep.head_dim}", f"dit.num_layers={depth}",
           f"dit.ffn_dim={max(1, round(sweep.ffn_mult * width))}"]
    if i2v:
        out.append(f"dit.added_kv_proj_dim={width}")  # I2V models read image tokens at model width
    return out


def flops_per_step(config: Config) -> float:
    """Analytic matmul FLOPs of one train step of `config` (its global batch)."""
    data = config.data
    tokens = token_counts(config.dit, config.swap, frames=data.num_frames, height=data.height, width=data.width,
                          text=config.train.text_len)
    return swap_train_flops(config.dit, data.batch_size, tokens)


def plan_runs(sweep: SweepConfig, base: pathlib.Path) -> tuple[list[Run], list[str]]:
    """The grid's runs in order (smallest model and budget first) and a line per skipped pair."""
    i2v = load_config(base, sweep.overrides).dit.is_i2v
    runs, skipped = [], []
    for heads in sorted(sweep.heads):
        for depth in sorted(sweep.depths):
            sized = load_config(base, list(sweep.overrides) + model_overrides(sweep, heads, depth, i2v))
            per_step = flops_per_step(sized)
            params = param_count(abstract_swap(sized.dit, sized.swap)[1])
            for budget in sorted(sweep.budgets):
                steps = round(budget / per_step)
                name = f"w{heads * sweep.head_dim}_d{depth}_c{budget:.2e}".replace("+", "")
                if not sweep.min_steps <= steps <= sweep.max_steps:
                    skipped.append(f"{name}: {params:,} parameters, {per_step:.3g} FLOPs per step, budget {budget:.3g} "
                                   f"buys {steps} steps, outside [{sweep.min_steps}, {sweep.max_steps}]: skipped")
                    continue
                train = dataclasses.replace(sized.train, steps=steps, checkpoint_every=steps, log_every=1,
                                            progress=False)
                config = sized.replace(name=f"{sweep.name}-{name}", train=train)
                runs.append(Run(name, heads, sweep.head_dim, depth, budget, config, params, per_step, steps))
    return runs, skipped


def final_loss(workdir: pathlib.Path, steps: int, tail: float) -> float:
    """Mean training loss over the last `ceil(tail * steps)` steps of a finished run."""
    metrics = read_metrics(workdir / "metrics.jsonl")
    last = max(1, int(np.ceil(tail * steps)))
    losses = [float(metrics[s]["loss"]) for s in range(steps - last + 1, steps + 1) if s in metrics]
    if len(losses) != last:
        raise RuntimeError(f"run {workdir} logged {len(losses)} of its last {last} steps: train it again (delete the "
                           "folder) so every step is logged")
    return float(np.mean(losses))


RESULT_FILE = "sweep_result.json"


def execute(run: Run, out: pathlib.Path, tail: float) -> dict:
    """Trains `run` in `out/runs/<name>` (resuming if interrupted) -> its CSV row, also kept in the run's folder
    (`sweep_result.json`), so a sweep that runs again reuses finished runs."""
    from swapjax.train import train

    workdir = out / "runs" / run.name
    saved = workdir / RESULT_FILE
    if saved.is_file():
        return json.loads(saved.read_text())
    tick = time.perf_counter()
    outcome = train(run.config, workdir)
    if outcome.status != "done":
        raise RuntimeError(f"run {run.name} ended {outcome.status!r} at step {outcome.step}: {outcome.message}")
    row = {"name": run.name, "heads": run.heads, "head_dim": run.head_dim, "width": run.width, "depth": run.depth,
           "params": run.params, "flops_per_step": run.flops_per_step, "steps": run.steps, "flops": run.flops,
           "budget": run.budget, "final_loss": final_loss(workdir, run.steps, tail),
           "seconds": round(time.perf_counter() - tick, 1)}
    with atomic_write(saved) as tmp:
        tmp.write_text(json.dumps(row))
    return row
