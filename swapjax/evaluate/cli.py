"""The evaluation command line: sample every case with `swapjax.sample`, score it, write the table and sheet.

    python -m swapjax.evaluate --config configs/swap_tiny.py --cases CASES --checkpoint CKPT --out DIR \
        [--set sample.num_steps=30] [--background-dilate N] [--identity-weights backbone.safetensors]

CASES is a folder or a JSON list (`swapjax/evaluate/cases.py`); CKPT is a finished training run's folder
(`runs/demo`: its `export/` and `vae/`) or another sampling checkpoint (`swapjax/sample/checkpoint.py`; `--vae`
for the two-folder layout); the trained VAE's latent statistics are read from it, not from the config; `--set` overrides the run config and, under
`sample.`, the sampler, as for `sample.py`. DIR receives `NAME.mp4` and `NAME_sheet.png` per case and
`metrics.csv`, `metrics.md`, `contact_sheet.png` (`swapjax/evaluate/report.py`); existing files are an error
unless `--overwrite`. `--identity-weights` adds `embedding_similarity` with an insightface IResNet the user
supplies (`.pth` needs `--allow-pickle`).

From Python, `evaluate(config, sample_cfg, cases, out, checkpoint, vae)` runs the same with a `Config` object and
returns the rows.

Exit codes: 0 when every case was scored; 1 when some case failed (each failure is one `error:` line on
stderr and a row with its error in the table; the other cases still run); 2 for bad arguments, config,
checkpoint, case list or output folder, reported in one `error:` line before any model work, nothing written.
"""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import sys
import time
from typing import Any, Sequence

from swapjax.cli_parser import OneLineParser
from swapjax.atomic import check_output
from swapjax.errors import ConfigError
from swapjax.errors import CheckpointError
from swapjax.errors import InputError
from swapjax.evaluate import report
from swapjax.evaluate.cases import Cases, read_cases

PROG = "python -m swapjax.evaluate"
TILE = 128  # contact-sheet tile side in pixels



def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = OneLineParser(prog=PROG, description="Sample and score swap cases with a swapjax checkpoint.")
    p.add_argument("--cases", required=True, help="folder of cases or a JSON list of them")
    p.add_argument("--checkpoint", required=True, help="a finished training run's folder (its export/ and vae/), "
                   "a folder with dit/ and vae/, or a converted swap model (with --vae)")
    p.add_argument("--out", required=True, help="output folder for the videos, the table and the sheet")
    p.add_argument("--config", required=True, help="run config, e.g. configs/swap_tiny.py")
    p.add_argument("--vae", help="converted VAE folder (when --checkpoint is the swap model alone)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, repeatable (sample.* for the sampler)")
    p.add_argument("--background-dilate", type=int, metavar="N",
                   help="background scores ignore pixels within N of the regenerated region (default: the "
                        "composite's dilation)")
    p.add_argument("--identity-weights", help="insightface IResNet weights for embedding_similarity")
    p.add_argument("--allow-pickle", action="store_true", help="allow .pth (pickle) identity weights")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.background_dilate is not None and args.background_dilate < 0:
        p.error(f"--background-dilate {args.background_dilate} must be >= 0 (pixels)")
    return args


def _say(message: str) -> None:
    """One `error:` line on stderr (a message listing items on further lines is folded into it)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    print("error: " + "; ".join(lines), file=sys.stderr)


def _failed(name: str, error: str) -> dict[str, Any]:
    return {"name": name, "status": "failed", "error": error}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the evaluation; returns the exit code (see the module docstring)."""
    args = parse_args(argv)
    from swapjax.sample.cli import load_configs  # after the argument checks: this imports the models

    try:
        config, sample_cfg = load_configs(args.config, args.overrides)
        rows = evaluate(config, sample_cfg, args.cases, args.out, args.checkpoint, args.vae,
                        background_dilate=args.background_dilate, identity_weights=args.identity_weights,
                        allow_pickle=args.allow_pickle, overwrite=args.overwrite, quiet=args.quiet)
    except (InputError, ConfigError, CheckpointError) as err:
        _say(str(err))
        return 2
    return 0 if all(r["status"] == "ok" for r in rows) else 1


