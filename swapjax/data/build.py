"""Builds the TFDS/ArrayRecord swap-clip dataset from a folder of videos and masks.

    python -m swapjax.data.build --src FOLDER --out DIR [--max-record-mib 512] [--overwrite]

The folder layout is documented in `swapjax.data.tfds_builder`. The arguments and the output folder are
checked first, then every input is decoded and checked; a bad one stops the build with a one-line error naming
it (exit code 2) and leaves DIR as it was. A full disk while writing also exits 2, after removing what was
written. Train with `DataConfig(source="tfds", tfds_dir=DIR)`.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import pathlib
import sys
import tempfile
import time

from swapjax.data.validate import InputError

PROG = "python -m swapjax.data.build"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one `error:` line (exit 2) instead of usage + message."""

    def error(self, message: str):
        print(f"error: {message}: see {PROG} --help", file=sys.stderr)
        sys.exit(2)


def check_max_record_mib(value: float) -> float:
    """Returns `value` if it is a finite size in MiB above zero."""
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"--max-record-mib {value:g} is not a size: pass a finite number of MiB above 0 "
                         "(e.g. 512, the default)")
    return value


def check_output_dir(out: str | pathlib.Path) -> pathlib.Path:
    """Checks that the dataset can be written under `out` before any input is read.

    `out` may not exist yet; its nearest existing ancestor must then be a folder this process can create
    entries in. Checked with `os.access` and a probe folder created and removed there, since `os.access`
    alone says yes to root on a read-only folder.
    """
    out = pathlib.Path(out)
    name = f"--out {str(out)!r}"
    if out.exists() and not out.is_dir():
        raise InputError(f"{name} is a file: pass a folder (it is created if missing)")
    existing = out
    while not existing.exists() and existing != existing.parent:  # the nearest ancestor on disk
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{name} lies under {str(existing)!r}, which is a file, not a folder: pass an --out "
                         "inside a folder")
    fix = "pass an --out in a folder you can write to, or change its permissions"
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{name} cannot be written: {str(existing)!r} is read-only for this user; {fix}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".swap_clips.probe-", dir=existing))
    except OSError as err:
        raise InputError(f"{name} cannot be written: creating a folder in {str(existing)!r} failed "
                         f"({err.strerror}); {fix}") from err
    return out


def _os_error(err: BaseException) -> OSError | None:
    """The first OSError carrying an errno in `err`'s chain (TFDS re-raises write errors without the errno)."""
    while err is not None:
        if isinstance(err, OSError) and err.errno is not None:
            return err
        err = err.__cause__ or err.__context__
    return None


def _write_failure(err: BaseException, out: str) -> str | None:
    """The one-line message for a write error the user can fix (disk full, no permission), else None."""
    cause = _os_error(err)
    code = None if cause is None else cause.errno
    # The ArrayRecord writer (C++) reports a full disk as a RuntimeError that only carries the system's message.
    if code in _DISK_FULL or (code is None and os.strerror(errno.ENOSPC) in str(err)):
        return (f"the disk holding --out {out!r} filled up while writing the dataset; the partial output was "
                "removed: free space there or pass an --out on another disk")
    if code in _NOT_WRITABLE:
        return (f"--out {out!r} could not be written ({cause.strerror}: {cause.filename}); the partial output "
                "was removed: pass an --out in a folder you can write to")
    return None


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; returns the exit code (0 built, 2 bad input with one line on stderr)."""
    parser = _OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", required=True, help="folder of videos + masks (+ keypoints)")
    parser.add_argument("--out", required=True, help="TFDS data dir; the dataset lands in OUT/swap_clips/1.0.0")
    parser.add_argument("--max-record-mib", type=float, default=512.0,
                        help="split long clips so that one record stays under this size (default 512)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset in OUT")
    args = parser.parse_args(argv)
    try:
        check_max_record_mib(args.max_record_mib)
        check_output_dir(args.out)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

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
    except (OSError, RuntimeError) as err:
        message = _write_failure(err, args.out)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    summary = ", ".join(f"{split}: {n} records" for split, n in sorted(counts.items()))
    print(f"built {tfds_builder.dataset_dir(args.out)} ({summary}) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
