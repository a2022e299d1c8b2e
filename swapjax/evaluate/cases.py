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
reference's alpha or the automatic cut-out marks it); other arrays in it are ignored. An entry that cannot be a
case becomes its `InputError`, reported in one line while the others run.
"""

from __future__ import annotations

import pathlib

from swapjax.errors import InputError
from swapjax.sample.jobs import Job, jobs_from_folder, jobs_from_json


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
