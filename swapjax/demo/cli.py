"""`python -m swapjax.demo --workdir runs/demo`: the README's first command, the whole from-scratch demo.

    python -m swapjax.demo --workdir runs/demo [--preset default | full | --config CONFIG] [--pairs 20]
                           [--set key=value ...]

1. train (`swapjax.train.train`): the VAE stage, then the swap DiT stage, both from scratch on the embedded
   synthetic data (without the config's `data.held_out_families`); `WORKDIR/vae` and `WORKDIR/export` are the
   trained models. Running the command again resumes an interrupted run and skips finished stages.
2. cases (`cases.py`): `--pairs` synthetic swap pairs with ground truth *per set* -> `WORKDIR/cases/*.npz`:
   `heldout_*` from the held-out families (when the config names some) and `infamily_*` from the families
   training draws, each with a user-style mask and reference framing (default 20 + 20: the goals ask for 20
   pairs per set; evaluation time grows with the pairs).
3. evaluate (`swapjax.evaluate.cli.evaluate` on the sampling runner `sample.py` uses, the sampler settings of
   the config's `sample` section):
   `WORKDIR/eval/` receives one MP4 and PNG sheet per case, `metrics.csv`, `metrics.md` (a mean row per set),
   `contact_sheet.png` (all pairs, worst first) and `contact_sheet_heldout.png` / `contact_sheet_infamily.png`.
4. goals (`goals.py`): the headline figures per set (held-out families first) with PASS / FAIL per goal,
   printed and written to `WORKDIR/eval/goals.md`, with the time each phase took.

Exit codes: 0 the demo ran to the end (the table says which goals were met); 1 training stopped (non-finite
steps), or with `--strict` some goal was missed; 2 bad input (one `error:` line naming it; a `--workdir` this
run created is removed).
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
import time
from typing import Sequence

from swapjax.cli_parser import OneLineParser
from swapjax.entry import add_set_argument, run_main

PROG = "python -m swapjax.demo"
CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"
DEFAULT_CONFIG = CONFIGS / "demo.py"
PRESETS = {"default": DEFAULT_CONFIG, "full": CONFIGS / "demo_full.py"}  # --preset NAME -> its config


def parse_args(argv: Sequence[str] | None = None):
    p = OneLineParser(prog=PROG, description="Train a swap model from scratch on synthetic data, then swap "
                                             "held-out clips and score the result.")
    p.add_argument("--workdir", required=True, help="folder for the models, the cases and the evaluation")
    p.add_argument("--config", default=None, help="run config (default: the preset's, configs/demo.py)")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="default: configs/demo.py (about 20 min on 2 cores); full: configs/demo_full.py (longer "
                        "training, about 90 min)")
    p.add_argument("--pairs", type=int, default=20, help="swap pairs to evaluate per set: held-out families (when "
                   "the config names some) and in family (default 20 each)")
    add_set_argument(p, help="config overrides, e.g. --set train.steps=100 sample.sampler.num_steps=8")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed (default: report it, exit 0)")
    args = p.parse_args(argv)
    if args.pairs < 1:
        p.error(f"--pairs {args.pairs} must be >= 1")
    if args.config is not None and args.preset is not None:
        p.error(f"--config {args.config} and --preset {args.preset} both choose the config: give one of them")
    args.config = args.config or str(PRESETS[args.preset or "default"])
    return args


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:04.1f} s"


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the demo (see the module docstring); returns the exit code."""
    args = parse_args(argv)
    return run_main(lambda: _run(args), creates=[args.workdir])


def _run(args) -> int:
    from swapjax.config import load_config
    from swapjax.demo.cases import write_cases
    from swapjax.errors import ConfigError
    from swapjax.evaluate.cli import evaluate
    from swapjax.sample.runner import ModelSource
    from swapjax.train import train

    workdir = pathlib.Path(args.workdir).absolute()
    times: dict[str, float] = {}
    config = load_config(args.config, args.overrides)
    if config.train.vae_steps == 0 and config.train.vae_init is None:
        raise ConfigError("the demo needs a VAE: set train.vae_steps to a positive number of steps (train one) "
                          "or train.vae_init to a converted VAE folder")
    if args.quiet:
        config = config.replace(train=dataclasses.replace(config.train, progress=False),
                                sample=config.sample.replace(progress=False))
    start = time.perf_counter()
    outcome = train(config, workdir)
    times["train (VAE + swap DiT)"] = time.perf_counter() - start
    if outcome.status != "done":
        print(f"{PROG}: training stopped ({outcome.status}): {outcome.message}", file=sys.stderr)
        return 1
    start = time.perf_counter()
    write_cases(config.data, config.seed, args.pairs, workdir / "cases")
    times["swap cases"] = time.perf_counter() - start
    # The run's VAE (trained here, or `train.vae_init` used frozen); the runner reads its latent statistics.
    vae_dir = workdir / "vae" if config.train.vae_steps > 0 else pathlib.Path(config.train.vae_init)
    start = time.perf_counter()
    rows = evaluate(config, workdir / "cases", workdir / "eval", ModelSource(workdir / "export", vae_dir),
                    overwrite=True)
    times["evaluation (sampling + scores)"] = time.perf_counter() - start
    return _report(args, workdir, rows, times)


def _report(args, workdir: pathlib.Path, rows: list, times: dict[str, float]) -> int:
    """Prints the goals and the run times and writes them to `WORKDIR/eval/goals.md`; the exit code."""
    from swapjax.atomic import atomic_write
    from swapjax.demo.goals import all_passed, check_sets, goals_text
    from swapjax.evaluate.cases import SET_TITLES

    sets = check_sets(rows)
    note = "" if "heldout" in sets else ("No held-out families: the config's data.held_out_families is empty, so "
                                         "only in-family pairs were scored.\n\n")
    counts = ", ".join(f"{sum((r.get('set') or 'infamily') == s for r in rows)} {SET_TITLES.get(s, s)}" for s in sets)
    timing = "\n".join(f"- {name}: {_minutes(seconds)}" for name, seconds in times.items())
    text = (f"{note}{goals_text(sets)}\nRun times ({len(rows)} pairs: {counts}):\n{timing}\n"
            f"- total: {_minutes(sum(times.values()))}\n")
    with atomic_write(workdir / "eval" / "goals.md") as tmp:
        tmp.write_text(text, encoding="utf-8")
    print(f"\n{text}\nfiles: {workdir / 'eval'} (contact_sheet.png and one per set, worst first; metrics.md; "
          "one MP4 per pair)")
    passed = all_passed(sets)
    print("all goals met" if passed else "some goals were missed (FAIL above)")
    return 0 if passed or not args.strict else 1
