"""The offline latent cache: `prepare.encode_batch` run once per training example, so the loop never runs the
VAE encoder (written by `python -m swapjax.train.cache_cli`, read with `train.latent_cache=DIR`).

What is cached. A training example is random per epoch (frame window, crop, training mask, reference crop; all
drawn from `default_rng([seed, epoch, record])` in `data/pipeline.py`), so one clip's latents alone would freeze
every augmentation. The cache holds `draws = K` complete examples per record: draw `d` of record `r` is exactly the
example the pixel pipeline builds for `r` in epoch `d`. Reading epoch `e` uses draw `e mod K`, so a run of at most
K epochs reads the very batches, in the very order, that the pixel pipeline would give it (the same shuffle and
shards: `make_cache_dataset` mirrors `pipeline.make_dataset`); past K epochs the augmentations repeat. The
trade-off is disk (K x the latents of the dataset) against augmentation variety; the encoder work is the same as K
epochs of online encoding, done once and reused by every run (stage 1, stage 2, LoRA, sweeps) on the same data.

    DIR/cache.json           records N, draws K, seed, arrays {name: {shape, dtype, kind}}, data config (JSON),
                             VAE config and a fingerprint of the VAE's parameters
    DIR/draw_<d>/<name>.npy  `[N, ...]` per array (read memory-mapped, one row per example)

Arrays: `encode_batch`'s outputs (latents, agnostic_latents, reference_latents, condition_latents with condition
frames; float32) with the masks on the latent grid (mask_packed, subject; {0, 1} as uint8), the reference crop
(uint8) for the identity terms, and with `pixels` the target video (uint8), subject mask (uint8) and keypoints
that the MEAR and identity terms read (pixels cost ~12x the latents' disk). uint8 arrays hold exactly what the
pipeline computes (its pixels are `u / 127.5 - 1` of uint8 frames), so every array reads back bit-equal.
The cache is a plain random-access source, so grain reads it with its usual shuffling, sharding and checkpointable
iterator state: a run reading it resumes exactly like one reading pixels.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import pathlib
from typing import Any

import grain
import jax
import numpy as np
from jax.experimental import multihost_utils

from swapjax.errors import ConfigError
from swapjax.data.config import DataConfig

INDEX_FILE = "cache.json"
FORMAT = 1
# how an array is stored: "float" as is; "unit" pixels in [-1, 1] as uint8 (u / 127.5 - 1); "binary" {0, 1} as uint8
KINDS = {"latents": "float", "agnostic_latents": "float", "reference_latents": "float", "condition_latents": "float",
         "mask_packed": "binary", "subject": "binary", "reference": "unit", "video": "unit", "subject_mask": "binary",
         "keypoints": "float"}
PIXEL_ARRAYS = ("video", "subject_mask", "keypoints")  # stored with `pixels` only
# data fields that change what one example holds; the rest (batch size, readers, shuffle) only how it is read
LOADER_FIELDS = ("batch_size", "num_workers", "read_threads", "prefetch_batches", "shuffle")


def draw_dir(folder: pathlib.Path, draw: int) -> pathlib.Path:
    return pathlib.Path(folder) / f"draw_{draw:03d}"


def to_stored(name: str, value: np.ndarray) -> np.ndarray:
    """An array as the cache stores it (see `KINDS`); raises if the conversion would not read back exactly."""
    kind = KINDS[name]
    if kind == "float":
        return np.asarray(value, np.float32)
    stored = np.round((value + 1.0) * 127.5 if kind == "unit" else value).astype(np.uint8)
    if not np.array_equal(from_stored(name, stored), value):
        raise ValueError(f"latent cache: {name} does not read back exactly from uint8 (values off the {kind} grid)")
    return stored


def from_stored(name: str, stored: np.ndarray) -> np.ndarray:
    """Inverse of `to_stored`: float32 as the pipeline and `encode_batch` give it."""
    kind = KINDS[name]
    if kind == "unit":
        return stored.astype(np.float32) / 127.5 - 1.0
    return stored.astype(np.float32)


def vae_fingerprint(params: Any) -> str:
    """sha256 over the VAE's parameter names, shapes, dtypes and bytes (the cache must be read with its VAE)."""
    digest = hashlib.sha256()
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    for path, leaf in sorted(leaves, key=lambda pl: jax.tree_util.keystr(pl[0])):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable and not leaf.is_fully_replicated:
            value = np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        elif isinstance(leaf, jax.Array):
            value = np.asarray(leaf.addressable_data(0)) if leaf.is_fully_replicated else np.asarray(leaf)
        else:
            value = np.asarray(leaf)
        digest.update(f"{jax.tree_util.keystr(path)}:{value.dtype}:{value.shape};".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def data_json(cfg: DataConfig) -> dict:
    """The fields of `cfg` that shape an example, as JSON (tuples as lists)."""
    fields = json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
    return {k: v for k, v in fields.items() if k not in LOADER_FIELDS}


@dataclasses.dataclass(frozen=True)
class CacheIndex:
    """`DIR/cache.json` (see module docstring)."""

    folder: pathlib.Path
    records: int
    draws: int
    seed: int
    arrays: dict  # name -> {"shape": [...] per example, "dtype": str, "kind": str}
    data: dict
    vae: dict
    vae_fingerprint: str

    @classmethod
    def read(cls, folder: str | pathlib.Path) -> "CacheIndex":
        folder = pathlib.Path(folder).absolute()
        path = folder / INDEX_FILE
        if not path.is_file():
            raise ConfigError(f"train.latent_cache = {str(folder)!r} holds no {INDEX_FILE}: write one with "
                              "python -m swapjax.train.cache_cli --config CFG --out DIR")
        meta = json.loads(path.read_text())
        if meta.get("format") != FORMAT:
            raise ConfigError(f"latent cache {str(folder)!r} has format {meta.get('format')!r}, this code reads "
                              f"{FORMAT}: rebuild it with python -m swapjax.train.cache_cli")
        return cls(folder, meta["records"], meta["draws"], meta["seed"], meta["arrays"], meta["data"], meta["vae"],
                   meta["vae_fingerprint"])

    def check(self, data: DataConfig, keys: tuple[str, ...]) -> None:
        """Raises `ConfigError` unless the cache was written for `data` and holds `keys`."""
        differ = {k: (v, self.data.get(k)) for k, v in data_json(data).items() if self.data.get(k) != v}
        if differ:
            said = ", ".join(f"data.{k} = {run!r} (cache: {cached!r})" for k, (run, cached) in sorted(differ.items()))
            raise ConfigError(f"latent cache {str(self.folder)!r} was written for other data: {said}; rebuild it with "
                              "python -m swapjax.train.cache_cli for this config")
        missing = [k for k in keys if k not in self.arrays]
        if missing:
            raise ConfigError(f"latent cache {str(self.folder)!r} holds no {', '.join(missing)} (read by this run's "
                              "loss terms or condition frames): rebuild it with --pixels, or with this config")


class CachedExamples:
    """Grain map-with-index transform: (position, record index) -> one cached example (draw = epoch mod K).
    Picklable: the memory maps are opened lazily in whichever process reads."""

    def __init__(self, index: CacheIndex, keys: tuple[str, ...], epoch_length: int):
        self.folder, self.draws, self.keys, self.epoch_length = index.folder, index.draws, tuple(keys), epoch_length
        self._maps = None

    def __getstate__(self):
        return {**self.__dict__, "_maps": None}

    def _arrays(self, draw: int) -> dict[str, np.ndarray]:
        if self._maps is None:
            self._maps = {}
        if draw not in self._maps:
            self._maps[draw] = {k: np.load(draw_dir(self.folder, draw) / f"{k}.npy", mmap_mode="r") for k in self.keys}
        return self._maps[draw]

    def __call__(self, position: int, record_index: int) -> dict[str, np.ndarray]:
        arrays = self._arrays((position // self.epoch_length) % self.draws)
        out = {k: from_stored(k, np.asarray(arrays[k][int(record_index)])) for k in self.keys}
        out["record_index"] = np.int32(record_index)
        return out


def make_cache_dataset(cfg: DataConfig, seed: int, *, folder: str | pathlib.Path, keys: tuple[str, ...],
                       shard_index: int, shard_count: int, num_epochs: int | None = None) -> grain.MapDataset:
    """Batches of cached examples in exactly the order `pipeline.make_dataset(cfg, seed, ...)` gives pixel batches
    (same record shards, per-epoch shuffle and batch size); `keys` selects the arrays read."""
    index = CacheIndex.read(folder)
    if cfg.batch_size % shard_count:
        raise ConfigError(f"DataConfig.batch_size ({cfg.batch_size}) must be divisible by the number of data "
                          f"shards / processes ({shard_count})")
    ds = grain.MapDataset.range(index.records)[shard_index::shard_count]
    epoch_length = len(ds)
    if cfg.shuffle:
        ds = ds.shuffle(seed=seed % 2**32)
    ds = ds.repeat(num_epochs).map_with_index(CachedExamples(index, keys, epoch_length))
    return ds.batch(cfg.batch_size // shard_count, drop_remainder=True)


def make_cache_iterator(cfg: DataConfig, seed: int, *, folder: str | pathlib.Path, keys: tuple[str, ...],
                        shard_index: int, shard_count: int) -> grain.DatasetIterator:
    """A checkpointable iterator over `make_cache_dataset` (reading threads only: rows are memory-mapped reads)."""
    ds = make_cache_dataset(cfg, seed, folder=folder, keys=keys, shard_index=shard_index, shard_count=shard_count)
    return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=cfg.read_threads,
                                                     prefetch_buffer_size=cfg.prefetch_batches)))


def cache_iterator_factory(folder: str | pathlib.Path, keys: tuple[str, ...]):
    """`make_iterator`-shaped factory `(cfg, seed, shard_index=, shard_count=)` for `train.data.ShardedBatches`."""
    return functools.partial(make_cache_iterator, folder=folder, keys=keys)
