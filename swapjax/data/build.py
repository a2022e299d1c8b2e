"""Builds the TFDS/ArrayRecord swap-clip dataset from a folder of videos and masks.

    python -m swapjax.data.build --src FOLDER --out DIR [--max-record-mib 512] [--overwrite]

The folder layout is documented in `swapjax.data.tfds_builder`. The arguments and the output folder are
checked first, then every input is decoded and checked; a bad one stops the build with a one-line error naming
it (exit code 2) and leaves DIR as it was. A full disk, SIGTERM or Ctrl-C while writing also exits 2 with one
line, after removing what was written. Train with
`DataConfig(source="tfds", tfds_dir=DIR)`.
"""

from __future__ import annotations

import math
import sys
import time

from swapjax.atomic import Terminated, check_output
from swapjax.cli_parser import OneLineParser
from swapjax.entry import EXIT_BAD_INPUT, EXIT_OK, run_main, say
from swapjax.errors import InputError

PROG = "python -m swapjax.data.build"

def check_max_record_mib(value: float) -> float:
    """Returns `value` if it is a finite size in MiB above zero."""
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"--max-record-mib {value:g} is not a size: pass a finite number of MiB above 0 "
                         "(e.g. 512, the default)")
    return value


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; returns the exit code (0 built; 2 for bad input, a full disk, or SIGTERM / Ctrl-C
    while building; every failure is one line on stderr and leaves --out as it was: a folder the run created,
    with its parents, is removed)."""
    parser = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", required=True, help="folder of videos + masks (+ keypoints)")
    parser.add_argument("--out", required=True, help="TFDS data dir; the dataset lands in OUT/swap_clips/1.0.0")
    parser.add_argument("--max-record-mib", type=float, default=512.0,
                        help="split long clips so that one record stays under this size (default 512)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset in OUT")
    args = parser.parse_args(argv)
    return run_main(lambda: _run(args), creates=[args.out])


def _run(args) -> int:
    check_max_record_mib(args.max_record_mib)
    check_output(args.out, flag="--out", replace=True)  # OUT may exist: it is a folder of datasets

    import tensorflow_datasets as tfds  # heavy import after the cheap argument checks

    from swapjax.data import tfds_builder

    tfds.disable_progress_bar()
    start = time.perf_counter()
    try:  # a bad clip or a full disk while writing is an InputError (`swapjax.errors.OutputError`)
        counts = tfds_builder.build_dataset(args.src, args.out, max_record_mib=args.max_record_mib,
                                            overwrite=args.overwrite)
    except (Terminated, KeyboardInterrupt) as err:
        stop = "SIGTERM" if isinstance(err, Terminated) else "Ctrl-C"
        say(f"stopped by {stop} while building the dataset: --out {args.out!r} was left as it was (the partial "
            "output was removed); run the command again to build")
        return EXIT_BAD_INPUT
    summary = ", ".join(f"{split}: {n} records" for split, n in sorted(counts.items()))
    print(f"built {tfds_builder.dataset_dir(args.out)} ({summary}) in {time.perf_counter() - start:.1f} s")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
