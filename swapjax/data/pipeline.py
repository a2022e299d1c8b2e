"""grain pipeline: clips (synthetic or TFDS) -> batches of swap training examples, per process.

    it = make_iterator(cfg.data, seed=cfg.seed)        # shard = this JAX process
    batch = next(it)                                    # dict of numpy arrays, leading dim B_local
    state = it.get_state(); ...; it.set_state(state)    # resumes exactly at the next batch

Order of operations (all index-based, so the stream is a pure function of (seed, shard, position)):
record indices `0..N-1` -> this shard's `[shard_index::shard_count]` -> per-epoch shuffle (grain's index
shuffle, reseeded each epoch) -> repeat -> load record and build the example with its own generator
`np.random.default_rng([seed, epoch, record_index])` -> batch of `batch_size // shard_count` -> threads /
worker processes (`cfg.num_workers`; grain keeps the order, so workers change speed, not content).

Batches are **per process**: leading dim `B_local = cfg.batch_size // shard_count`; the train loop assembles
global arrays with `jax.make_array_from_process_local_data`. Keys (float32 unless noted; layouts in
docs/design.md, "Conventions"):
  video `[B, F, H, W, 3]` in [-1, 1]       mask `[B, F, H, W]` {0, 1}: training mask (region to regenerate)
  subject_mask `[B, F, H, W]` {0, 1}        agnostic `[B, F, H, W, 3]` = video * (1 - mask)
  reference `[B, S, S, 3]` in [-1, 1]      condition `[B, F, H, W, 3]` in [-1, 1] (zeros when off)
  record_index int32 `[B]`: the source record each example came from.
  keypoints `[B, F, K, 3]` (only when `cfg.num_keypoints = K > 0`): x, y in the example's pixels, visibility.

Worker processes are spawned: the entry point needs an `if __name__ == "__main__":` guard, and absl flags
are marked parsed here when they are not (grain's workers read them).
"""

from __future__ import annotations

import dataclasses

import cv2
import grain
import numpy as np

from swapjax.errors import ConfigError, require
from swapjax.data.config import DataConfig, MaskConfig
from swapjax.data import keypoints as keypoint_render
from swapjax.data import masks


def make_source(cfg: DataConfig, seed: int = 0, split: str = "train"):
    """The random-access clip source named by `cfg.source` (picklable, `len` + `[i]`).

    For the synthetic source `split` picks the families (`synthetic.scene_settings`): "train" (what training
    reads: never a held-out family) or "held_out" (`cfg.held_out_families` in their categories), the latter drawn
    from its own seed stream, so none of its clips is a training clip.
    """
    if cfg.source == "tfds":
        require(split == "train", f"make_source: split {split!r} (the held-out synthetic families) needs "
                "data.source = 'synthetic'; a TFDS dataset's splits are named by data.split")
        from swapjax.data.tfds_builder import open_source  # TFDS is imported only when it is used

        return open_source(cfg.tfds_dir, cfg.split)
    from swapjax.data.synthetic import HELD_OUT_STREAM, SyntheticClips, scene_settings

    span = (cfg.num_frames - 1) * cfg.frame_stride + 1  # frames one training clip spans
    scene = scene_settings(cfg, split)
    return SyntheticClips(cfg.height, cfg.width, span, cfg.num_synthetic_clips, seed, scene=scene,
                          stream=HELD_OUT_STREAM if split == "held_out" else 0)


