"""Writes the offline latent cache (format and trade-offs in `latent_cache.py`; CLI in `cache.py`).

Every record `r` of the run's data and every draw `d < K` is built exactly as the pixel pipeline builds record
`r` in epoch `d` (`pipeline.ExampleBuilder`), batched `data.batch_size` at a time (the last batch padded), encoded
by `prepare.encode_batch` on the config's mesh and written row by row into memory-mapped `.npy` files. The folder
appears only when complete (`swapjax.atomic`). Single process.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib

import grain
import jax
import numpy as np
from flax import nnx
from tqdm import tqdm

from swapjax.config import Config
from swapjax.errors import ConfigError, require
from swapjax.data.pipeline import ExampleBuilder, make_source
from swapjax.parallel import LOGICAL_AXIS_RULES, make_mesh
from swapjax.train.hosts import global_batch
from swapjax.train.latent_cache import (FORMAT, INDEX_FILE, KINDS, PIXEL_ARRAYS, data_json, draw_dir, to_stored,
                                        vae_fingerprint)
from swapjax.train.prepare import LATENT_KEYS, PIXEL_KEYS, encode_batch
from swapjax.train.vae_stage import load_vae


def cache_arrays(config: Config, pixels: bool) -> tuple[str, ...]:
    """The arrays a cache for `config` holds (module docstring of `latent_cache.py`)."""
    keys = list(LATENT_KEYS) + (["condition_latents"] if config.data.with_condition else []) + ["reference"]
    if pixels:
        keys += [k for k in PIXEL_ARRAYS if k != "keypoints" or config.data.num_keypoints]
    return tuple(keys)


def write_cache(config: Config, out: pathlib.Path, *, draws: int, pixels: bool, progress: bool = True) -> dict:
    """Encodes `draws` examples per record of `config.data` with the run's VAE (`train.vae_init`, else the random
    one from the seed, as the DiT stage would) into the new folder `out`; returns the index written."""
    require(config.swap is not None, f"config {config.name!r} has no swap model (Config.swap is None): the cache "
            "holds the swap model's inputs; start from configs/swap_tiny.py")
    require(draws >= 1, f"--draws ({draws}) must be >= 1 (examples cached per record)")
    require(jax.process_count() == 1, "python -m swapjax.train.cache_cli runs in one process: start it on one host")
    vae_init = config.train.vae_init
    require(vae_init is None or (pathlib.Path(vae_init) / "swapjax_config.json").is_file(),
            f"the VAE {vae_init!r} (--vae or train.vae_init) is not a converted VAE folder: pass one written by "
            "python -m swapjax.convert or a VAE stage (WORKDIR/vae)")
    from swapjax.atomic import atomic_write

    mesh = make_mesh(config.mesh)
    shards = mesh.shape["data"] * mesh.shape["fsdp"]
    require(config.data.batch_size % shards == 0, f"DataConfig.batch_size ({config.data.batch_size}) must be a "
            f"multiple of mesh data x fsdp ({shards}): change the batch size or the mesh")
    with jax.set_mesh(mesh), nnx.logical_axis_rules(LOGICAL_AXIS_RULES):
        vae_graphdef, vae_params, vae_cfg = load_vae(config, out, mesh)
        encode = jax.jit(functools.partial(encode_batch, vae_graphdef, vae=vae_cfg, swap=config.swap,
                                           with_condition=config.data.with_condition))
        with atomic_write(out, replace=False, make_parents=True) as tmp:
            tmp.mkdir()
            arrays = _encode_all(config, tmp, encode, vae_params, mesh, draws, cache_arrays(config, pixels), progress)
            index = {"format": FORMAT, "records": len(make_source(config.data, config.seed)), "draws": draws,
                     "seed": config.seed, "arrays": arrays, "data": data_json(config.data),
                     "vae": json.loads(json.dumps(dataclasses.asdict(vae_cfg), default=str)),
                     "vae_fingerprint": vae_fingerprint(vae_params)}
            (tmp / INDEX_FILE).write_text(json.dumps(index, indent=1) + "\n")
    return index


def _encode_all(config: Config, folder: pathlib.Path, encode, vae_params, mesh, draws: int, keys: tuple[str, ...],
                progress: bool) -> dict:
    data, seed = config.data, config.seed
    source = make_source(data, seed)
    n, b = len(source), data.batch_size
    build = ExampleBuilder(data, source, seed, n)  # position i -> epoch i // n: draw d of record r is i = d n + r
    examples = grain.MapDataset.range(draws * n).map(lambda i: build(i, i % n)).batch(b, drop_remainder=False)
    reader = examples.to_iter_dataset(grain.ReadOptions(num_threads=data.read_threads,
                                                        prefetch_buffer_size=data.prefetch_batches))
    files: dict[tuple[int, str], np.ndarray] = {}
    meta: dict[str, dict] = {}
    start = 0
    for batch in tqdm(reader, total=-(-draws * n // b), desc="latent cache", disable=not progress):
        rows = len(batch["record_index"])
        padded = {k: np.concatenate([v, np.repeat(v[-1:], b - rows, axis=0)]) for k, v in batch.items()}
        encoded = jax.device_get(encode(vae_params, global_batch(padded, mesh, PIXEL_KEYS)))
        values = {k: (encoded[k] if k in encoded else batch[k])[:rows] for k in keys}
        for j in range(rows):
            d, r = divmod(start + j, n)
            for k in keys:
                row = to_stored(k, values[k][j])
                if (d, k) not in files:
                    draw_dir(folder, d).mkdir(exist_ok=True)
                    files[d, k] = np.lib.format.open_memmap(draw_dir(folder, d) / f"{k}.npy", mode="w+",
                                                            dtype=row.dtype, shape=(n, *row.shape))
                    meta[k] = {"shape": list(row.shape), "dtype": str(row.dtype), "kind": KINDS[k]}
                files[d, k][r] = row
        start += rows
    if start != draws * n:
        raise ConfigError(f"latent cache: wrote {start} of {draws * n} examples; the data source changed while reading")
    for f in files.values():
        f.flush()
    return meta
