"""Atomic output: every file or folder the project writes appears under its final name only when complete."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile
from typing import Iterator

from swapjax.data.validate import InputError


@contextlib.contextmanager
def atomic_write(path: str | pathlib.Path) -> Iterator[pathlib.Path]:
    """Yields a temporary path next to `path` (same suffix); renames it to `path` when the block succeeds.

    The temporary may be written as a file or created as a directory. On any exception it is removed and the
    exception propagates, leaving the directory as it was (an existing `path` is only replaced on success).
    """
    path = pathlib.Path(path)
    if not path.parent.is_dir():
        raise InputError(f"output directory {str(path.parent)!r} does not exist: create it first")
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.partial-", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    tmp = pathlib.Path(tmp_name)
    tmp.unlink()  # the writer creates the file (or directory) itself; mkstemp only reserved a unique name
    try:
        yield tmp
        if not tmp.exists():
            raise InputError(f"output {str(path)!r} was not written: the writer produced nothing")
        if tmp.is_dir() and path.is_dir():
            old = path.with_name(tmp.name + ".old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise
