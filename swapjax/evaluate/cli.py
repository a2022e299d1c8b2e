"""The evaluation command line: sample every case with `swapjax.sample`, score it, write the table and sheet.

    python -m swapjax.evaluate --config configs/swap_tiny.py --cases CASES --checkpoint CKPT --out DIR \
        [--set sample.sampler.num_steps=30] [--background-dilate N] [--identity-weights backbone.safetensors]

CASES is a folder or a JSON list (`swapjax/evaluate/cases.py`); CKPT is a finished training run's folder
(`runs/demo`: its `export/` and `vae/`) or another sampling checkpoint (`swapjax/sample/checkpoint.py`; `--vae`
for the two-folder layout); the trained VAE's latent statistics are read from it, not from the config; `--set` overrides the run config and, under
`sample.`, the sampling, as for `sample.py`. DIR receives `NAME.mp4` and `NAME_sheet.png` per case and
`metrics.csv`, `metrics.md`, `contact_sheet.png` (and `contact_sheet_SET.png` per set of cases labelled with one,
`swapjax/evaluate/report.py`); existing files are an error
unless `--overwrite`. `--identity-weights` adds `embedding_similarity` with an insightface IResNet the user
supplies (`.pth` needs `--allow-pickle`).

From Python, `evaluate(config, cases, out, ModelSource(checkpoint=...))` runs the same with a `Config` object
and returns the rows. Sampling is `swapjax.sample.runner`'s, the runner `sample.py` uses: this module only adds
the scores of each swapped case (`CaseScorer`) and the report.

Exit codes: 0 when every case was scored; 1 when some case failed (each failure is one `error:` line on
stderr and a row with its error in the table; the other cases still run); 2 for bad arguments, config,
checkpoint, case list or output folder, or when no case could run, reported in `error:` lines before any model
work, nothing written (an `--out` folder the run created is removed).
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import time
from typing import Any, Callable, Sequence

from swapjax.cli_parser import OneLineParser
from swapjax.entry import add_set_argument, run_main, say
from swapjax.errors import InputError

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
    add_set_argument(p, help="config overrides, e.g. sample.sampler.num_steps=30 (as for sample.py)")
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


@dataclasses.dataclass(frozen=True)
class Scoring:
    """How cases are scored beyond the defaults: `background_dilate` (None: the composite's dilation) and the
    identity embedder's weights for `embedding_similarity` (`.pth` needs `allow_pickle`)."""

    background_dilate: int | None = None
    identity_weights: str | None = None
    allow_pickle: bool = False


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the evaluation; returns the exit code (see the module docstring)."""
    args = parse_args(argv)
    return run_main(lambda: _run(args), creates=[args.out])


def _run(args: argparse.Namespace) -> int:
    from swapjax.sample.runner import ModelSource, load_run_config  # after the argument checks: imports the models

    config = load_run_config(args.config, args.overrides, quiet=args.quiet)
    rows = evaluate(config, args.cases, args.out, ModelSource(checkpoint=args.checkpoint, vae=args.vae),
                    scoring=Scoring(args.background_dilate, args.identity_weights, args.allow_pickle),
                    overwrite=args.overwrite)
    return 0 if all(r["status"] == "ok" for r in rows) else 1


def evaluate(config, cases_path: str | pathlib.Path, out: str | pathlib.Path, source, *,
             scoring: Scoring = Scoring(), overwrite: bool = False) -> list[dict[str, Any]]:
    """The evaluation from Python: samples (`swapjax.sample.runner`, from `source`, a `ModelSource`) and scores
    every case of `cases_path` under `config` (its `sample` section sets the sampler), writes the files into `out`
    and prints the table; returns the rows in case order. Bad cases, outputs, checkpoint or identity weights
    raise `InputError` / `ConfigError` / `CheckpointError` before any model work (nothing written), as does a
    list none of whose cases can run; afterwards a case that fails is a row with status "failed" and its error."""
    from swapjax.evaluate import report
    from swapjax.evaluate.cases import read_cases
    from swapjax.sample.jobs import Job
    from swapjax.sample.outputs import check_new
    from swapjax.sample.runner import Runner

    out_dir = pathlib.Path(out)
    cases = read_cases(cases_path, out_dir)
    for name in report.output_names():
        check_new(out_dir / name, flag="--out", overwrite=overwrite)
    runner = Runner(config, source, overwrite=overwrite, kind="case")
    runner.check()
    scorer = CaseScorer.build(config, scoring)
    checked = runner.precheck(cases)
    rows = {i: _failed(c.subject.name if c.subject else f"case{i}", c.message, c.subject)
            for i, c in enumerate(checked) if not isinstance(c, Job)}
    for i in sorted(rows):
        say(rows[i]["error"])
    runnable = [(i, c) for i, c in enumerate(checked) if isinstance(c, Job)]
    if not runnable:
        raise InputError(f"none of the {len(checked)} cases of --cases {str(cases_path)!r} can run (each is "
                         "reported above): fix them")
    outcomes = runner.run([job for _, job in runnable], on_result=scorer, on_outcome=_say_failure,
                          progress=config.sample.progress)
    rows.update({i: o.report if o.ok else _failed(job.name, o.message, job) for (i, job), o in zip(runnable, outcomes)})
    ordered = [rows[i] for i in sorted(rows)]
    for path in report.write_report(out_dir, ordered, scorer.tiles, TILE):
        print(f"wrote {path}")
    print(report.markdown_text(ordered), end="")
    return ordered


@dataclasses.dataclass(frozen=True)
class CaseScorer:
    """The runner's per-job callback for evaluation: the VAE baseline and the scores of one swapped case as a
    table row with the case's labels (`cases.case_extras`, whose exact subject mask and subject reference the
    scores read); each case's contact-sheet row is kept in `tiles` as (name, uint8 `[TILE, 5 * TILE, 3]`)."""

    background_dilate: int
    embed: Callable[[Any], Any] | None
    tiles: list = dataclasses.field(default_factory=list)

    @classmethod
    def build(cls, config, scoring: Scoring) -> "CaseScorer":
        from swapjax.sample.pipeline import composite_radii

        embed = None
        if scoring.identity_weights:
            from swapjax.evaluate.embedder import identity_embedder

            embed = identity_embedder(scoring.identity_weights, allow_pickle=scoring.allow_pickle)
        dilate = scoring.background_dilate
        return cls(composite_radii(config.sample, config.data.mask)[0] if dilate is None else dilate, embed)

    def __call__(self, swapped) -> dict[str, Any]:
        from swapjax.evaluate.baseline import vae_reconstruction
        from swapjax.evaluate.cases import case_extras
        from swapjax.evaluate.scores import contact_row, score_case

        inputs, result = swapped.inputs, swapped.result
        extras = case_extras(swapped.job)
        extras.check(inputs.video.shape, swapped.job.name)
        reconstruction = vae_reconstruction(swapped.engine, inputs, swapped.engine.cfg)
        row = score_case(inputs, result, swapped.job.out, background_dilate=self.background_dilate,
                         embed=self.embed, reconstruction=reconstruction, subject_mask=extras.subject_mask,
                         subject_reference=extras.subject_reference)
        self.tiles.append((swapped.job.name, contact_row(inputs, result, TILE)))
        return {"name": swapped.job.name, "status": "ok", **extras.labels,
                "seconds": time.perf_counter() - swapped.started, **row}


def _failed(name: str, error: str, job=None) -> dict[str, Any]:
    """The row of a case that failed: its name, labels (when its NPZ has them) and error."""
    from swapjax.evaluate.cases import case_labels
    from swapjax.sample.jobs import Job

    return {"name": name, "status": "failed", **case_labels(job if isinstance(job, Job) else None), "error": error}


def _say_failure(outcome) -> None:
    if not outcome.ok:
        say(outcome.message)
