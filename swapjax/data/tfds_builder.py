"""TFDS dataset of swap clips in ArrayRecord files, built from a folder of videos + masks (+ keypoints).

Source folder layout (`python -m swapjax.data.build --src FOLDER --out DIR`)::

    FOLDER/
      walk.mp4                 a video (.mp4 .mov .mkv .avi .webm .m4v); its stem names the clip
      walk_mask.mp4            its subject mask track, exactly one of:
                                 walk_mask.<video suffix> (grey >= 128 is subject), walk_mask/ (one image per
                                 frame; hidden files ignored), walk_mask.png (one static mask for every frame),
                                 walk_mask.npz / walk_mask.npy, walk_mask.json (box track)
      walk_keypoints.json      optional keypoint track (format in swapjax.data.tracks)
      train/  validation/  test/   optional: split folders laid out as above; without them every clip goes to
                                   the "train" split

Every input is validated (decoded in full, so truncated files are caught) before anything is written; a
problem raises `InputError` naming the file. One record per clip, or per chunk of a long clip so a record
stays under `max_record_mib` (chunks where the subject never appears are left out): `video` uint8 `[F, H, W, 3]`, `mask` uint8 `[F, H, W]` {0, 1} (zlib, lossless),
`keypoints` float32 `[F, K, 3]` (K = 0 without a track), `keypoints_kind` ("" without a track), `fps`, `name`,
`start_frame`. Only `Tensor`/`Text`/scalar features are used, so building and reading need no TensorFlow.
Read back with `open_source(DIR, split)` (a picklable grain source) or `SwapClips(data_dir=DIR)
.as_data_source(split)`.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from swapjax.atomic import atomic_write, scratch_dir
from swapjax.data import tracks, video_io
from swapjax.data.validate import check_keypoints
from swapjax.errors import InputError

SPLITS = ("train", "validation", "test")
MASK_SUFFIXES = video_io.MASK_FILE_SUFFIXES


@dataclasses.dataclass(frozen=True)
class ClipFiles:
    """The files of one clip in a source folder."""

    name: str
    video: pathlib.Path
    mask: pathlib.Path
    keypoints: pathlib.Path | None


def find_clips(folder: pathlib.Path) -> list[ClipFiles]:
    """Pairs every video in `folder` with its mask (and keypoints); an orphan or ambiguous file is an error."""
    files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    videos = [p for p in files if p.is_file() and p.suffix.lower() in video_io.VIDEO_SUFFIXES
              and not p.stem.endswith("_mask")]
    stems = {v.stem for v in videos}
    if len(stems) != len(videos):
        dupes = sorted({v.name for v in videos if sum(w.stem == v.stem for w in videos) > 1})
        raise InputError(f"source folder {str(folder)!r} has several videos with one name {dupes}: keep one")
    for p in files:  # masks and keypoints must belong to a video
        for tag in ("_mask", "_keypoints"):
            base = p.name if p.is_dir() else p.stem
            if base.endswith(tag) and base[: -len(tag)] not in stems:
                raise InputError(f"{tag[1:]} {str(p)!r} has no video {base[: -len(tag)]}.mp4 (or another video "
                                 "suffix) next to it: add the video or remove the file")
    clips = []
    for video in videos:
        candidates = [p for p in files if (p.name == f"{video.stem}_mask" and p.is_dir())
                      or (p.stem == f"{video.stem}_mask" and p.suffix.lower() in MASK_SUFFIXES)]
        unreadable = [p for p in files if p.stem == f"{video.stem}_mask" and p not in candidates]
        if not candidates and unreadable:  # e.g. walk_mask.gif: name it rather than report no mask
            raise InputError(f"mask {str(unreadable[0])!r} has unsupported format {unreadable[0].suffix!r}: "
                             f"convert it to one of {', '.join(MASK_SUFFIXES)} or a folder of PNGs")
        if not candidates:
            raise InputError(f"video {str(video)!r} has no mask: add {video.stem}_mask.mp4, {video.stem}_mask/ "
                             f"(PNGs), {video.stem}_mask.png (static), {video.stem}_mask.npz or "
                             f"{video.stem}_mask.json next to it")
        if len(candidates) > 1:
            raise InputError(f"video {str(video)!r} has several masks {[c.name for c in candidates]}: keep one")
        keypoints = folder / f"{video.stem}_keypoints.json"
        clips.append(ClipFiles(video.stem, video, candidates[0], keypoints if keypoints.exists() else None))
    return clips


def find_splits(src: str | pathlib.Path) -> dict[str, list[ClipFiles]]:
    """Split name -> clips of a source folder (split subfolders, or everything in "train")."""
    src = pathlib.Path(src)
    if not src.is_dir():
        raise InputError(f"source folder {str(src)!r} does not exist or is not a folder: pass --src FOLDER")
    split_dirs = [src / s for s in SPLITS if (src / s).is_dir()]
    splits = {d.name: find_clips(d) for d in split_dirs} if split_dirs else {"train": find_clips(src)}
    for split, clips in splits.items():
        if not clips:
            where = src / split if split_dirs else src
            raise InputError(f"source folder {str(where)!r} holds no videos ({', '.join(video_io.VIDEO_SUFFIXES)})"
                             ": add clips with their masks (layout in swapjax.data.tfds_builder)")
    return splits


def load_clip(clip: ClipFiles) -> dict[str, np.ndarray | float | str]:
    """Reads and cross-checks one clip: video `[F, H, W, 3]`, mask `[F, H, W]`, keypoints `[F, K, 3]`."""
    video, fps, _ = video_io.read_video(clip.video)
    mask = video_io.read_mask(clip.mask, num_frames=video.shape[0], size=video.shape[1:3])
    kps, kind = np.zeros((video.shape[0], 0, 3), np.float32), ""
    if clip.keypoints is not None:
        kps, kind = tracks.read_keypoints(clip.keypoints, num_frames=video.shape[0])
        kps = check_keypoints(kps, f"keypoints {str(clip.keypoints)!r}", video.shape[0])
    return {"video": video, "mask": mask, "keypoints": kps, "keypoints_kind": kind, "fps": fps}


def validate_splits(splits: dict[str, list[ClipFiles]]) -> int:
    """Decodes and checks every clip (raises `InputError` on the first problem); returns the frame total."""
    total = 0
    for clips in splits.values():
        for clip in clips:
            total += load_clip(clip)["video"].shape[0]
    return total


class SwapClips(tfds.core.GeneratorBasedBuilder):
    """Swap clips (video, subject mask, optional keypoints); `src_dir` is only needed to build."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "uint8 frames and {0, 1} masks as Tensor features, optional keypoints."}
    # TFDS derives this through `importlib_resources`, a backport absent on Python >= 3.9 installs; it is only
    # used to look for a download-checksums file next to the code, which this builder (no downloads) lacks.
    code_path = pathlib.Path(__file__)

    def __init__(self, *, src_dir: str | os.PathLike | None = None, max_record_mib: float = 512.0, **kwargs):
        self._src_dir = None if src_dir is None else pathlib.Path(src_dir)
        self._max_record_bytes = int(max_record_mib * 2**20)
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        zlib = tfds.features.Encoding.ZLIB
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "video": tfds.features.Tensor(shape=(None, None, None, 3), dtype=np.uint8, encoding=zlib),
            "mask": tfds.features.Tensor(shape=(None, None, None), dtype=np.uint8, encoding=zlib),
            "keypoints": tfds.features.Tensor(shape=(None, None, 3), dtype=np.float32, encoding=zlib),
            "keypoints_kind": tfds.features.Text(),
            "fps": tfds.features.Scalar(dtype=np.float32),
            "name": tfds.features.Text(),
            "start_frame": tfds.features.Scalar(dtype=np.int64),
        }), description=__doc__)

    def _split_generators(self, dl_manager):
        if self._src_dir is None:
            raise InputError("SwapClips was asked to build without src_dir: use python -m swapjax.data.build")
        return {split: self._generate_examples(clips) for split, clips in find_splits(self._src_dir).items()}

    def _generate_examples(self, clips: list[ClipFiles]):
        for clip in clips:
            data = load_clip(clip)
            num_frames, height, width, _ = data["video"].shape
            per_record = max(1, self._max_record_bytes // (height * width * 4))  # 3 video bytes + 1 mask byte
            for start in range(0, num_frames, per_record):
                sl = slice(start, start + per_record)
                if not data["mask"][sl].any():  # no subject in this chunk: nothing to learn a swap from
                    continue
                yield f"{clip.name}:{start:07d}", {
                    "video": data["video"][sl], "mask": data["mask"][sl], "keypoints": data["keypoints"][sl],
                    "keypoints_kind": data["keypoints_kind"], "fps": data["fps"], "name": clip.name,
                    "start_frame": start,
                }


def dataset_dir(out_dir: str | pathlib.Path) -> pathlib.Path:
    """Where `build_dataset(src, out_dir)` puts the dataset: `out_dir/swap_clips/<version>`."""
    return pathlib.Path(out_dir) / SwapClips.name / str(SwapClips.VERSION)


def build_dataset(src: str | pathlib.Path, out_dir: str | pathlib.Path, *, max_record_mib: float = 512.0,
                  overwrite: bool = False) -> dict[str, int]:
    """Validates every clip of `src`, then builds the ArrayRecord dataset under `out_dir`.

    The dataset is built in a temporary folder inside `out_dir` and moved into place when complete
    (`swapjax.atomic`), so a failure, a full disk (`OutputError`) or SIGTERM leaves `out_dir` as it was.
    Returns the number of records per split.
    """
    out_dir = pathlib.Path(out_dir)
    final = dataset_dir(out_dir)
    if final.exists() and not overwrite:
        raise InputError(f"output {str(final)!r} already holds a built dataset: pass --overwrite or another --out")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output {str(out_dir)!r} is a file: pass a folder as --out")
    splits = find_splits(src)
    validate_splits(splits)
    # TFDS builds into <data_dir>/swap_clips/<version>: build in a scratch folder, move that version folder
    # into the atomic temporary, which becomes `final` only when complete.
    with atomic_write(final, make_parents=True) as tmp, scratch_dir(final.parent, "swap_clips") as scratch:
        builder = SwapClips(data_dir=str(scratch), src_dir=src, max_record_mib=max_record_mib)
        builder.download_and_prepare(download_dir=str(scratch / "downloads"))
        counts = {split: info.num_examples for split, info in builder.info.splits.items()}
        os.replace(scratch / SwapClips.name / str(SwapClips.VERSION), tmp)
    return counts


class ClipSource:
    """Picklable grain source over a built split: `[i]` -> dict video `[F, H, W, 3]`, mask `[F, H, W]`,
    keypoints `[F, K, 3]`, keypoints_kind, fps, name, start_frame (of this chunk in the source video).

    The TFDS reader is opened lazily in each process (grain workers receive a pickled copy).
    """

    def __init__(self, data_dir: str | pathlib.Path, split: str = "train"):
        self.data_dir, self.split = str(data_dir), split
        self._source = None
        self._len = len(self._open())

    def _open(self):
        if self._source is None:
            if not dataset_dir(self.data_dir).is_dir():
                raise InputError(f"dataset folder {str(self.data_dir)!r} holds no {dataset_dir('.')} dataset: "
                                 "build one with python -m swapjax.data.build --src FOLDER --out DIR")
            builder = SwapClips(data_dir=self.data_dir)
            if self.split not in builder.info.splits:
                raise InputError(f"dataset {str(self.data_dir)!r} has no split {self.split!r}; it has "
                                 f"{sorted(builder.info.splits)}")
            self._source = builder.as_data_source(self.split)
        return self._source

    def __getstate__(self):
        return {"data_dir": self.data_dir, "split": self.split, "_len": self._len, "_source": None}

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> dict:
        record = self._open()[index]
        text = {k: v.decode() if isinstance(v, bytes) else str(v)
                for k, v in record.items() if k in ("keypoints_kind", "name")}
        return {"video": record["video"], "mask": record["mask"], "keypoints": record["keypoints"],
                "fps": float(record["fps"]), "start_frame": int(record["start_frame"]), **text}


def open_source(data_dir: str | pathlib.Path, split: str = "train") -> ClipSource:
    """The grain source of one split of a dataset built by `build_dataset` into `data_dir`."""
    return ClipSource(data_dir, split)
