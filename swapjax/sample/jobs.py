"""The one job parser: many swap jobs (sample.py's batch mode, evaluate's cases) from a JSON list or a folder; an
entry that cannot be a job becomes its `InputError`, reported in one line while the others run.

A JSON list (`--jobs jobs.json`, or `--cases cases.json` for evaluate; relative paths from the list's folder)::

    [{"video": "walk.mp4", "mask": "walk_mask.json", "reference": "cat.png", "out": "out/walk.mp4",
      "reference_mask": "cat_mask.png", "keypoints": "walk_pose.json", "text": "prompt.npy", "fps": 24,
      "seed": 1, "guidance_scale": 4.5, "ground_truth": "walk_truth.mp4", "name": "walk"},
     {"case": "case.npz", "out": "out/case.mp4"}]

`video`, `mask`, `reference` and `out` are required unless `case` (one NPZ with source, mask, reference)
replaces the first three; with an output folder (`jobs_from_json(path, out_dir=...)`, evaluate) `out` is not
allowed and every result goes to `OUT_DIR/NAME.mp4`. `reference_mask` (the subject in the reference image,
`swapjax.sample.inputs`), `condition` (a rendered condition video) or `keypoints`, `text`, `fps`, `seed`,
`guidance_scale`, `text_guidance_scale`, `ground_truth` (the expected result, a video, frame folder or array at
the source's size; a case NPZ may hold its own) and `name` (default: the file name of `video` or `case`) are
optional (a case NPZ may hold its own `reference_mask` array).

A folder (`--batch FOLDER --out-dir DIR`, or `--cases FOLDER`): every video file `NAME.<mp4|mov|...>` with
`NAME_mask.<any mask format>` (or a `NAME_mask/` PNG folder) and `NAME_ref.<png|jpg|npy>`, optionally
`NAME_ref_mask.<png|npy|npz>`, `NAME_keypoints.json` or `NAME_condition.<video>`, `NAME_text.npy` and
`NAME_truth.<video|npz|npy>` (or a `NAME_truth/` folder of frames); and every swap case `NAME.npz`. Results go to
`DIR/NAME.mp4`.

Every job's inputs and outputs are checked before the model is loaded (`swapjax.sample.runner`), then read again
when the job runs, so memory holds one job at a time.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import re
from typing import Any

from swapjax.data import video_io
from swapjax.errors import InputError
from swapjax.sample.inputs import JobInputs, read_case, read_inputs, read_video

_PATH_KEYS = ("video", "case", "mask", "reference", "reference_mask", "condition", "keypoints", "text",
              "ground_truth", "out")
_NUMBER_KEYS = ("fps", "guidance_scale", "text_guidance_scale")
_KNOWN = set(_PATH_KEYS) | set(_NUMBER_KEYS) | {"seed", "name"}
# files with these stem endings belong to a job (`_truth`: its ground truth)
_ROLES = ("_mask", "_ref", "_ref_mask", "_keypoints", "_condition", "_text", "_truth")
TRUTH_SUFFIXES = video_io.VIDEO_SUFFIXES + (".npz", ".npy")


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
    ground_truth: pathlib.Path | None = None  # the expected result (scored by swapjax.evaluate)

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
        """Reads and checks the job's inputs, with its ground truth (`InputError` on the first problem)."""
        if self.case is not None:
            inputs = read_case(self.case, fps=self.fps, text=self.text, text_dim=text_dim)
        else:
            inputs = read_inputs(self.video, self.mask, self.reference, condition=self.condition,
                                 keypoints=self.keypoints, text=self.text, fps=self.fps, text_dim=text_dim,
                                 reference_mask=self.reference_mask)
        return dataclasses.replace(self._with_truth(inputs), name=self.name)

    def _with_truth(self, inputs: JobInputs) -> JobInputs:
        if self.ground_truth is None:
            return inputs
        path = self.ground_truth
        if inputs.ground_truth is not None:
            raise InputError(f"case {self.name!r} has a ground truth in its NPZ and {str(path)!r} as well: keep one")
        truth, _, _ = read_video(path, inputs.fps, what="ground truth")
        if truth.shape != inputs.video.shape:
            raise InputError(f"ground truth {str(path)!r} is {list(truth.shape)} but the source video is "
                             f"{list(inputs.video.shape)}: give the expected result at the source's frame count "
                             "and size")
        return dataclasses.replace(inputs, ground_truth=truth)


