"""The sampling command line (`python sample.py`, see README "Sampling").

    python sample.py --config configs/swap_tiny.py --checkpoint CKPT \
        --video walk.mp4 --mask walk_mask.json --reference cat.png --out out/walk.mp4 [--set sample.num_steps=30]
    python sample.py ... --case case.npz --out out/case.mp4            # one NPZ: source, mask, reference
    python sample.py ... --jobs jobs.json                               # batch: a JSON job list
    python sample.py ... --batch clips/ --out-dir out/                  # batch: a folder
    python sample.py --config configs/swap_wan2_1_14b.py --pipeline converted/ --prompt "a tabby cat" ...

`--pipeline` (a folder from `python -m swapjax.convert --pipeline`) replaces `--checkpoint`: its umT5 encodes
`--prompt` (and `--negative-prompt`, the empty prompt by default, for the null guidance branch) and, for I2V-based
models, its CLIP encodes every job's reference; both run and are released before the DiT loads.

`--set key=value` overrides the run config (`dit.attention=cudnn`, `mesh.sequence=-1`) or, under `sample.`, the
`SampleConfig` (`sample.num_steps=30`, `sample.guidance_scale=4.5`). The checkpoint layouts (a finished run's
folder, `--checkpoint RUN`, among them) are documented in `swapjax/sample/checkpoint.py`; a trained VAE's latent
statistics are read from it, not from the config. Order of work: arguments and configs, outputs, the checkpoint's shapes, every
job's inputs; only then the model loads. Any problem there is one `error:` line and exit code 2 with nothing
written; in batch mode a bad job is one line and the others still run (exit 2 if any failed). With more than
one device, sampling runs under the config's mesh (default: every device on `sequence`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import pathlib
import sys
from typing import Any, Sequence

from swapjax.cli_parser import OneLineParser
from swapjax.config import Config, load_config
from swapjax.errors import ConfigError
from swapjax.errors import CheckpointError
from swapjax.errors import InputError
from swapjax.sample import jobs as job_lib
from swapjax.sample.config import SampleConfig

PROG = "python sample.py"



def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line of `sample.py` (see the module docstring)."""
    p = OneLineParser(prog=PROG, description="Swap the subject of videos with a swapjax swap model.")
    p.add_argument("--config", required=True, help="run config, e.g. configs/swap_tiny.py")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", help="a finished training run's folder (its export/ and vae/), a folder with "
                       "dit/ and vae/, or a converted swap model (with --vae)")
    model.add_argument("--pipeline", help="a converted pipeline (python -m swapjax.convert --pipeline): the swap "
                       "model, VAE and the text/image encoders that encode --prompt and each reference")
    p.add_argument("--vae", help="converted VAE folder (when --checkpoint is the swap model alone)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", help="source video: video file, frame folder, or .npz/.npy")
    src.add_argument("--case", help="one NPZ holding source, mask and reference (+ ground_truth)")
    src.add_argument("--jobs", help="JSON list of jobs (batch mode)")
    src.add_argument("--batch", help="folder of NAME.mp4 + NAME_mask.* + NAME_ref.png (batch mode)")
    p.add_argument("--mask", help="mask track: video, PNG folder, PNG, .npz/.npy or JSON box track")
    p.add_argument("--reference", help="reference image (RGBA: composited on grey, its alpha marks the subject)")
    p.add_argument("--reference-mask", help="the subject in the reference image: an image (white on black) or "
                   ".npy/.npz at its size (default: its alpha, else an automatic cut-out of a plain background)")
    p.add_argument("--condition", help="rendered condition video (pose / landmarks)")
    p.add_argument("--keypoints", help="JSON keypoint track, rendered as the condition video")
    p.add_argument("--text", help=".npy text-encoder embeddings [tokens, width]")
    p.add_argument("--prompt", help="with --pipeline: the prompt, encoded by its umT5 (a job's own text is kept)")
    p.add_argument("--negative-prompt", default="", help="with --pipeline: the null guidance branch's prompt "
                   "(default: the empty prompt)")
    p.add_argument("--fps", type=float, help="frame rate for frame folders and arrays (default 24)")
    p.add_argument("--out", help="result video (.mp4); the sheet goes to OUT_sheet.png")
    p.add_argument("--out-dir", help="output folder for --batch")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, repeatable (sample.* for the sampler)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def load_configs(path: str, overrides: Sequence[str]) -> tuple[Config, SampleConfig]:
    """The run config with its `--set` overrides applied, and its `sample` section."""
    config = load_config(path, overrides)
    if not any(o.startswith("mesh.") for o in overrides):
        config = config.replace(mesh=dataclasses.replace(config.mesh, data=1, fsdp=1, tensor=1, sequence=-1))
    return config, config.sample


