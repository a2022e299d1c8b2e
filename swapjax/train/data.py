"""Training batches for this process, independent of how many processes the run has.

The data is cut into `data_shards` shards (default: one per process); each process reads the shards
`[i * k, (i + 1) * k)`, `k = data_shards / process_count`, and concatenates their rows. Since the global batch
is assembled with processes in order (`hosts.global_batch`), the global batch of a step is the same for any
process count that divides `data_shards`: a 1-process run with `train.data_shards=2` sees exactly the batches
of a 2-process run.

`ShardedBatches` is an iterator with `get_state` / `set_state` (bytes), which is what grain's Orbax handler
saves per process, so a checkpoint holds every shard's position. `make` builds one shard's iterator: the pixel
pipeline (`data.pipeline.make_iterator`) or the latent cache (`latent_cache.cache_iterator_factory`), which
share the shard, shuffle and batch order.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import jax
import numpy as np

from swapjax.errors import require
from swapjax.data.config import DataConfig
from swapjax.data.pipeline import make_iterator


class ShardedBatches:
    """This process's shards of the training data, batches concatenated along the rows."""

    def __init__(self, cfg: DataConfig, seed: int, data_shards: int | None = None,
                 make: Callable[..., Any] = make_iterator):
        procs, index = jax.process_count(), jax.process_index()
        shards = procs if data_shards is None else data_shards
        require(shards % procs == 0, f"train.data_shards ({shards}) must be a multiple of the {procs} processes")
        per = shards // procs
        self.iterators = [make(cfg, seed, shard_index=index * per + i, shard_count=shards) for i in range(per)]

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        parts = [next(it) for it in self.iterators]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def get_state(self) -> bytes:
        return json.dumps([it.get_state() for it in self.iterators]).encode()

    def set_state(self, state: bytes) -> None:
        states = json.loads(state)
        if len(states) != len(self.iterators):
            raise ValueError(f"data iterator state holds {len(states)} shards, this process reads "
                             f"{len(self.iterators)}: resume with the same train.data_shards and process count")
        for it, s in zip(self.iterators, states):
            it.set_state(s)

    def start_prefetch(self) -> None:
        for it in self.iterators:
            if hasattr(it, "start_prefetch"):
                it.start_prefetch()


ENCODING_KEYS = ("context", "image_context")  # what EncodedBatches adds to a batch


class EncodedBatches:
    """Batches of `batches` with each record's text and image encodings added (`python -m swapjax.data.encode`,
    read by `record_index`): `context` `[B, text_len, text_dim]` and, when written, `image_context`
    `[B, Li, image_dim]` (the CLIP tokens of the record's reference, for I2V-based models). Checkpoint state is
    the wrapped iterator's."""

    def __init__(self, batches: Any, folder: str, text_len: int):
        from swapjax.data.encode import read_encoding

        self.batches, self.folder, self.text_len, self.read = batches, folder, text_len, read_encoding

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batch = next(self.batches)
        found = [self.read(self.folder, int(i), self.text_len) for i in batch["record_index"]]
        batch["context"] = np.stack([e["text"] for e in found])  # [B, Lt, text_dim]
        if all("image" in e for e in found):
            batch["image_context"] = np.stack([e["image"] for e in found])  # [B, Li, image_dim]
        return batch

    def get_state(self) -> bytes:
        return self.batches.get_state()

    def set_state(self, state: bytes) -> None:
        self.batches.set_state(state)

    def start_prefetch(self) -> None:
        self.batches.start_prefetch()
