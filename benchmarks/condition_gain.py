"""Does the pose condition teach the swap model where the subject's parts go? Two trainings, one condition apart.

    python benchmarks/condition_gain.py [--steps 2000] [--vae-steps 2000] [--clips 12] [--quick]

The data (`condition_gain_data.py`) are 32x32, 5-frame clips of a disc made of a red and a blue half whose
dividing line turns by a random angle per frame; the mask is the whole disc and the reference one frame of the
clip, so only the keypoints (the centre and each half's centroid, rendered as a "sprite" skeleton by the data
pipeline) say how the disc is turned in each frame. The tiny swap model of `configs/demo.py` is trained from
scratch (`train.stage=2`) twice by `swapjax.train.train`, the code `train.py` runs, on the same clips, seeds and
step counts:
- "no pose": the demo model as it is;
- "pose": the same with the pose condition (`swap.conditions=pose`, default settings); training then renders the
  keypoint video and VAE-encodes it (`train.loop.with_condition_data`), and the model reads it only through the
  PoseGuider's attention branch (the demo model has no condition channels in its fused input,
  `swap.condition_channels=0`).
The VAE is trained once (the first run's VAE stage) and the second run encodes with it (`train.vae_init`).
Each model then swaps held-out clips through the sampler users run (`sample.checkpoint.load_models`,
`sample.engine.Engine`, `sample.pipeline.swap_video`; the pose model also gets the rendered keypoint video), and
each half is located in the generated frames by its colour (`locate_parts`) and compared with its keypoint.

`train.py` reads only the synthetic or TFDS data; to train on these clips without writing video files, the
benchmark hands the clip source to the data pipeline by replacing `swapjax.data.pipeline.make_source` for the
duration of the two training calls (everything else is the library's code as users run it).

The last line is `pose_over_no_pose_keypoint_error: <pose error / no-pose error>` (goal <= 0.7). Measured on
7 December 2026, default settings, 2 shared cores at load 6.5-8: keypoint error 5.00 px without pose (chance:
a part at the disc's centre is 4.2 px off, a wrongly turned disc ~5.6 px), 2.20 px with pose, 12 of 12 clips
closer with pose, ratio 0.441; the VAE's own reconstruction scores 0.25 px; 913 s in all. With `--seed 1`
(load 4-6): 5.11 vs 3.27 px, 12 of 12, ratio 0.639, 958 s, so the margin varies with the seed. `--quick` (a
tiny model, 2 steps) checks the plumbing only.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import pathlib
import sys
import tempfile
import time
from unittest import mock

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks.condition_gain_data import PART_OFFSET, PartClips, keypoint_error  # noqa: E402
from benchmarks.timing import load_average  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
TRAIN_CLIPS = 2048
HELD_OUT_SEED = 1_000_003  # the held-out clips' source seed (training clips use the config's seed)


def arm_configs(vae_steps: int, steps: int, quick: bool, seed: int = 0):
    """(no-pose config, pose config): configs/demo.py at these step counts; they differ only in
    `swap.conditions` (and, for the pose run, the VAE it loads instead of training one)."""
    from swapjax.config import load_config

    demo = load_config(ROOT / "configs" / "demo.py")
    swap, dit = demo.swap, demo.dit
    train = dataclasses.replace(demo.train, steps=steps, vae_steps=vae_steps, checkpoint_every=steps,
                                vae_stat_batches=2 if quick else demo.train.vae_stat_batches, progress=False,
                                log_every=max(1, min(demo.train.log_every, steps)))
    sampler = dataclasses.replace(demo.sample.sampler, num_steps=2) if quick else demo.sample.sampler
    sample = dataclasses.replace(demo.sample, progress=False, sampler=sampler)
    data = dataclasses.replace(demo.data, num_synthetic_clips=TRAIN_CLIPS)
    pose = swap.conditions.with_kwargs("pose")
    if quick:  # tiny model: the run shows the plumbing works, not that the condition is learned
        dit = dataclasses.replace(dit, num_layers=1, ffn_dim=64)
        pose = swap.conditions.with_kwargs("pose", widths=(8,))
    off = demo.replace(name="condition_gain_no_pose", dit=dit, swap=swap, train=train, sample=sample, data=data,
                       seed=seed)
    on = off.replace(name="condition_gain_pose", swap=swap.replace(conditions=pose))
    return off, on


@contextlib.contextmanager
def clip_source(source):
    """The data pipeline reads `source` in place of the config's (see the module docstring)."""
    from swapjax.data import pipeline

    with mock.patch.object(pipeline, "make_source", lambda cfg, seed=0: source):
        yield


def train_arm(config, workdir: pathlib.Path, source) -> float:
    """Trains `config` in `workdir` on `source`; returns the seconds it took."""
    from swapjax.train import train

    start = time.perf_counter()
    with clip_source(source):
        outcome = train(config, workdir)
    if outcome.status != "done":
        raise SystemExit(f"condition_gain: training {config.name} stopped ({outcome.status}): {outcome.message}")
    return time.perf_counter() - start


