"""The sampling command line (`python sample.py`, see README "Sampling").

    python sample.py --config configs/swap_tiny.py --checkpoint CKPT \
        --video walk.mp4 --mask walk_mask.json --reference cat.png --out out/walk.mp4 [--set sample.sampler.num_steps=30]
    python sample.py ... --case case.npz --out out/case.mp4            # one NPZ: source, mask, reference
    python sample.py ... --jobs jobs.json                               # batch: a JSON job list
    python sample.py ... --batch clips/ --out-dir out/                  # batch: a folder
    python sample.py --config configs/swap_wan2_1_14b.py --pipeline converted/ --prompt "a tabby cat" ...

`--pipeline` (a folder from `python -m swapjax.convert --pipeline`) replaces `--checkpoint`: its umT5 encodes
`--prompt` (and `--negative-prompt`, the empty prompt by default, for the null guidance branch) and, for I2V-based
models, its CLIP encodes every job's reference; both run and are released before the DiT loads.

`--set key=value [key=value ...]` (repeatable) overrides the run config (`dit.attention=cudnn`, `mesh.sequence=-1`)
or, under `sample.`, the `SampleConfig` (`sample.area=399360`, `sample.sampler.num_steps=30`,
`sample.sampler.guidance_scale=4.5`). The checkpoint layouts (a finished run's
folder, `--checkpoint RUN`, among them) are documented in `swapjax/sample/checkpoint.py`; a trained VAE's latent
statistics are read from it, not from the config. The work is `swapjax.sample.runner`'s (the runner evaluate shares):
arguments and configs, the checkpoint's shapes, every job's outputs and inputs; only then the model loads. Any
problem there is one `error:` line and exit code 2 with nothing written (a truncated checkpoint too); in batch
mode a bad job is one line and the others still run: exit 1 when some job failed, 2 when none could run. With
more than one device, sampling runs under the config's mesh (default: every device on `sequence`).
"""

from __future__ import annotations

import argparse
import pathlib
from typing import Sequence

from swapjax.cli_parser import OneLineParser
from swapjax.entry import add_set_argument, run_main
from swapjax.errors import InputError
from swapjax.sample import jobs as job_lib

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
    add_set_argument(p, help="config overrides, e.g. sample.sampler.num_steps=30 dit.attention=cudnn")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


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


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the exit code (0 every job written, 1 some failed, 2 bad input: see the docstring)."""
    args = parse_args(argv)
    from swapjax.sample.outputs import sheet_path  # after the argument checks: this imports the models

    creates = [args.out, args.out and sheet_path(args.out), args.out_dir]  # removed again on bad input
    return run_main(lambda: run(args), creates=creates)


def run(args: argparse.Namespace) -> int:
    """Everything after parsing: the runner checks, then samples and writes every job (see the docstring)."""
    from swapjax.sample.runner import ModelSource, Runner, batch_exit_code, load_run_config, print_outcome

    config = load_run_config(args.config, args.overrides, quiet=args.quiet)
    jobs = build_jobs(args)
    source = ModelSource(checkpoint=args.checkpoint, vae=args.vae, pipeline=args.pipeline, prompt=args.prompt,
                         negative_prompt=args.negative_prompt)
    runner = Runner(config, source, overwrite=args.overwrite)
    runner.check()
    checked = runner.precheck(jobs)
    for failed in checked:
        if not isinstance(failed, job_lib.Job):
            print_outcome(failed)
    runnable = [c for c in checked if isinstance(c, job_lib.Job)]
    outcomes = runner.run(runnable, on_outcome=print_outcome) if runnable else []
    return batch_exit_code(checked, outcomes)