def evaluate(config, sample_cfg, cases_path: str | pathlib.Path, out: str | pathlib.Path,
             checkpoint_path: str | pathlib.Path, vae: str | pathlib.Path | None = None, *,
             background_dilate: int | None = None, identity_weights: str | None = None, allow_pickle: bool = False,
             overwrite: bool = False, quiet: bool = False) -> list[dict[str, Any]]:
    """The evaluation from Python: samples and scores every case of `cases_path` with the checkpoint under
    `config` (a `swapjax.config.Config`) and `sample_cfg` (a `SampleConfig`), writes the files into `out` and
    prints the table; returns the rows in case order. Bad cases, outputs, checkpoint or identity weights raise
    `InputError` / `ConfigError` / `CheckpointError` before any model work (nothing written); afterwards a case
    that fails is a row with status "failed" and its error."""
    from swapjax.sample import checkpoint  # these import the models
    from swapjax.sample.pipeline import composite_radii

    out_dir = pathlib.Path(out)
    if quiet:
        sample_cfg = sample_cfg.replace(progress=False)
    cases = read_cases(cases_path, out_dir)
    for name in (report.CSV_NAME, report.MARKDOWN_NAME, report.SHEET_NAME):
        check_output(out_dir / name, flag="--out", replace=overwrite)
    checkpoint.check_against_config(config, *checkpoint.resolve(checkpoint_path, vae,
                                                                 vae_init=config.train.vae_init))
    embed = None
    if identity_weights:
        from swapjax.evaluate.embedder import identity_embedder

        embed = identity_embedder(identity_weights, allow_pickle=allow_pickle)
    dilate = composite_radii(sample_cfg, config.data.mask)[0]
    settings = dict(background_dilate=dilate if background_dilate is None else background_dilate, embed=embed)
    rows, runnable = _precheck(cases, config.dit.text_dim, overwrite)
    tiles: list[tuple[str, Any]] = []
    if runnable:
        where = dict(checkpoint=checkpoint_path, vae=vae, overwrite=overwrite, quiet=quiet)
        scored = _run(config, sample_cfg, where, cases, [job for _, job in runnable], settings, tiles)
        rows.update({i: row for (i, _), row in zip(runnable, scored)})
    ordered = [rows[i] for i in sorted(rows)]
    for path in report.write_report(out_dir, ordered, tiles, TILE):
        print(f"wrote {path}")
    print(report.markdown_text(ordered), end="")
    return ordered


def _precheck(cases: Cases, text_dim: int, overwrite: bool) -> tuple[dict[int, dict[str, Any]], list]:
    """Checks every case's inputs and outputs before the model loads: (failed rows by position, runnable
    `(position, job)` pairs). Each failure is printed as one `error:` line."""
    from swapjax.sample import outputs

    rows, runnable, seen = {}, [], {}
    for i, job in enumerate(cases.items):
        if isinstance(job, InputError):
            rows[i] = _failed(f"case{i}", str(job))
            _say(rows[i]["error"])
            continue
        try:
            if job.out in seen:
                raise InputError(f"its result {str(job.out)!r} is also case {seen[job.out]!r}'s: rename one")
            outputs.check_outputs(job.out, overwrite=overwrite)
            cases.read(job, text_dim)
        except InputError as err:
            rows[i] = _failed(job.name, f"case {job.name!r}: {err}")
            _say(rows[i]["error"])
            continue
        seen[job.out] = job.name
        runnable.append((i, job))
    return rows, runnable


def _run(config, sample_cfg, where: dict[str, Any], cases: Cases, jobs: list, settings: dict[str, Any],
         tiles: list) -> list[dict[str, Any]]:
    """Loads the model once (`where`: checkpoint, vae, overwrite, quiet) and samples, writes and scores each job;
    returns one row per job, in order."""
    import jax
    from tqdm import tqdm

    from swapjax.evaluate.baseline import vae_reconstruction
    from swapjax.evaluate.scores import contact_row, score_case
    from swapjax.parallel import make_mesh
    from swapjax.sample import checkpoint, outputs
    from swapjax.sample import jobs as job_lib
    from swapjax.sample.engine import Engine
    from swapjax.sample.pipeline import swap_video

    mesh = None if jax.device_count() == 1 else make_mesh(config.mesh)
    models = checkpoint.load_models(config, where["checkpoint"], where["vae"], mesh=mesh)
    engine = Engine(models, sample_cfg, mesh=mesh)

    def work(job) -> dict[str, Any]:
        start = time.perf_counter()
        outputs.check_outputs(job.out, overwrite=where["overwrite"])
        inputs = cases.read(job, config.dit.text_dim)
        result = swap_video(engine, inputs, sample_cfg, config.data.mask, guidance=job.guidance_scale,
                            text_guidance=job.text_guidance_scale, seed=job.seed, ref_size=config.data.ref_size)
        outputs.write_outputs(job.out, inputs, result, sheet_rows=sample_cfg.sheet_frames)
        reconstruction = vae_reconstruction(engine, inputs, sample_cfg)
        row = score_case(inputs, result, job.out, reconstruction=reconstruction, **settings)
        tiles.append((job.name, contact_row(inputs, result, TILE)))
        return {"name": job.name, "status": "ok", "seconds": time.perf_counter() - start, **row}

    def say(outcome) -> None:
        if outcome.error is not None:
            _say(outcome.error)

    progress = tqdm(jobs, desc="cases", unit="case", disable=where["quiet"], file=sys.stderr)
    with jax.set_mesh(mesh) if mesh is not None else contextlib.nullcontext():
        outcomes = job_lib.run(progress, work, say)
    return [o.report if o.error is None else _failed(o.job.name, o.error) for o in outcomes]
