"""`python -m swapjax.scaling`: train a sweep's grid, then write its CSV, fitted power law and plot.

    python -m swapjax.scaling --sweep configs/sweeps/tiny.py --out runs/scaling_tiny

Writes `OUT/results.csv` (one row per run: width, depth, parameters, analytic FLOPs per step, steps, total
FLOPs, budget, final loss, seconds), `OUT/fit.txt` (the power law of the compute-efficient frontier) and
`OUT/loss_vs_compute.png`. Runs live in `OUT/runs/<name>/`; running the command again resumes an interrupted
sweep. Exit codes: 0 done, 2 bad input (one line).
"""

from __future__ import annotations

import csv
import io
import pathlib
from typing import Sequence

from swapjax.atomic import atomic_write
from swapjax.cli_parser import OneLineParser
from swapjax.entry import EXIT_OK, run_main
from swapjax.errors import ConfigError


def write_csv(path: pathlib.Path, rows: list[dict], fields: Sequence[str]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields))
    writer.writeheader()
    writer.writerows(rows)
    with atomic_write(path) as tmp:
        tmp.write_text(buffer.getvalue())


def use_compile_cache(folder: pathlib.Path) -> None:
    """Every compile of this process goes through JAX's persistent cache in `folder`: the runs of a sweep share
    the programs that do not depend on the model size (the VAE encoding of the batch, the VAE's initialisation),
    and a resumed sweep recompiles nothing."""
    import jax

    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m swapjax.scaling", description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", required=True, help="a configs/sweeps/*.py file whose get_sweep() returns a "
                        "SweepConfig")
    parser.add_argument("--out", default=None, help="output folder (default runs/scaling_<sweep name>)")
    parser.add_argument("--compile-cache", default=None, help="JAX's persistent compilation cache folder, shared "
                        "by the runs (default OUT/jax_cache; 'off' disables it)")
    args = parser.parse_args(argv)
    return run_main(lambda: _run(args), creates=[args.out])


def _run(args) -> int:
    from swapjax.scaling.config import load_sweep
    from swapjax.scaling.runs import plan_runs

    sweep, base = load_sweep(args.sweep)
    runs, skipped = plan_runs(sweep, base)
    if len({r.budget for r in runs}) < 2:
        raise ConfigError(f"--sweep {args.sweep!r}: fewer than two budgets have a run within [min_steps, "
                          f"max_steps] ({len(skipped)} skipped); widen the budgets or the step limits")
    out = pathlib.Path(args.out or f"runs/scaling_{sweep.name}")
    out.mkdir(parents=True, exist_ok=True)
    if args.compile_cache != "off":
        use_compile_cache(pathlib.Path(args.compile_cache or out / "jax_cache"))
    for line in skipped:
        print(line, flush=True)
    rows = _train(runs, out, sweep.loss_tail)
    _write_results(out, rows, sweep.name)
    return EXIT_OK


def _train(runs: list, out: pathlib.Path, loss_tail: float) -> list[dict]:
    from swapjax.scaling.runs import execute

    rows = []
    for i, run in enumerate(runs, 1):
        print(f"run {i}/{len(runs)} {run.name}: {run.params:,} parameters, {run.steps} steps x "
              f"{run.flops_per_step:.3g} FLOPs", flush=True)
        rows.append(execute(run, out, loss_tail))
        print(f"run {i}/{len(runs)} {run.name}: final loss {rows[-1]['final_loss']:.4f} "
              f"({rows[-1]['seconds']:.0f} s)", flush=True)
    return rows


def _write_results(out: pathlib.Path, rows: list[dict], name: str) -> None:
    from swapjax.scaling.fit import fit_power_law, frontier
    from swapjax.scaling.plot import plot_sweep
    from swapjax.scaling.runs import FIELDS

    write_csv(out / "results.csv", rows, FIELDS)
    compute, loss = frontier([r["flops"] for r in rows], [r["budget"] for r in rows], [r["final_loss"] for r in rows])
    law = fit_power_law(compute, loss)
    with atomic_write(out / "fit.txt") as tmp:
        tmp.write_text(law.describe() + "\n")
    groups = [f"{r['params'] / 1e3:,.0f}k params (w{r['width']} d{r['depth']})" for r in rows]
    plot_sweep(out / "loss_vs_compute.png", [r["flops"] for r in rows], [r["final_loss"] for r in rows], groups,
               law, f"{name}: final loss vs training compute")
    print(f"{law.describe()}\nwrote {out / 'results.csv'}, {out / 'fit.txt'}, {out / 'loss_vs_compute.png'}")