def sample_frames(num_available: int, present: np.ndarray, num_frames: int, stride: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Frame indices `[F]` of one training clip: `num_frames` frames `stride` apart, starting at random where
    the window shows the subject (`present`: bool `[N]`). Short records use a smaller stride, then repeat
    their last frame."""
    while stride > 1 and (num_frames - 1) * stride + 1 > num_available:
        stride -= 1
    span = (num_frames - 1) * stride + 1
    starts = np.arange(max(1, num_available - span + 1))
    hit = np.cumsum(np.concatenate([[0], present.astype(np.int64)]))  # hit[j] = subject frames before j
    window = hit[np.minimum(starts + span, num_available)] - hit[starts]  # [starts] subject frames inside
    candidates = starts[window > 0] if (window > 0).any() else starts
    start = int(rng.choice(candidates))
    return np.minimum(start + stride * np.arange(num_frames), num_available - 1)


def crop_window(size: int, box: tuple[int | np.integer, int | np.integer], out: int, rng: np.random.Generator) -> int:
    """Offset of a crop of length `out` within `size` that keeps `box` = (lo, hi) inside when it fits
    (uniform among such offsets), else centred on the box."""
    lo, hi = max(0, box[1] - out), min(size - out, box[0])
    if lo <= hi:
        return int(rng.integers(lo, hi + 1))
    return int(np.clip(round((box[0] + box[1] - out) / 2), 0, size - out))


def _resize(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resizes `[F, h, w, C]` frames to `[F, height, width, C]` (area filter down, linear up)."""
    if frames.shape[1:3] == (height, width):
        return frames
    interp = cv2.INTER_AREA if frames.shape[1] * frames.shape[2] > height * width else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (width, height), interpolation=interp).reshape(height, width, -1)
                     for f in frames])


def _to_unit(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) / 127.5 - 1.0  # uint8 -> [-1, 1]


@dataclasses.dataclass(frozen=True)
class ExampleBuilder:
    """Record -> training example (`__call__(position, record_index)`), picklable for grain workers."""

    cfg: DataConfig
    source: object
    seed: int
    epoch_length: int  # records per epoch in this shard

    def __call__(self, position: int, record_index: int) -> dict[str, np.ndarray]:
        epoch = position // self.epoch_length
        rng = np.random.default_rng([self.seed, epoch, int(record_index)])
        return self.build(self.source[int(record_index)], rng, int(record_index))

    def build(self, record: dict, rng: np.random.Generator, record_index: int = 0) -> dict[str, np.ndarray]:
        """One example from a record {video uint8 `[N, h, w, 3]`, mask `[N, h, w]`, optional keypoints
        `[N, K, 3]` and keypoints_kind (default "pose"); for the SwapAnyHead options (`cfg.mask`), optional
        `cloth` and `hair` masks `[N, h, w]` and a clean `background` `[N, h, w, 3]`}."""
        cfg = self.cfg
        video, subject = np.asarray(record["video"]), np.asarray(record["mask"]) != 0
        frames = sample_frames(len(video), subject.any(axis=(1, 2)), cfg.num_frames, cfg.frame_stride, rng)
        video, subject = video[frames], subject[frames]  # [F, h, w, 3], [F, h, w]
        if cfg.mask.p_foreground_scale > 0 and rng.random() < cfg.mask.p_foreground_scale:  # SwapAnyHead
            video, subject = _scaled_foreground(record, frames, video, subject, cfg.mask, rng)

        h, w = video.shape[1:3]
        scale = max(cfg.height / h, cfg.width / w)  # cover the target, crop the rest
        crop_h, crop_w = min(h, round(cfg.height / scale)), min(w, round(cfg.width / scale))
        rows, cols = np.flatnonzero(subject.any(axis=(0, 2))), np.flatnonzero(subject.any(axis=(0, 1)))
        y0 = crop_window(h, (rows[0], rows[-1] + 1) if rows.size else (0, h), crop_h, rng)
        x0 = crop_window(w, (cols[0], cols[-1] + 1) if cols.size else (0, w), crop_w, rng)
        video = _resize(video[:, y0:y0 + crop_h, x0:x0 + crop_w], cfg.height, cfg.width)  # [F, H, W, 3]
        coverage = _resize(subject[:, y0:y0 + crop_h, x0:x0 + crop_w, None].astype(np.float32), cfg.height,
                           cfg.width)[..., 0]  # [F, H, W] fraction of each pixel covered by the subject
        subject = (coverage > 0.0).astype(np.uint8)  # any coverage: small subjects never vanish

        train_mask = masks.training_mask(subject, rng, cfg.mask)  # [F, H, W]
        if cfg.mask.hair_enhance and "cloth" in record and "hair" in record:  # SwapAnyHead, head-swapping records
            body = [_crop_mask(m, (y0, x0, crop_h, crop_w), cfg.height, cfg.width)
                    for m in _hair_masks(record, frames, cfg.mask.shoulder_keypoints)]  # cloth, hair, shoulders
            train_mask = masks.hair_enhanced_mask(train_mask, *body)
        reference = masks.reference_crop(video, subject, rng, cfg.ref_size, jitter=cfg.stage == 2)  # [S, S, 3]
        condition = np.zeros(video.shape, np.float32)
        kps = np.asarray(record.get("keypoints", np.zeros((len(frames), 0, 3))), np.float32)
        if kps.shape[1] > 0:
            kps = kps[frames].copy()  # [F, K, 3], moved into the example's pixels
            kps[..., 0] = (kps[..., 0] - x0) * (cfg.width / crop_w)
            kps[..., 1] = (kps[..., 1] - y0) * (cfg.height / crop_h)
        if cfg.with_condition and kps.shape[1] > 0:
            kind = record.get("keypoints_kind") or "pose"
            condition = _to_unit(keypoint_render.render_keypoints(kps, cfg.height, cfg.width, kind))

        pixels = _to_unit(video)  # [F, H, W, 3]
        keep = 1.0 - train_mask.astype(np.float32)  # [F, H, W]
        example = {
            "video": pixels,
            "mask": train_mask.astype(np.float32),
            "subject_mask": subject.astype(np.float32),
            "agnostic": pixels * keep[..., None],
            "reference": _to_unit(reference),
            "condition": condition,
            "record_index": np.int32(record_index),
        }
        if cfg.num_keypoints:
            example["keypoints"] = fixed_keypoints(kps, cfg.num_keypoints, f"record {record_index}",
                                                   "raise data.num_keypoints to at least")
        return example


