"""Held-out swap cases for the demo: synthetic clips training never reads, each with its ground-truth swap.

Training reads clips `0 .. num_synthetic_clips - 1` of the synthetic source built from the run's data config
and seed (`swapjax.data.pipeline.make_source`). The same source extended by `count` clips gives clips
`num_synthetic_clips ..`, which no training batch contains; each becomes one swap-case NPZ (the format
`sample.py` and `python -m swapjax.evaluate` read): `source` uint8 `[F, H, W, 3]`, `mask` uint8 `[F, H, W]` (the
subject's visible pixels), `reference` uint8 `[S, S, 3]` (a different sprite on grey) and `ground_truth` uint8
`[F, H, W, 3]` (the clip re-rendered with that sprite on the subject's path).
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from swapjax.atomic import atomic_write
from swapjax.data.config import DataConfig
from swapjax.data.pipeline import make_source


def held_out_indices(data: DataConfig, count: int) -> range:
    """The clip indices of the held-out cases: the `count` clips after the training clips."""
    return range(data.num_synthetic_clips, data.num_synthetic_clips + count)


def write_cases(data: DataConfig, seed: int, count: int, folder: str | pathlib.Path) -> list[pathlib.Path]:
    """Writes `count` held-out swap cases `folder/pairNNNN.npz` (see the module docstring); returns their paths.
    Existing cases are kept (they are a pure function of the data config, the seed and the index)."""
    if data.source != "synthetic":
        raise ValueError(f"the demo's held-out cases come from the synthetic source, not {data.source!r}: "
                         "set data.source=synthetic")
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    indices = held_out_indices(data, count)
    clips = make_source(dataclasses.replace(data, num_synthetic_clips=indices.stop), seed)
    paths = []
    for i in indices:
        path = folder / f"pair{i:04d}.npz"
        if not path.exists():
            pair = clips.swap_pair(i, data.ref_size)
            every = slice(None, None, data.frame_stride)  # the frames a training clip of this config takes
            with atomic_write(path) as tmp, open(tmp, "wb") as f:
                np.savez(f, source=pair["video"][every], mask=pair["mask"][every], reference=pair["reference"],
                         ground_truth=pair["target"][every], keypoints=pair["keypoints"][every],
                         keypoints_kind=np.asarray(clips.keypoints_kind))  # read when a condition reads them
        paths.append(path)
    return paths
