"""The one sampling runner: `python sample.py`, `python -m swapjax.evaluate` and the demo (through evaluate) all
sample through it, and differ only in what they do with each swapped job.

    config = load_run_config("configs/swap_tiny.py", ["sample.sampler.num_steps=4"], quiet=True)
    runner = Runner(config, ModelSource(checkpoint="runs/demo"), overwrite=False)
    runner.check()                                  # the checkpoint against the config: no parameter is read
    checked = runner.precheck(jobs)                 # per job: the Job (runnable) or its failed Outcome
    outcomes = runner.run([j for j in checked if isinstance(j, Job)], on_result=score)

Order of work: the config, the model source against it (`check`), every job's outputs and inputs (`precheck`);
only then `run` encodes the pipeline's contexts (with `--pipeline`), loads the models once, builds the `Engine`
under the config's mesh and, per job, checks its outputs again, reads its inputs, swaps (`pipeline.swap_video`),
writes the video and its sheet (`outputs.write_outputs`) and calls `on_result(Swapped)`, whose dict becomes the
job's `Outcome.report` (default: the pipeline's report). An `InputError` fails that job only; a problem with
the config or the checkpoint (a truncated one included) is raised, for the entry point's `run_main`. The entry
points import this module after parsing their arguments (it imports jax and the models).
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
import sys
import time
from typing import Any, Callable, Sequence

from swapjax.config import Config, load_config
from swapjax.entry import Outcome, Status, say
from swapjax.errors import ConfigError, InputError, SwapjaxError
from swapjax.sample import checkpoint, outputs
from swapjax.sample.engine import Engine
from swapjax.sample.inputs import JobInputs
from swapjax.sample.jobs import Job
from swapjax.sample.pipeline import SwapResult, swap_video


def load_run_config(path: str | pathlib.Path, overrides: Sequence[str], *, quiet: bool = False) -> Config:
    """The run config with its `--set` overrides; without `mesh.` overrides every device goes on `sequence`
    (sampling's default mesh); `quiet` turns the sampler's progress bars off."""
    try:
        config = load_config(path, overrides)
    except SwapjaxError:
        raise
    except Exception as err:  # the user's get_config() raised: their file, reported in one line
        raise ConfigError(f"config file {str(path)!r}: get_config() raised {type(err).__name__}: {err}: fix the "
                          "config file") from err
    if not any(o.startswith("mesh.") for o in overrides):
        config = config.replace(mesh=dataclasses.replace(config.mesh, data=1, fsdp=1, tensor=1, sequence=-1))
    if quiet:
        config = config.replace(sample=config.sample.replace(progress=False))
    return config


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """Where the models come from: a sampling `checkpoint` (+ `vae`), or a converted `pipeline` whose encoders
    turn `prompt` / `negative_prompt` and each job's reference into contexts (`swapjax/sample/checkpoint.py`)."""

    checkpoint: str | pathlib.Path | None = None
    vae: str | pathlib.Path | None = None
    pipeline: str | pathlib.Path | None = None
    prompt: str | None = None
    negative_prompt: str = ""

    @property
    def root(self) -> str | pathlib.Path:
        return self.pipeline if self.pipeline is not None else self.checkpoint

    def check(self, config: Config) -> None:
        """Raises `InputError` / `CheckpointError` unless the source holds the models `config` describes."""
        if self.pipeline is None and (self.prompt is not None or self.negative_prompt):
            raise InputError("--prompt / --negative-prompt need --pipeline (the text encoder lives there); with "
                             "--checkpoint pass embeddings with --text")
        if self.pipeline is not None and self.vae is not None:
            raise InputError("--vae belongs to --checkpoint; a --pipeline folder holds its own vae/")
        if self.pipeline is not None:
            checkpoint.pipeline_parts(self.pipeline)
        checkpoint.check_against_config(config, *checkpoint.resolve(self.root, self.vae,
                                                                    vae_init=config.train.vae_init))


@dataclasses.dataclass(frozen=True)
class Swapped:
    """One job after sampling, handed to `on_result`: its inputs, the pipeline's result (already written to
    `job.out`), the engine (for further model work, e.g. the VAE baseline) and when the job started."""

    job: Job
    inputs: JobInputs
    result: SwapResult
    engine: Engine
    started: float


def print_outcome(outcome: Outcome) -> None:
    """sample.py's line per job: `error: ...` on stderr, or `wrote OUT (...)` with the report on stdout."""
    import json

    if not outcome.ok:
        say(outcome.message)
        return
    r = outcome.report
    seam = "n/a" if r["seam_ratio"] is None else f"{r['seam_ratio']:.3f}"
    print(f"wrote {outcome.subject.out} ({r['frames']} frames, model {r['model_hw'][0]}x{r['model_hw'][1]}"
          f"{', tunnel' if r['tunnel'] else ''}, {len(r['windows'])} window(s), seam ratio {seam}, colour drift "
          f"{r['colour_drift']:.2f}): {json.dumps(r)}")


@dataclasses.dataclass(frozen=True)
class Runner:
    """Samples jobs with one loaded model (see the module docstring). `kind` is the word for a job in messages
    ("job" for sample.py, "case" for evaluate); `overwrite` lets outputs replace existing files."""

    config: Config
    source: ModelSource
    overwrite: bool = False
    kind: str = "job"

    def check(self) -> None:
        self.source.check(self.config)

    def precheck(self, jobs: Sequence[Job | InputError]) -> list[Job | Outcome]:
        """Checks every job's outputs and inputs before any model work: per entry the `Job` when it can run, else
        its failed `Outcome` (an entry that was not a job, a bad input or output, a result another job writes)."""
        checked: list[Job | Outcome] = []
        seen: dict[pathlib.Path, str] = {}
        for job in jobs:
            if isinstance(job, InputError):
                checked.append(Outcome(Status.FAILED, str(job)))
                continue
            try:
                out = pathlib.Path(job.out).absolute()
                if out in seen:
                    raise InputError(f"its result {str(job.out)!r} is also {self.kind} {seen[out]!r}'s: rename one")
                outputs.check_outputs(job.out, overwrite=self.overwrite)
                job.read(self.config.dit.text_dim)
            except InputError as err:
                checked.append(self._failed(job, err))
                continue
            seen[out] = job.name
            checked.append(job)
        return checked

    def run(self, jobs: Sequence[Job], on_result: Callable[[Swapped], dict[str, Any]] | None = None,
            on_outcome: Callable[[Outcome], None] = print_outcome, progress: bool = False) -> list[Outcome]:
        """Loads the models once and swaps, writes and hands on every job (see the module docstring)."""
        from tqdm import tqdm

        mesh = _mesh(self.config)
        contexts = self._contexts(jobs) if self.source.pipeline is not None else None
        models = checkpoint.load_models(self.config, self.source.root, self.source.vae, mesh=mesh)
        engine = Engine(models, self.config.sample, mesh=mesh)
        bar = tqdm(jobs, desc=f"{self.kind}s", unit=self.kind, disable=not progress, file=sys.stderr)
        done = []
        with _use_mesh(mesh):
            for job in bar:
                done.append(self._one(job, engine, contexts, on_result))
                on_outcome(done[-1])
        return done

    def _one(self, job: Job, engine: Engine, contexts, on_result) -> Outcome:
        started = time.perf_counter()
        cfg = self.config.sample
        try:
            outputs.check_outputs(job.out, overwrite=self.overwrite)
            inputs = job.read(self.config.dit.text_dim)
            extra: dict[str, Any] = {}
            if contexts is not None:
                inputs, extra = contexts.apply(job, inputs)
            result = swap_video(engine, inputs, cfg, self.config.data.mask, guidance=job.guidance_scale,
                                text_guidance=job.text_guidance_scale, seed=job.seed,
                                ref_size=self.config.data.ref_size, **extra)
            outputs.write_outputs(job.out, inputs, result, sheet_rows=cfg.sheet_frames)
            swapped = Swapped(job, inputs, result, engine, started)
            report = result.report if on_result is None else on_result(swapped)
        except InputError as err:
            return self._failed(job, err)
        return Outcome(Status.DONE, report=report, subject=job)

    def _failed(self, job: Job, err: InputError) -> Outcome:
        return Outcome(Status.FAILED, f"{self.kind} {job.name!r}: {err}", subject=job)

    def _contexts(self, jobs: Sequence[Job]):
        """`--pipeline`: the prompt's and every job's reference contexts, encoded before the DiT loads."""
        from swapjax.data.reference import prepare_reference
        from swapjax.sample.contexts import encode_contexts

        def prepared(job: Job):  # uint8 [S, S, 3]: CLIP reads the reference as training's encodings do
            inputs = job.read(self.config.dit.text_dim)
            return prepare_reference(inputs.reference, inputs.reference_mask, size=self.config.data.ref_size,
                                     name=f"reference image of {inputs.name!r}")

        return encode_contexts(self.source.pipeline, jobs, prepared, prompt=self.source.prompt,
                               negative_prompt=self.source.negative_prompt, text_len=self.config.sample.text_len,
                               dit_cfg=self.config.dit)


def batch_exit_code(checked: Sequence[Job | Outcome], outcomes: Sequence[Outcome]) -> int:
    """The exit code of a batch: 2 when no job could run (every one was bad input), else `entry.exit_code`
    over every job (1 when any failed)."""
    from swapjax.entry import EXIT_BAD_INPUT, exit_code

    if not any(isinstance(c, Job) for c in checked):
        return EXIT_BAD_INPUT
    return exit_code([*(c for c in checked if isinstance(c, Outcome)), *outcomes])


def _mesh(config: Config):
    """The config's mesh with more than one device; None (plain single-device code) otherwise."""
    import jax

    from swapjax.parallel import make_mesh

    return None if jax.device_count() == 1 else make_mesh(config.mesh)


@contextlib.contextmanager
def _use_mesh(mesh):
    """`jax.set_mesh(mesh)` for the sampling itself (the models' activation constraints read it)."""
    import jax

    if mesh is None:
        yield
        return
    with jax.set_mesh(mesh):
        yield