def _scaled_foreground(record: dict, frames: np.ndarray, video: np.ndarray, subject: np.ndarray, cfg: MaskConfig,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`masks.rescale_foreground` with `s ~ U[foreground_scale_min, foreground_scale_max]` on the record's
    `background` (a clean plate `[N, h, w, 3]`) when it has one, else the inpainted frames; subject as bool."""
    background = record.get("background")
    background = None if background is None else np.asarray(background)[frames]
    scale = rng.uniform(cfg.foreground_scale_min, cfg.foreground_scale_max)
    video, subject = masks.rescale_foreground(video, subject, scale, background)
    return video, subject != 0


def _hair_masks(record: dict, frames: np.ndarray, shoulders: tuple[int, int]) -> list[np.ndarray]:
    """A head-swapping record's cloth, hair and shoulder-rectangle masks `[F, h, w]` for the sampled frames; the
    rectangles come from its keypoints (`masks.shoulder_boxes`), none where it has no such keypoints."""
    cloth, hair = np.asarray(record["cloth"])[frames] != 0, np.asarray(record["hair"])[frames] != 0
    kps = np.asarray(record.get("keypoints", np.zeros((len(record["cloth"]), 0, 3))), np.float32)[frames]
    rect = np.zeros(cloth.shape, np.uint8)
    if kps.shape[1] > max(shoulders):
        xyxy = masks.shoulder_boxes(kps, *shoulders)  # [F, 4] (x0, y0, x1, y1)
        rect = masks.box_mask(xyxy[:, [1, 0, 3, 2]].astype(np.int64), *cloth.shape[1:])
    return [cloth, hair, rect]


def _crop_mask(mask: np.ndarray, window: tuple[int, int, int, int], height: int, width: int) -> np.ndarray:
    """A record-space mask `[F, h, w]` through the example's crop `(y0, x0, crop_h, crop_w)` and resize, as the
    subject goes: a pixel is on when any of its area was. uint8 `[F, H, W]`."""
    y0, x0, crop_h, crop_w = window
    coverage = _resize(mask[:, y0:y0 + crop_h, x0:x0 + crop_w, None].astype(np.float32), height, width)[..., 0]
    return (coverage > 0.0).astype(np.uint8)


def fixed_keypoints(kps: np.ndarray, count: int, what: str, fix: str) -> np.ndarray:
    """`[F, K, 3]` -> `[F, count, 3]`, padded with invisible points (visibility 0) so every example has `count`
    (training's examples, and the sampler's keypoint tracks the same way); more than `count` is a `ValueError`
    naming `what` and the fix."""
    if kps.shape[1] > count:
        raise ValueError(f"{what} has {kps.shape[1]} keypoints per frame, more than the {count} the run reads: "
                         f"{fix} {kps.shape[1]}")
    out = np.zeros((kps.shape[0], count, 3), np.float32)
    out[:, :kps.shape[1]] = kps
    return out


def _default_shard(shard_index: int | None, shard_count: int | None) -> tuple[int, int]:
    if shard_index is None or shard_count is None:
        import jax  # only the main process resolves the default shard; workers never import jax for this

        shard_index = jax.process_index() if shard_index is None else shard_index
        shard_count = jax.process_count() if shard_count is None else shard_count
    if not 0 <= shard_index < shard_count:
        raise ConfigError(f"data shard_index ({shard_index}) must be in [0, shard_count = {shard_count})")
    return shard_index, shard_count


def make_dataset(cfg: DataConfig, seed: int, *, shard_index: int | None = None, shard_count: int | None = None,
                 num_epochs: int | None = None, source=None) -> grain.MapDataset:
    """The per-process `MapDataset` of batches (infinite unless `num_epochs`); see the module docstring.

    `shard_index` / `shard_count` default to `jax.process_index()` / `jax.process_count()`; `source`
    overrides `make_source(cfg, seed)` (any picklable `len` + `[i]` clip source).
    """
    shard_index, shard_count = _default_shard(shard_index, shard_count)
    if cfg.batch_size % shard_count:
        raise ConfigError(f"DataConfig.batch_size ({cfg.batch_size}) must be divisible by the number of data "
                          f"shards / processes ({shard_count})")
    source = make_source(cfg, seed) if source is None else source
    if len(source) < shard_count:
        raise ConfigError(f"the data source has {len(source)} clips, fewer than the {shard_count} shards: "
                          "add clips or use fewer processes")
    ds = grain.MapDataset.range(len(source))[shard_index::shard_count]
    epoch_length = len(ds)
    if cfg.shuffle:
        ds = ds.shuffle(seed=seed % 2**32)
    ds = ds.repeat(num_epochs)
    ds = ds.map_with_index(ExampleBuilder(cfg, source, seed, epoch_length))
    return ds.batch(cfg.batch_size // shard_count, drop_remainder=True)


def make_iterator(cfg: DataConfig, seed: int, **kwargs) -> grain.DatasetIterator:
    """A checkpointable iterator over `make_dataset(cfg, seed, **kwargs)`, with `cfg.num_workers` processes.

    `it.get_state()` / `it.set_state(state)` (or `grain.checkpoint.CheckpointSave(it)` with orbax) resume at
    exactly the next batch. Close it (`it.close()` where present) to stop worker processes early.
    """
    ds = make_dataset(cfg, seed, **kwargs).to_iter_dataset(
        grain.ReadOptions(num_threads=cfg.read_threads, prefetch_buffer_size=cfg.prefetch_batches))
    if cfg.num_workers > 0:
        from absl import flags

        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()  # grain workers read absl flags; a plain script never parsed them
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=cfg.num_workers,
                                                         per_worker_buffer_size=cfg.prefetch_batches))
    return iter(ds)
