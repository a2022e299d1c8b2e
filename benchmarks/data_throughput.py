"""Training-example throughput of the grain pipeline (clips per second) with 0 and more worker processes.

    python benchmarks/data_throughput.py [--config configs/tiny.py] [--batches 40] [--workers 0 2]
                                         [--with-condition]

Reads the config's DataConfig (the tiny config: synthetic 64x64x5 clips), skips the first batches (worker
start-up, caches), then times `--batches` batches per worker count. Prints one `name: value` line per
setting and, last, `data_throughput_clips_per_s: <value with 0 workers>`.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from swapjax.config import load_config  # noqa: E402
from swapjax.data import pipeline  # noqa: E402

WARMUP_BATCHES = 3


def clips_per_second(data_cfg, seed: int, batches: int) -> float:
    """Times `batches` batches after a warm-up; returns clips per second (one process, shard 0 of 1)."""
    it = pipeline.make_iterator(data_cfg, seed, shard_index=0, shard_count=1)
    try:
        for _ in range(WARMUP_BATCHES):
            next(it)
        start = time.perf_counter()
        clips = sum(next(it)["video"].shape[0] for _ in range(batches))  # drop batches (shared memory) at once
        elapsed = time.perf_counter() - start
    finally:
        if hasattr(it, "close"):
            it.close()
    return clips / elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(pathlib.Path(__file__).resolve().parents[1] / "configs/tiny.py"))
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--with-condition", action="store_true", help="also render keypoint condition frames")
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    d = dataclasses.replace(cfg.data, with_condition=cfg.data.with_condition or args.with_condition)
    print(f"config {args.config}: source={d.source} clips {d.num_frames}x{d.height}x{d.width}, batch {d.batch_size}, "
          f"read_threads {d.read_threads}, condition {d.with_condition}")
    results = {}
    for workers in args.workers:
        results[workers] = clips_per_second(dataclasses.replace(d, num_workers=workers), cfg.seed, args.batches)
        print(f"data_throughput_workers_{workers}_clips_per_s: {results[workers]:.1f}", flush=True)
    if 0 in results:
        print(f"data_throughput_clips_per_s: {results[0]:.1f}")


if __name__ == "__main__":  # grain worker processes are spawned and re-import this file
    main()
