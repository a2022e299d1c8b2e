"""Builds the TFDS/ArrayRecord swap-clip dataset from a folder of videos and masks.

    python -m swapjax.data.build --src FOLDER --out DIR [--max-record-mib 512] [--overwrite]

The folder layout is documented in `swapjax.data.tfds_builder`. Every input is decoded and checked first; a
bad one stops the build with a one-line error naming it (exit code 2) and leaves DIR as it was. Train with
`DataConfig(source="tfds", tfds_dir=DIR)`.
"""

from __future__ import annotations

import argparse
import sys
import time

from swapjax.data.validate import InputError


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; returns the exit code (0 built, 2 bad input with one line on stderr)."""
    parser = argparse.ArgumentParser(prog="python -m swapjax.data.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", required=True, help="folder of videos + masks (+ keypoints)")
    parser.add_argument("--out", required=True, help="TFDS data dir; the dataset lands in OUT/swap_clips/1.0.0")
    parser.add_argument("--max-record-mib", type=float, default=512.0,
                        help="split long clips so that one record stays under this size (default 512)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset in OUT")
    args = parser.parse_args(argv)
    if args.max_record_mib <= 0:
        parser.error(f"--max-record-mib ({args.max_record_mib}) must be positive")

    import tensorflow_datasets as tfds  # heavy import after the cheap argument checks

    from swapjax.data import tfds_builder

    tfds.disable_progress_bar()
    start = time.perf_counter()
    try:
        counts = tfds_builder.build_dataset(args.src, args.out, max_record_mib=args.max_record_mib,
                                            overwrite=args.overwrite)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = ", ".join(f"{split}: {n} records" for split, n in sorted(counts.items()))
    print(f"built {tfds_builder.dataset_dir(args.out)} ({summary}) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
