"""Atomic output: every file or folder swapjax writes appears under its final name only when complete.

    check_output(out)                      # before any heavy work: fails fast on an unusable --out
    with atomic_write(out) as tmp:         # tmp: a free path next to `out`, same suffix
        write_everything(tmp)              # a file, or a folder (tmp.mkdir() first)
    # here `out` exists, complete, with the permissions the umask asks for

Whatever stops the block removes the temporary (and any parent folder `atomic_write` created) and leaves
`out` as it was:
- an exception propagates after the cleanup; a full disk (ENOSPC / EDQUOT, also when a C++ writer reports it
  only in its message) becomes an `OutputError` naming the output and the fix;
- SIGTERM raises `Terminated`, a `SystemExit` with code 128 + 15 (the shell's convention), so the cleanup
  runs and an uncaught one ends the process with that code and no traceback. Ctrl-C keeps Python's own
  behaviour (`KeyboardInterrupt`, which unwinds through the same cleanup). The SIGTERM handler is installed
  only while a block runs, only in the main thread (where Python delivers signals) and only over the default
  action: a handler the program installed itself is left in charge.
A folder or file that a writer created as private (`mkdtemp` makes 0700) is given the mode a plain `mkdir` /
`open` would have: 0o777 / 0o666 without the umask's bits, at the top level only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import secrets
import shutil
import signal
import threading
import time
from typing import Iterator

from swapjax.errors import OutputError

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class Terminated(SystemExit):
    """SIGTERM arrived during `atomic_write` / `scratch_dir`; raised so that the cleanup runs. Exit code
    128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


