"""The cases an evaluation runs: `--cases` names a folder or a JSON list, read by the one job parser
(`swapjax.sample.jobs`, which also takes the ground truth and the name a case may carry); every result goes to
`OUT/NAME.mp4`.

A folder has the batch layout of `swapjax.sample.jobs.jobs_from_folder`: a video `NAME.mp4` with `NAME_mask.*` and
`NAME_ref.png` (optionally `NAME_ref_mask.png`, `NAME_keypoints.json`, `NAME_condition.*`, `NAME_text.npy` and a
ground truth `NAME_truth.<video|npz|npy>` or `NAME_truth/` folder of frames), or one swap case `NAME.npz`.

A JSON list holds objects with the keys of a sampling job except `out` (results always go to `OUT/NAME.mp4`), with
`ground_truth` and `name` (default: the file name of `video` or `case`; made file-safe and unique):

    [{"video": "walk.mp4", "mask": "walk_mask.json", "reference": "cat.png", "reference_mask": "cat_mask.png",
      "ground_truth": "walk_truth.mp4"},
     {"case": "pair0.npz", "name": "pair0", "seed": 3, "guidance_scale": 4.5}]

A swap case NPZ holds `source` `[F, H, W, 3]`, `mask` `[F, H, W]`, `reference` `[H, W, 3|4]` and optionally
`ground_truth` `[F, H, W, 3]` and `reference_mask` `[H, W]` (the subject in the reference; without it the
reference's alpha or the automatic cut-out marks it). An entry that cannot be a case becomes its `InputError`,
reported in one line while the others run.

A case NPZ may also carry what scoring reads beyond the sampler's inputs (`case_extras`; the demo's cases do,
`swapjax/demo/cases.py`): `subject_mask` `[F, H, W]`, the subject's exact visible pixels when `mask` is looser
(a box, a dilation, a grid: the colour and centroid scores read it); `subject_reference` `[S, S, 3]`, the new
subject alone on neutral grey when `reference` is framed otherwise (a photo on a coloured canvas, a frame crop:
the reference colours of the scores come from it); and the labels `set` (`SETS`), `mask_style` and
`reference_framing`, strings that become the columns of the same names. Other arrays are ignored.
"""

from __future__ import annotations

import dataclasses
import pathlib
import zipfile

import numpy as np

from swapjax.errors import InputError
from swapjax.sample.jobs import Job, jobs_from_folder, jobs_from_json

LABELS = ("set", "mask_style", "reference_framing")  # a case's labels, each a column of the table
SETS = ("heldout", "infamily")  # the values of `set`, in report order: held-out families first
SET_TITLES = {"heldout": "held-out", "infamily": "in family"}  # how reports name them


def read_cases(path: str | pathlib.Path, out_dir: str | pathlib.Path) -> list[Job | InputError]:
    """The cases of a folder or a JSON list, in order (see the module docstring); `InputError` naming `--cases`
    when `path` is neither."""
    path, out_dir = pathlib.Path(path), pathlib.Path(out_dir)
    if path.is_dir():
        return jobs_from_folder(path, out_dir, flag="--cases")
    if path.suffix.lower() == ".json" and path.is_file():
        return jobs_from_json(path, out_dir)
    if not path.exists():
        raise InputError(f"--cases {str(path)!r} does not exist: pass a folder of cases or a JSON list of them")
    raise InputError(f"--cases {str(path)!r} is neither a folder nor a .json list: pass one of them")


@dataclasses.dataclass(frozen=True)
class CaseExtras:
    """What a case NPZ carries for scoring beyond the sampler's inputs (see the module docstring); None where it
    carries nothing, and then scoring reads the case's `mask` and `reference`."""

    labels: dict[str, str]
    subject_mask: np.ndarray | None = None  # uint8 [F, H, W] {0, 1}
    subject_reference: np.ndarray | None = None  # uint8 [S, S, 3]

    def check(self, video_shape: tuple[int, ...], name: str) -> None:
        """`InputError` naming case `name` when the arrays do not fit its source video `[F, H, W, 3]`."""
        mask, ref = self.subject_mask, self.subject_reference
        if mask is not None and mask.shape != tuple(video_shape[:3]):
            raise InputError(f"case {name!r}: its subject_mask is {list(mask.shape)} but its source is "
                             f"{list(video_shape)}: save the exact subject mask as [F, H, W] of the source")
        if ref is not None and (ref.ndim != 3 or ref.shape[-1] != 3 or ref.dtype != np.uint8):
            raise InputError(f"case {name!r}: its subject_reference is {ref.dtype} {list(ref.shape)}: save it as "
                             "uint8 [H, W, 3]")


def case_extras(job: Job) -> CaseExtras:
    """The scoring extras of `job`'s case NPZ (empty for a video job); `InputError` when it cannot be read."""
    if job.case is None:
        return CaseExtras({})
    try:
        with np.load(job.case, allow_pickle=False) as arrays:
            labels = {k: str(arrays[k]) for k in LABELS if k in arrays.files}
            mask = arrays["subject_mask"] if "subject_mask" in arrays.files else None
            ref = arrays["subject_reference"] if "subject_reference" in arrays.files else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise InputError(f"swap case {str(job.case)!r} cannot be read as an NPZ ({err}): save it with np.savez"
                         ) from None
    return CaseExtras(labels, None if mask is None else (np.asarray(mask) != 0).astype(np.uint8), ref)


def case_labels(job: Job | None) -> dict[str, str]:
    """The labels of a case that failed (`{}` when there is no job or its NPZ cannot be read: its row's error
    says why)."""
    if job is None:
        return {}
    try:
        return case_extras(job).labels
    except InputError:
        return {}