def _safe_name(name: str) -> str:
    """A name usable as a file stem: characters other than letters, digits, `.`, `_`, `-` become `_`."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "case"


def _fields(i: int, entry: Any, base: pathlib.Path, where: str, kind: str) -> dict[str, Any]:
    """The checked fields of JSON entry `i` (paths joined to `base`; `name` as given)."""
    if not isinstance(entry, dict):
        raise InputError(f"{where}: {kind} {i} is a {type(entry).__name__}; each {kind} is an object such as "
                         '{"video": ..., "mask": ..., "reference": ...} or {"case": "pair.npz"}')
    fields: dict[str, Any] = {}
    for key in _PATH_KEYS:
        if key in entry:
            if not isinstance(entry[key], str) or not entry[key]:
                raise InputError(f"{where}: {kind} {i} key {key!r} must be a path string, got {entry[key]!r}")
            fields[key] = base / entry[key]
    for key in _NUMBER_KEYS:
        if key in entry:
            value = entry[key]
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise InputError(f"{where}: {kind} {i} key {key!r} must be a finite number, got {value!r}")
            fields[key] = float(value)
    if "seed" in entry:
        if not isinstance(entry["seed"], int) or isinstance(entry["seed"], bool):
            raise InputError(f"{where}: {kind} {i} key 'seed' must be an integer, got {entry['seed']!r}")
        fields["seed"] = entry["seed"]
    if "name" in entry and (not isinstance(entry["name"], str) or not entry["name"]):
        raise InputError(f"{where}: {kind} {i} key 'name' must be a non-empty string, got {entry['name']!r}")
    return {**fields, **({"name": entry["name"]} if "name" in entry else {})}


def _entry(i: int, entry: Any, base: pathlib.Path, where: str, out_dir: pathlib.Path | None) -> Job:
    """Entry `i` as a job: its own `out`, or (with `out_dir`) `OUT_DIR/NAME.mp4` under a file-safe name."""
    kind = "job" if out_dir is None else "case"
    known = _KNOWN if out_dir is None else _KNOWN - {"out"}
    unknown = sorted(set(entry) - known) if isinstance(entry, dict) else []
    if unknown:
        raise InputError(f"{where}: {kind} {i} has unknown keys {unknown}; allowed: {sorted(known)}")
    if out_dir is None and isinstance(entry, dict) and not isinstance(entry.get("out"), str):
        raise InputError(f"{where}: job {i} needs \"out\": the path of the result video")
    fields = _fields(i, entry, base, where, kind)
    source = fields.get("video") or fields.get("case")
    label = source.stem if source else f"{kind}{i}"
    if out_dir is None:
        return Job(name=fields.pop("name", f"{i}:{label}"), **fields)
    name = _safe_name(fields.pop("name", label))
    return Job(name=name, out=out_dir / f"{name}.mp4", **fields)


def jobs_from_json(path: str | pathlib.Path, out_dir: str | pathlib.Path | None = None) -> list[Job | InputError]:
    """The jobs of a JSON list (see the module docstring); an entry that cannot be a job becomes its `InputError`
    (reported, not fatal). With `out_dir` (evaluation cases) results go to `OUT_DIR/NAME.mp4`, names unique."""
    path = pathlib.Path(path)
    out_dir = None if out_dir is None else pathlib.Path(out_dir)
    name = f"{'job' if out_dir is None else 'case'} list {str(path)!r}"
    if not path.is_file():
        raise InputError(f"{name} does not exist: check the path")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{name} is not valid JSON ({err}): fix the syntax") from None
    if not isinstance(data, list) or not data:
        raise InputError(f"{name} must hold a non-empty JSON list of {'jobs' if out_dir is None else 'cases'}")
    out: list[Job | InputError] = []
    taken: set[str] = set()
    for i, entry in enumerate(data):
        try:
            job = _entry(i, entry, path.parent, name, out_dir)
        except InputError as err:
            out.append(err)
            continue
        if out_dir is not None and job.name in taken:
            job = dataclasses.replace(job, name=f"{job.name}_{i}", out=out_dir / f"{job.name}_{i}.mp4")
        taken.add(job.name)
        out.append(job)
    return out


def _find(folder: pathlib.Path, stem: str, suffixes: tuple[str, ...], allow_dir: bool = False
          ) -> pathlib.Path | None:
    hits = [p for p in folder.iterdir() if p.stem == stem and ((p.is_file() and p.suffix.lower() in suffixes)
                                                                or (allow_dir and p.is_dir() and p.name == stem))]
    return sorted(hits)[0] if hits else None


def jobs_from_folder(folder: str | pathlib.Path, out_dir: str | pathlib.Path, *, flag: str = "--batch"
                     ) -> list[Job | InputError]:
    """The jobs of a batch folder (layout in the module docstring); a video without its mask or reference
    becomes an `InputError` naming what is missing. `flag` names the option that gave the folder in messages."""
    folder, out_dir = pathlib.Path(folder), pathlib.Path(out_dir)
    if not folder.is_dir():
        raise InputError(f"{flag} {str(folder)!r} is not a folder: pass the folder holding the videos, masks "
                         "and references")
    sources = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                     and not p.stem.endswith(_ROLES)
                     and (p.suffix.lower() in video_io.VIDEO_SUFFIXES or p.suffix.lower() == ".npz"))
    if not sources:
        raise InputError(f"{flag} {str(folder)!r} holds no videos or case NPZs: put NAME.mp4 with NAME_mask.* and "
                         "NAME_ref.png in it")
    images = video_io.IMAGE_SUFFIXES + (".npy", ".npz")
    jobs: list[Job | InputError] = []
    for src in sources:
        stem, out = src.stem, out_dir / f"{src.stem}.mp4"
        text = _find(folder, f"{stem}_text", (".npy", ".npz"))
        truth = _find(folder, f"{stem}_truth", TRUTH_SUFFIXES, allow_dir=True)
        if src.suffix.lower() == ".npz":
            jobs.append(Job(name=stem, out=out, case=src, text=text, ground_truth=truth))
            continue
        mask = _find(folder, f"{stem}_mask", video_io.MASK_FILE_SUFFIXES, allow_dir=True)
        ref = _find(folder, f"{stem}_ref", images)
        if mask is None or ref is None:
            missing = " and ".join(n for n, p in ((f"{stem}_mask.*", mask), (f"{stem}_ref.png", ref)) if p is None)
            jobs.append(InputError(f"{flag} job {stem!r}: {str(src)!r} has no {missing} beside it: add it or move "
                                   "the video out of the folder"))
            continue
        jobs.append(Job(name=stem, out=out, video=src, mask=mask, reference=ref, text=text, ground_truth=truth,
                        reference_mask=_find(folder, f"{stem}_ref_mask", images),
                        keypoints=_find(folder, f"{stem}_keypoints", (".json",)),
                        condition=_find(folder, f"{stem}_condition", video_io.VIDEO_SUFFIXES)))
    return jobs
