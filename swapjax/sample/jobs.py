"""Batch mode: many swap jobs through one loaded model; a bad job is reported in one line and the others run.

A JSON job list (`--jobs jobs.json`; relative paths are read from the list's folder)::

    [{"video": "walk.mp4", "mask": "walk_mask.json", "reference": "cat.png", "out": "out/walk.mp4",
      "reference_mask": "cat_mask.png", "keypoints": "walk_pose.json", "text": "prompt.npy", "fps": 24,
      "seed": 1, "guidance_scale": 4.5},
     {"case": "case.npz", "out": "out/case.mp4"}]

`video`, `mask`, `reference` and `out` are required unless `case` (one NPZ with source, mask, reference) replaces
the first three; `reference_mask` (the subject in the reference image, `swapjax.sample.inputs`), `condition` (a
rendered condition video) or `keypoints`, `text`, `fps`, `seed`, `guidance_scale` and `text_guidance_scale` are
optional (a case NPZ may hold its own `reference_mask` array).

A folder (`--batch FOLDER --out-dir DIR`): every video file `NAME.<mp4|mov|...>` with `NAME_mask.<any mask
format>` (or a `NAME_mask/` PNG folder) and `NAME_ref.<png|jpg|npy>`, optionally `NAME_ref_mask.<png|npy|npz>`,
`NAME_keypoints.json` or `NAME_condition.<video>`, and `NAME_text.npy`; and every swap case `NAME.npz`. Results go
to `DIR/NAME.mp4`.

Every job's inputs and outputs are checked before the model is loaded (then read again when the job runs, so
memory holds one job at a time).
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from typing import Any, Callable

from swapjax.data import video_io
from swapjax.errors import InputError
from swapjax.sample.inputs import JobInputs, read_case, read_inputs

_PATH_KEYS = ("video", "case", "mask", "reference", "reference_mask", "condition", "keypoints", "text", "out")
_NUMBER_KEYS = ("fps", "guidance_scale", "text_guidance_scale")
_KNOWN = set(_PATH_KEYS) | set(_NUMBER_KEYS) | {"seed"}
# files with these stem endings belong to a job; `_truth` is a ground truth that `swapjax.evaluate` reads
_ROLES = ("_mask", "_ref", "_ref_mask", "_keypoints", "_condition", "_text", "_truth")


@dataclasses.dataclass(frozen=True)
class Job:
    """One swap: where its inputs are and where its result goes."""

    name: str
    out: pathlib.Path
    video: pathlib.Path | None = None
    case: pathlib.Path | None = None
    mask: pathlib.Path | None = None
    reference: pathlib.Path | None = None
    reference_mask: pathlib.Path | None = None
    condition: pathlib.Path | None = None
    keypoints: pathlib.Path | None = None
    text: pathlib.Path | None = None
    fps: float | None = None
    seed: int | None = None
    guidance_scale: float | None = None
    text_guidance_scale: float | None = None

    def __post_init__(self):
        if (self.case is None) == (self.video is None):
            raise InputError(f"job {self.name!r}: give either a video (with mask and reference) or a case NPZ")
        if self.video is not None and (self.mask is None or self.reference is None):
            raise InputError(f"job {self.name!r}: a video needs a mask and a reference image as well")
        if self.case is not None and (self.mask or self.reference or self.reference_mask or self.condition
                                      or self.keypoints):
            raise InputError(f"job {self.name!r}: a case NPZ holds its mask and reference (and may hold a "
                             "reference_mask array); drop the other inputs")

    def read(self, text_dim: int | None) -> JobInputs:
        """Reads and checks the job's inputs (`InputError` on the first problem)."""
        if self.case is not None:
            return dataclasses.replace(read_case(self.case, fps=self.fps, text=self.text, text_dim=text_dim),
                                       name=self.name)
        inputs = read_inputs(self.video, self.mask, self.reference, condition=self.condition,
                             keypoints=self.keypoints, text=self.text, fps=self.fps, text_dim=text_dim,
                             reference_mask=self.reference_mask)
        return dataclasses.replace(inputs, name=self.name)


def _entry(i: int, entry: Any, base: pathlib.Path, name: str) -> Job:
    if not isinstance(entry, dict):
        raise InputError(f"{name}: job {i} is a {type(entry).__name__}; each job is an object such as "
                         '{"video": ..., "mask": ..., "reference": ..., "out": ...}')
    unknown = sorted(set(entry) - _KNOWN)
    if unknown:
        raise InputError(f"{name}: job {i} has unknown keys {unknown}; allowed: {sorted(_KNOWN)}")
    if not isinstance(entry.get("out"), str):
        raise InputError(f"{name}: job {i} needs \"out\": the path of the result video")
    fields: dict[str, Any] = {}
    for key in _PATH_KEYS:
        if key in entry:
            if not isinstance(entry[key], str) or not entry[key]:
                raise InputError(f"{name}: job {i} key {key!r} must be a path string, got {entry[key]!r}")
            fields[key] = base / entry[key]
    for key in _NUMBER_KEYS:
        if key in entry:
            value = entry[key]
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise InputError(f"{name}: job {i} key {key!r} must be a finite number, got {value!r}")
            fields[key] = float(value)
    if "seed" in entry:
        if not isinstance(entry["seed"], int) or isinstance(entry["seed"], bool):
            raise InputError(f"{name}: job {i} key 'seed' must be an integer, got {entry['seed']!r}")
        fields["seed"] = entry["seed"]
    label = pathlib.Path(entry.get("video") or entry.get("case") or f"job{i}").stem
    return Job(name=f"{i}:{label}", **fields)