def job_inputs(clip: dict, index: int, with_condition: bool):
    """A held-out clip as a swap job: the disc to regenerate, one of its frames as the reference."""
    from swapjax.data.keypoints import render_keypoints
    from swapjax.sample.inputs import JobInputs

    video, mask = clip["video"], clip["mask"]
    frame = index % len(video)
    condition = render_keypoints(clip["keypoints"], *video.shape[1:3], clip["keypoints_kind"]) if with_condition \
        else None
    return JobInputs(name=f"clip{index}", video=video, mask=mask, reference=video[frame], fps=8.0,
                     condition=condition, reference_mask=mask[frame])


def evaluate_arm(config, workdir: pathlib.Path, clips: list[dict], with_condition: bool) -> dict[str, float]:
    """Swaps every held-out clip with the trained model; keypoint errors (pixels) of the generated parts and of
    the VAE's own reconstruction of the source, and the seconds sampling took."""
    from swapjax.evaluate.baseline import vae_reconstruction
    from swapjax.sample.checkpoint import load_models
    from swapjax.sample.engine import Engine
    from swapjax.sample.pipeline import swap_video

    start = time.perf_counter()
    models = load_models(config, workdir)
    engine = Engine(models, config.sample)
    errors, floors = [], []
    for i, clip in enumerate(clips):
        inputs = job_inputs(clip, i, with_condition)
        result = swap_video(engine, inputs, config.sample, config.data.mask, seed=i, ref_size=config.data.ref_size)
        errors.append(keypoint_error(result.generated, clip))
        floors.append(keypoint_error(vae_reconstruction(engine, inputs, config.sample), clip))
    return {"errors": np.array(errors), "error": float(np.mean(errors)), "vae": float(np.mean(floors)),
            "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000, help="swap DiT steps per run")
    parser.add_argument("--vae-steps", type=int, default=2000, help="VAE steps (trained once, in the first run)")
    parser.add_argument("--clips", type=int, default=12, help="held-out clips swapped by each model")
    parser.add_argument("--seed", type=int, default=0, help="run seed: training clips, initialisation, noise")
    parser.add_argument("--workdir", help="folder for both runs (default: a temporary folder, removed)")
    parser.add_argument("--quick", action="store_true", help="a few steps of a tiny model, for tests")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.vae_steps, args.clips = 2, 2, 1
    begin = time.perf_counter()
    off, on = arm_configs(args.vae_steps, args.steps, args.quick, args.seed)
    source = PartClips(TRAIN_CLIPS, off.seed, size=off.data.height, frames=off.data.num_frames)
    held_out = PartClips(args.clips, HELD_OUT_SEED, size=off.data.height, frames=off.data.num_frames)
    clips = [held_out[i] for i in range(args.clips)]
    truth = float(np.mean([keypoint_error(c["video"], c) for c in clips]))

    with contextlib.ExitStack() as stack:
        root = pathlib.Path(args.workdir) if args.workdir else pathlib.Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="condition_gain_")))
        loads = [load_average()]
        seconds = {"no pose": train_arm(off, root / "no_pose", source)}
        on = on.replace(train=dataclasses.replace(on.train, vae_steps=0, vae_init=str(root / "no_pose" / "vae")))
        loads.append(load_average())
        seconds["pose"] = train_arm(on, root / "pose", source)
        loads.append(load_average())
        scores = {"no pose": evaluate_arm(off, root / "no_pose", clips, with_condition=False),
                  "pose": evaluate_arm(on, root / "pose", clips, with_condition=True)}
        loads.append(load_average())

    ratio = scores["pose"]["error"] / scores["no pose"]["error"]
    print(f"data: {TRAIN_CLIPS} training clips, {args.clips} held-out; {off.data.height}x{off.data.width}, "
          f"{off.data.num_frames} frames; a masked disc of two halves, their centroids {PART_OFFSET:.1f} px from its "
          "centre")
    print(f"training: seed {args.seed}, VAE {args.vae_steps} steps (once), swap DiT {args.steps} steps per run, "
          f"batch {off.data.batch_size}; sampling: {off.sample.sampler.solver} {off.sample.sampler.num_steps} steps, guidance "
          f"{off.sample.sampler.guidance_scale:g}")
    print(f"machine: {'; '.join(loads)} (before/after each run, after sampling); total "
          f"{time.perf_counter() - begin:.0f} s")
    print(f"{'':24}{'no pose':>12}{'pose':>12}")
    print(f"{'train seconds':24}{seconds['no pose']:>12.1f}{seconds['pose']:>12.1f}   (no pose includes the VAE)")
    print(f"{'sample seconds':24}{scores['no pose']['seconds']:>12.1f}{scores['pose']['seconds']:>12.1f}")
    print(f"{'keypoint error (px)':24}{scores['no pose']['error']:>12.2f}{scores['pose']['error']:>12.2f}")
    better = int((scores["pose"]["errors"] < scores["no pose"]["errors"]).sum())
    print(f"{'clips closer with pose':24}{'':>12}{f'{better}/{args.clips}':>12}")
    print(f"{'VAE reconstruction (px)':24}{scores['no pose']['vae']:>12.2f}{scores['pose']['vae']:>12.2f}"
          f"   (the ground truth itself: {truth:.2f}; a part at the disc's centre: {PART_OFFSET:.1f})")
    print(f"pose_over_no_pose_keypoint_error: {ratio:.3f}")


if __name__ == "__main__":
    main()
