"""The cases an evaluation runs, from a folder or a JSON list: each one a `swapjax.sample.jobs.Job` whose result
goes to `OUT/NAME.mp4`, plus an optional ground-truth video (the expected result).

A folder (`--cases FOLDER`) has the batch layout of `swapjax.sample.jobs.jobs_from_folder`: a video `NAME.mp4`
with `NAME_mask.*` and `NAME_ref.png` (optionally `NAME_ref_mask.png`, `NAME_keypoints.json`, `NAME_condition.*`,
`NAME_text.npy`),
or one swap case `NAME.npz`; a video case's ground truth is `NAME_truth.<video|npz|npy>` or a `NAME_truth/`
folder of frames beside it.

A JSON list (`--cases cases.json`; relative paths from the list's folder) holds objects with the keys of a
sampling job except `out` (results always go to `OUT/NAME.mp4`), plus `ground_truth` and `name` (default: the
file name of `video` or `case`):

    [{"video": "walk.mp4", "mask": "walk_mask.json", "reference": "cat.png", "reference_mask": "cat_mask.png",
      "ground_truth": "walk_truth.mp4"},
     {"case": "pair0.npz", "name": "pair0", "seed": 3, "guidance_scale": 4.5}]

A swap case NPZ holds `source` `[F, H, W, 3]`, `mask` `[F, H, W]`, `reference` `[H, W, 3|4]` and optionally
`ground_truth` `[F, H, W, 3]` and `reference_mask` `[H, W]` (the subject in the reference; without it the
reference's alpha or the automatic cut-out marks it); other arrays in it are ignored. An entry that cannot be a
case becomes its `InputError`, reported in one line while the others run.
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
from swapjax.sample import jobs as job_lib
from swapjax.sample.inputs import JobInputs, read_video

_PATHS = ("video", "case", "mask", "reference", "reference_mask", "condition", "keypoints", "text",
          "ground_truth")
_NUMBERS = ("fps", "guidance_scale", "text_guidance_scale")
_KNOWN = set(_PATHS) | set(_NUMBERS) | {"seed", "name"}
TRUTH_ROLE = "_truth"
_TRUTH_SUFFIXES = video_io.VIDEO_SUFFIXES + (".npz", ".npy")


@dataclasses.dataclass(frozen=True)
class Cases:
    """The cases in list order (a `Job`, or the `InputError` of an entry that is not one) and the ground-truth
    file of each job name that has one outside its NPZ."""

    items: list[job_lib.Job | InputError]
    truths: dict[str, pathlib.Path]

    def read(self, job: job_lib.Job, text_dim: int | None) -> JobInputs:
        """The job's checked inputs with its ground truth (`InputError` on the first problem)."""
        inputs = job.read(text_dim)
        path = self.truths.get(job.name)
        if path is None:
            return inputs
        if inputs.ground_truth is not None:
            raise InputError(f"case {job.name!r} has a ground truth in its NPZ and {str(path)!r} as well: keep one")
        truth, _, _ = read_video(path, inputs.fps, what="ground truth")
        if truth.shape != inputs.video.shape:
            raise InputError(f"ground truth {str(path)!r} is {list(truth.shape)} but the source video is "
                             f"{list(inputs.video.shape)}: give the expected result at the source's frame count "
                             "and size")
        return dataclasses.replace(inputs, ground_truth=truth)


def read_cases(path: str | pathlib.Path, out_dir: str | pathlib.Path) -> Cases:
    """The cases of a folder or a JSON list (see the module docstring); `InputError` when `path` is neither."""
    path, out_dir = pathlib.Path(path), pathlib.Path(out_dir)
    if path.is_dir():
        return _from_folder(path, out_dir)
    if path.suffix.lower() == ".json":
        return _from_json(path, out_dir)
    if not path.exists():
        raise InputError(f"--cases {str(path)!r} does not exist: pass a folder of cases or a JSON list of them")
    raise InputError(f"--cases {str(path)!r} is neither a folder nor a .json list: pass one of them")


def _from_folder(folder: pathlib.Path, out_dir: pathlib.Path) -> Cases:
    items = job_lib.jobs_from_folder(folder, out_dir)
    truths = {}
    for job in items:
        if isinstance(job, InputError):
            continue
        stem = f"{job.name}{TRUTH_ROLE}"
        hits = sorted(p for p in folder.iterdir() if p.stem == stem and (
            p.is_dir() or (p.is_file() and p.suffix.lower() in _TRUTH_SUFFIXES)))
        if hits:
            truths[job.name] = hits[0]
    return Cases(items, truths)


def _safe_name(name: str) -> str:
    """A name usable as a file stem: characters other than letters, digits, `.`, `_`, `-` become `_`."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "case"


def _entry(i: int, entry: Any, base: pathlib.Path, where: str) -> tuple[dict[str, Any], pathlib.Path | None]:
    """The `Job` fields (without name and out) and the ground-truth path of JSON entry `i`."""
    if not isinstance(entry, dict):
        raise InputError(f"{where}: case {i} is a {type(entry).__name__}; each case is an object such as "
                         '{"video": ..., "mask": ..., "reference": ...} or {"case": "pair.npz"}')
    unknown = sorted(set(entry) - _KNOWN)
    if unknown:
        raise InputError(f"{where}: case {i} has unknown keys {unknown}; allowed: {sorted(_KNOWN)}")
    fields: dict[str, Any] = {}
    for key in _PATHS:
        if key in entry:
            if not isinstance(entry[key], str) or not entry[key]:
                raise InputError(f"{where}: case {i} key {key!r} must be a path string, got {entry[key]!r}")
            fields[key] = base / entry[key]
    for key in _NUMBERS:
        if key in entry:
            value = entry[key]
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise InputError(f"{where}: case {i} key {key!r} must be a finite number, got {value!r}")
            fields[key] = float(value)
    if "seed" in entry:
        if not isinstance(entry["seed"], int) or isinstance(entry["seed"], bool):
            raise InputError(f"{where}: case {i} key 'seed' must be an integer, got {entry['seed']!r}")
        fields["seed"] = entry["seed"]
    if "name" in entry and (not isinstance(entry["name"], str) or not entry["name"]):
        raise InputError(f"{where}: case {i} key 'name' must be a non-empty string, got {entry['name']!r}")
    return fields, fields.pop("ground_truth", None)


def _from_json(path: pathlib.Path, out_dir: pathlib.Path) -> Cases:
    where = f"case list {str(path)!r}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{where} does not exist: check the path") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{where} is not valid JSON ({err}): fix the syntax") from None
    if not isinstance(data, list) or not data:
        raise InputError(f"{where} must hold a non-empty JSON list of cases")
    items: list[job_lib.Job | InputError] = []
    truths: dict[str, pathlib.Path] = {}
    taken: set[str] = set()
    for i, entry in enumerate(data):
        try:
            fields, truth = _entry(i, entry, path.parent, where)
            source = fields.get("video") or fields.get("case")
            name = _safe_name(entry.get("name") or (source.stem if source else f"case{i}"))
            if name in taken:
                name = f"{name}_{i}"
            job = job_lib.Job(name=name, out=out_dir / f"{name}.mp4", **fields)
        except InputError as err:
            items.append(err)
            continue
        taken.add(name)
        items.append(job)
        if truth is not None:
            truths[name] = truth
    return Cases(items, truths)