def is_disk_full(err: BaseException) -> bool:
    """True if `err` (or an exception it was raised from) reports a full disk or an exceeded quota.

    Writers built on C++ (tensorstore, ArrayRecord) raise their own error types carrying only the system's
    message, so the message text is checked as well."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
            return True
        if any(os.strerror(code) in str(err) for code in DISK_FULL_ERRNOS):
            return True
        err = err.__cause__ or err.__context__
    return False


def check_output(path: str | pathlib.Path, *, flag: str = "--out", replace: bool = False,
                 overwrite_flag: str | None = None) -> pathlib.Path:
    """Checks, before any heavy work, that `atomic_write(path)` can succeed; returns `path` as an absolute Path.

    `path` must not exist (unless `replace`); its nearest existing ancestor must be a folder this process can
    create entries in (missing folders below it are created by `atomic_write(..., make_parents=True)`).
    `flag` names the option in the messages; `overwrite_flag` (e.g. "--overwrite"), the command's option that
    replaces an existing output, is offered as a fix when `path` exists. Raises `OutputError`.
    """
    path = pathlib.Path(path).absolute()
    name = f"{flag} {str(path)!r}"
    if path.exists() and not replace:
        fix = f"choose a new {flag}, delete it or pass {overwrite_flag}" if overwrite_flag else \
            f"choose a new {flag} or delete it"
        raise OutputError(f"{name} already exists: {fix}")
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"{name} cannot be created: {str(ancestor)!r} is a file, not a folder; choose a "
                          f"{flag} inside a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"{name} cannot be created: the folder {str(ancestor)!r} is read-only for this user; "
                          f"choose a {flag} in a folder you can write to")
    return path


@contextlib.contextmanager
def atomic_write(path: str | pathlib.Path, *, replace: bool = True, make_parents: bool = False,
                 settle_s: float = 0.0) -> Iterator[pathlib.Path]:
    """Yields a free temporary path next to `path` (same suffix); renames it to `path` when the block succeeds.

    The block writes a file there or creates a folder. An existing `path` is replaced only on success, or,
    with `replace=False`, is an `OutputError`. A missing parent folder is an `OutputError` unless
    `make_parents` (then it is created, and removed again if the write fails). `settle_s`: a writer whose
    background threads may still write after it raised (orbax/tensorstore) gets that long, after the
    temporary is removed, to recreate it; each time it does, it is removed again. See the module docstring
    for failures and signals.
    """
    path = pathlib.Path(path).absolute()
    if not make_parents and not path.parent.is_dir():
        raise OutputError(f"output directory {str(path.parent)!r} does not exist: create it first")
    tmp = path.with_name(f".{path.stem}.partial-{secrets.token_hex(4)}{path.suffix}")
    with _SigtermGuard() as guard:
        created: list[pathlib.Path] = []  # filled as the folders are made, so a signal among them loses none
        try:
            if make_parents:
                _make_parents(path.parent, created)
            yield tmp
            if not tmp.exists():
                raise OutputError(f"output {str(path)!r} was not written: the writer produced nothing")
            os.chmod(tmp, (0o777 if tmp.is_dir() else 0o666) & ~current_umask())
            _move_into_place(tmp, path, replace)
        except BaseException as err:
            with guard.hold():
                _remove(tmp, settle_s)
                for folder in reversed(created):
                    with contextlib.suppress(OSError):  # only if still empty: something else may have written
                        folder.rmdir()
            if isinstance(err, Exception) and is_disk_full(err):
                raise OutputError(f"the disk holding {str(path)!r} filled up while writing it; the partial "
                                  "output was removed: free space there or write to another disk") from err
            raise


@contextlib.contextmanager
def scratch_dir(parent: str | pathlib.Path, label: str = "scratch") -> Iterator[pathlib.Path]:
    """A new hidden folder in `parent` (which must exist), removed with its contents when the block ends,
    however it ends (SIGTERM as in `atomic_write`)."""
    folder = pathlib.Path(parent).absolute() / f".{label}.scratch-{secrets.token_hex(4)}"
    with _SigtermGuard() as guard:
        try:
            folder.mkdir()
            yield folder
        finally:
            with guard.hold():
                shutil.rmtree(folder, ignore_errors=True)


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux /proc)."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        with open("/proc/self/status") as status:
            return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: the classic set-and-restore
    os.umask(mask)
    return mask


class _SigtermGuard:
    """While active, SIGTERM raises `Terminated` instead of killing the process on the spot; inside `hold()`
    (a cleanup) it is only recorded, and raised when the cleanup is done, so a cleanup is never cut short.

    Active only in the main thread (Python runs handlers there) over the default action, so a handler the
    program installed itself, or an outer guard, stays in charge. Inside an outer guard (a `scratch_dir` within
    an `atomic_write`), `hold()` holds the outer one, so a SIGTERM cannot cut the inner cleanup short either."""

    def __init__(self):
        handler = signal.getsignal(signal.SIGTERM)
        main = threading.current_thread() is threading.main_thread()
        self.active = main and handler is signal.SIG_DFL
        outer = getattr(handler, "__self__", None)
        self.outer = outer if main and isinstance(outer, _SigtermGuard) else None
        self.holding = 0
        self.raised = False
        self.pending: int | None = None

    def _handler(self, signum: int, frame) -> None:
        self.pending = signum
        if not (self.holding or self.raised):
            self.raised = True
            raise Terminated(signum)

    def __enter__(self) -> "_SigtermGuard":
        if self.active:
            signal.signal(signal.SIGTERM, self._handler)
        return self

    def __exit__(self, *exc_info) -> None:
        if self.active:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        if self.outer is not None:
            with self.outer.hold():
                yield
            return
        self.holding += 1
        try:
            yield
        finally:
            self.holding -= 1
        if self.pending is not None and not self.raised and not self.holding:
            self.raised = True
            raise Terminated(self.pending)


def _make_parents(folder: pathlib.Path, created: list[pathlib.Path]) -> None:
    """Creates `folder` and its missing ancestors, outermost first, appending each to `created` once made."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for f in reversed(missing):
        f.mkdir()
        created.append(f)


def _move_into_place(tmp: pathlib.Path, path: pathlib.Path, replace: bool) -> None:
    if not path.exists() and not path.is_symlink():
        os.rename(tmp, path)
        return
    if not replace:
        raise OutputError(f"output {str(path)!r} appeared while it was being written: choose another output "
                          "or delete it")
    if not (path.is_dir() or tmp.is_dir()):
        os.replace(tmp, path)  # a file over a file: one atomic step
        return
    old = path.with_name(f".{path.stem}.old-{secrets.token_hex(4)}{path.suffix}")
    os.rename(path, old)  # folders cannot be swapped in one step: move the old one aside first
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(old, path)
        raise
    _remove(old)


def _remove(path: pathlib.Path, settle_s: float = 0.0) -> None:
    """Removes `path`; with `settle_s > 0`, watches it that long and removes it again whenever a writer still
    running in the background recreates it (also when one added a file while the removal ran)."""
    deadline = time.monotonic() + settle_s
    while True:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink(missing_ok=True)
        if time.monotonic() >= deadline:
            return
        time.sleep(min(0.05, settle_s))
