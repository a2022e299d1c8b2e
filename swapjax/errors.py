"""The project's error classes, on the ground floor: every room raises these, every entry point reports them.

Each message is one line that names the input, says what is wrong and how to fix it. `swapjax.entry.run_main`
maps them to exit code 2 and prints `error: <message>`; `foreign_message` translates the errors of the
libraries we stand on (orbax/tensorstore, TFDS, PyAV, the OS) into such a line at the edge. This module imports
nothing of swapjax (docs/design.md, "Rooms").
"""

from __future__ import annotations

import errno


class SwapjaxError(ValueError):
    """Base of the project's errors: a user-fixable problem; exit code 2 in every entry point."""


class ConfigError(SwapjaxError):
    """A configuration value is invalid; the message names the field, the value and the fix."""


class InputError(SwapjaxError):
    """A user input is unusable; the one-line message names it, says what is wrong and how to fix it."""


class OutputError(InputError):
    """An output path cannot be written; one line naming the output, what is wrong and the fix."""


class CheckpointError(SwapjaxError):
    """A checkpoint cannot be read or does not match the config; the message says which and how to fix it."""


def require(ok: object, message: str) -> None:
    """Raises `ConfigError(message)` unless `ok`."""
    if not ok:
        raise ConfigError(message)


# Markers in foreign errors' messages (tensorstore/orbax speak absl status codes) -> what they mean for a user.
# Compared in lower case.
_CHECKPOINT_MARKERS = ("out_of_range", "data_loss", "error reading", "error while reading", "unexpected end",
                       "truncated", "failed to decode", "error opening", "zarr", "ocdbt", "not_found: error")


def foreign_message(err: BaseException) -> str | None:
    """One line for an error raised by a library under us, or None when `err` is not one we recognise.

    Recognised: a permission or read-only-filesystem `OSError` (names the path), a full disk, a checkpoint
    that orbax/tensorstore cannot read (truncated or corrupt), PyAV's decoding errors and TFDS's missing
    dataset errors. The caller prints `error: <line>` and exits 2."""
    if isinstance(err, OSError) and err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        where = err.filename or "an output folder"
        return f"{where!s} cannot be written or read by this user ({err.strerror}): choose a folder you can write to"
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk filled up ({err.filename or 'output'}): free space there or write to another disk"
    module = type(err).__module__ or ""
    text = " ".join(str(err).split())[:300]
    if module.startswith("av") or type(err).__name__.endswith("InvalidDataError"):
        return f"a video could not be decoded ({text}): check that the file is a complete video PyAV can read"
    if module.startswith("tensorflow_datasets") or "DatasetNotFoundError" in type(err).__name__:
        return f"no dataset could be read ({text}): point data.dir at a folder written by swapjax.data.build"
    if any(marker in text.lower() for marker in _CHECKPOINT_MARKERS):
        return (f"a checkpoint could not be read, it is truncated or corrupt ({text}): point at a complete "
                "checkpoint (or delete the broken step and resume from the one before)")
    return None