def jobs_from_json(path: str | pathlib.Path) -> list[Job | InputError]:
    """The jobs of a JSON list; an entry that cannot be a job becomes its `InputError` (reported, not fatal)."""
    path = pathlib.Path(path)
    name = f"job list {str(path)!r}"
    if not path.is_file():
        raise InputError(f"{name} does not exist: check the path")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{name} is not valid JSON ({err}): fix the syntax") from None
    if not isinstance(data, list) or not data:
        raise InputError(f"{name} must hold a non-empty JSON list of jobs")
    out: list[Job | InputError] = []
    for i, entry in enumerate(data):
        try:
            out.append(_entry(i, entry, path.parent, name))
        except InputError as err:
            out.append(err)
    return out


def _find(folder: pathlib.Path, stem: str, suffixes: tuple[str, ...], allow_dir: bool = False
          ) -> pathlib.Path | None:
    hits = [p for p in folder.iterdir() if p.stem == stem and ((p.is_file() and p.suffix.lower() in suffixes)
                                                                or (allow_dir and p.is_dir() and p.name == stem))]
    return sorted(hits)[0] if hits else None


def jobs_from_folder(folder: str | pathlib.Path, out_dir: str | pathlib.Path) -> list[Job | InputError]:
    """The jobs of a batch folder (layout in the module docstring); a video without its mask or reference
    becomes an `InputError` naming what is missing."""
    folder, out_dir = pathlib.Path(folder), pathlib.Path(out_dir)
    if not folder.is_dir():
        raise InputError(f"--batch {str(folder)!r} is not a folder: pass the folder holding the videos, masks "
                         "and references")
    sources = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                     and not p.stem.endswith(_ROLES)
                     and (p.suffix.lower() in video_io.VIDEO_SUFFIXES or p.suffix.lower() == ".npz"))
    if not sources:
        raise InputError(f"--batch {str(folder)!r} holds no videos or case NPZs: put NAME.mp4 with NAME_mask.* and "
                         "NAME_ref.png in it")
    images = video_io.IMAGE_SUFFIXES + (".npy", ".npz")
    jobs: list[Job | InputError] = []
    for src in sources:
        stem, out = src.stem, out_dir / f"{src.stem}.mp4"
        text = _find(folder, f"{stem}_text", (".npy", ".npz"))
        if src.suffix.lower() == ".npz":
            jobs.append(Job(name=stem, out=out, case=src, text=text))
            continue
        mask = _find(folder, f"{stem}_mask", video_io.MASK_FILE_SUFFIXES, allow_dir=True)
        ref = _find(folder, f"{stem}_ref", images)
        if mask is None or ref is None:
            missing = " and ".join(n for n, p in ((f"{stem}_mask.*", mask), (f"{stem}_ref.png", ref)) if p is None)
            jobs.append(InputError(f"batch job {stem!r}: {str(src)!r} has no {missing} beside it: add it or move "
                                   "the video out of the folder"))
            continue
        jobs.append(Job(name=stem, out=out, video=src, mask=mask, reference=ref, text=text,
                        reference_mask=_find(folder, f"{stem}_ref_mask", images),
                        keypoints=_find(folder, f"{stem}_keypoints", (".json",)),
                        condition=_find(folder, f"{stem}_condition", video_io.VIDEO_SUFFIXES)))
    return jobs


@dataclasses.dataclass
class Outcome:
    """How one job ended: `error` (one line) or `report` (the pipeline's numbers)."""

    job: Job | None
    error: str | None = None
    report: dict[str, Any] | None = None


def precheck(jobs: list[Job | InputError], check: Callable[[Job], None]) -> tuple[list[Job], list[Outcome]]:
    """Runs `check` (inputs and outputs, no model work) on every job: (runnable jobs, failed outcomes)."""
    ok, failed = [], []
    for job in jobs:
        if isinstance(job, InputError):
            failed.append(Outcome(None, str(job)))
            continue
        try:
            check(job)
        except InputError as err:
            failed.append(Outcome(job, f"job {job.name!r}: {err}"))
        else:
            ok.append(job)
    return ok, failed


def run(jobs: list[Job], work: Callable[[Job], dict[str, Any]], report: Callable[[Outcome], None]) -> list[Outcome]:
    """Runs `work` on each job; an `InputError` (a file that changed since the check, an unwritable output)
    fails that job only."""
    outcomes = []
    for job in jobs:
        try:
            outcome = Outcome(job, report=work(job))
        except InputError as err:
            outcome = Outcome(job, f"job {job.name!r}: {err}")
        report(outcome)
        outcomes.append(outcome)
    return outcomes