def build_jobs(args: argparse.Namespace) -> list:
    """The job list: one job from the single-job flags, or the batch's."""
    single = ("mask", "reference", "reference_mask", "condition", "keypoints", "fps")
    if args.jobs or args.batch:
        used = [f"--{k.replace('_', '-')}" for k in (*single, "out", "text") if getattr(args, k) is not None]
        if used:
            raise InputError(f"{', '.join(used)} belong to single-job runs; in batch mode give them per job")
        if args.batch:
            if not args.out_dir:
                raise InputError("--batch needs --out-dir: the folder the results go to")
            return job_lib.jobs_from_folder(args.batch, args.out_dir)
        if args.out_dir:
            raise InputError("--out-dir belongs to --batch; a JSON job list names each job's \"out\"")
        return job_lib.jobs_from_json(args.jobs)
    if not args.out:
        raise InputError("--out is required: the path of the result video, e.g. out/result.mp4")
    if args.out_dir:
        raise InputError("--out-dir belongs to --batch; a single job writes --out")
    path = pathlib.Path(args.video or args.case)
    kw = dict(out=pathlib.Path(args.out), text=args.text and pathlib.Path(args.text), fps=args.fps)
    if args.case:
        own = ("mask", "reference", "reference_mask", "condition", "keypoints")
        used = [f"--{k.replace('_', '-')}" for k in own if getattr(args, k)]
        if used:
            raise InputError(f"--case holds its own mask and reference: drop {', '.join(used)}")
        return [job_lib.Job(name=path.stem, case=path, **kw)]
    missing = [f"--{k}" for k in ("mask", "reference") if not getattr(args, k)]
    if missing:
        raise InputError(f"--video needs {' and '.join(missing)}: the subject's mask track and the new subject's "
                         "image")
    return [job_lib.Job(name=path.stem, video=path, mask=pathlib.Path(args.mask),
                        reference=pathlib.Path(args.reference),
                        reference_mask=args.reference_mask and pathlib.Path(args.reference_mask),
                        condition=args.condition and pathlib.Path(args.condition),
                        keypoints=args.keypoints and pathlib.Path(args.keypoints), **kw)]


def _say(message: str) -> None:
    """One `error:` line on stderr; a message listing items on further lines (checkpoint mismatches) is folded."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    print("error: " + " ".join(lines[:1] + ["; ".join(lines[1:])] if len(lines) > 1 else lines), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns 0 when every job was written, 2 on bad input (one `error:` line each)."""
    return run(parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Everything after parsing (see the module docstring)."""
    from swapjax.sample import checkpoint, outputs  # after the argument checks: these import the models

    try:
        config, sample_cfg = load_configs(args.config, args.overrides)
        if args.quiet:
            sample_cfg = sample_cfg.replace(progress=False)
        jobs = build_jobs(args)
        if args.pipeline is None and (args.prompt is not None or args.negative_prompt):
            raise InputError("--prompt / --negative-prompt need --pipeline (the text encoder lives there); with "
                             "--checkpoint pass embeddings with --text")
        if args.pipeline is not None and args.vae is not None:
            raise InputError("--vae belongs to --checkpoint; a --pipeline folder holds its own vae/")
        root = args.pipeline or args.checkpoint
        if args.pipeline is not None:
            checkpoint.pipeline_parts(args.pipeline)
        ckpt = checkpoint.resolve(root, args.vae, vae_init=config.train.vae_init)
        checkpoint.check_against_config(config, *ckpt)
    except (InputError, ConfigError, CheckpointError) as err:
        _say(str(err))
        return 2

    text_dim = config.dit.text_dim

    def check(job: job_lib.Job) -> None:
        outputs.check_outputs(job.out, overwrite=args.overwrite)
        job.read(text_dim)

    runnable, failed = job_lib.precheck(jobs, check)
    for outcome in failed:
        _say(outcome.error)
    if not runnable:
        return 2
    try:
        from swapjax.sample.engine import Engine
        from swapjax.sample.pipeline import swap_video

        mesh = _mesh(config)
        contexts = None
        if args.pipeline is not None:  # the encoders run (and are released) before the DiT loads
            from swapjax.sample.contexts import encode_contexts

            from swapjax.data.reference import prepare_reference

            def prepared(job) -> Any:  # uint8 [S, S, 3]: CLIP reads the reference as training's encodings do
                inputs = job.read(text_dim)
                return prepare_reference(inputs.reference, inputs.reference_mask, size=config.data.ref_size,
                                         name=f"reference image of {inputs.name!r}")

            contexts = encode_contexts(args.pipeline, runnable, prepared,
                                       prompt=args.prompt, negative_prompt=args.negative_prompt,
                                       text_len=sample_cfg.text_len, dit_cfg=config.dit)
        models = checkpoint.load_models(config, root, args.vae, mesh=mesh)  # built abstractly: no mesh set
        engine = Engine(models, sample_cfg, mesh=mesh)

        def work(job: job_lib.Job) -> dict[str, Any]:
            outputs.check_outputs(job.out, overwrite=args.overwrite)
            inputs = job.read(text_dim)
            extra: dict[str, Any] = {}
            if contexts is not None:
                inputs, extra = contexts.apply(job, inputs)
            result = swap_video(engine, inputs, sample_cfg, config.data.mask, guidance=job.guidance_scale,
                                text_guidance=job.text_guidance_scale, seed=job.seed,
                                ref_size=config.data.ref_size, **extra)
            outputs.write_outputs(job.out, inputs, result, sheet_rows=sample_cfg.sheet_frames)
            return result.report

        with _use_mesh(mesh):
            outcomes = job_lib.run(runnable, work, _print_outcome)
    except (InputError, ConfigError, CheckpointError) as err:
        _say(str(err))
        return 2
    return 0 if not failed and all(o.error is None for o in outcomes) else 2


def _print_outcome(outcome: job_lib.Outcome) -> None:
    if outcome.error is not None:
        _say(outcome.error)
        return
    r = outcome.report
    seam = "n/a" if r["seam_ratio"] is None else f"{r['seam_ratio']:.3f}"
    print(f"wrote {outcome.job.out} ({r['frames']} frames, model {r['model_hw'][0]}x{r['model_hw'][1]}"
          f"{', tunnel' if r['tunnel'] else ''}, {len(r['windows'])} window(s), seam ratio {seam}, colour drift "
          f"{r['colour_drift']:.2f}): {json.dumps(r)}")


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
