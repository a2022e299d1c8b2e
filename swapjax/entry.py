"""One behaviour for every entry point: the `--set` grammar, the `error:` line, the exit codes, the cleanup.

    def main(argv=None) -> int:
        parser = OneLineParser(prog=PROG, description=...)
        add_set_argument(parser)                         # --set K=V [K=V ...], repeatable; all kept, in order
        args = parser.parse_args(argv)
        return run_main(lambda: _run(args), creates=[args.workdir])

Exit codes (the same in every command): 0 done; 1 the run ran but part of it failed (non-finite steps, a batch
with failed jobs, a missed goal under --strict); 2 bad input: one `error: <message>` line naming the input and
the fix, and every folder or file in `creates` that did not exist before the run is removed; 128 + N stopped by
signal N (SIGTERM: 143). A foreign library's error that `errors.foreign_message` recognises is reported like a
bad input; anything else is a bug and keeps its traceback. This module imports only the ground floor.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import enum
import logging
import os
import pathlib
import shutil
import sys
import threading
from typing import Any, Callable, Iterable

from swapjax.errors import SwapjaxError, foreign_message

EXIT_OK, EXIT_PARTIAL, EXIT_BAD_INPUT = 0, 1, 2


class Status(str, enum.Enum):
    """How a piece of work ended (a training stage, a sampling job, a command)."""

    DONE = "done"            # finished
    PREEMPTED = "preempted"  # stopped by SIGTERM after saving; running the command again resumes
    NONFINITE = "nonfinite"  # training stopped after too many non-finite steps; nothing saved
    FAILED = "failed"        # a job could not run; `message` is its one line


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The one outcome type: `status`, a one-line `message`, and what the work produced (`step` for training,
    `report` for a sampling job, `subject`: the job or case it was about)."""

    status: Status
    message: str = ""
    step: int | None = None
    report: dict[str, Any] | None = None
    subject: Any = None

    @property
    def ok(self) -> bool:
        return self.status in (Status.DONE, Status.PREEMPTED)


def exit_code(outcomes: Iterable[Outcome]) -> int:
    """0 when every outcome is ok, 1 (`EXIT_PARTIAL`) when any failed or went non-finite."""
    return EXIT_OK if all(o.ok for o in outcomes) else EXIT_PARTIAL


def add_set_argument(parser: argparse.ArgumentParser, help: str = "dotted config overrides, e.g. "
                     "train.steps=10 optimizer.lr=3e-4") -> None:
    """`--set KEY=VALUE [KEY=VALUE ...]`, repeatable; every value of every `--set` is kept, in order, in
    `args.overrides` (a later value of the same key wins, as `config.apply_overrides` says)."""
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help=help + "; may be repeated")


def say(message: str) -> None:
    """One `error:` line on stderr; a message listing items on further lines is folded into that line."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    text = (lines[0].rstrip(":") + ": " + "; ".join(lines[1:]) if len(lines) > 1 else lines[0]) if lines else "failed"
    print(f"error: {text}", file=sys.stderr, flush=True)


def run_main(body: Callable[[], int], creates: Iterable[str | os.PathLike | None] = ()) -> int:
    """Runs `body` (which returns an exit code) under the shared policy of the module docstring."""
    fresh = [_outermost_missing(pathlib.Path(p).absolute()) for p in creates if p is not None and _missing(p)]
    try:
        with _closed_loop_echoes_dropped():
            code = body()
    except SwapjaxError as err:
        return _fail(str(err), fresh)
    except Exception as err:
        message = foreign_message(err)
        if message is None:
            raise
        return _fail(message, fresh)
    if code == EXIT_BAD_INPUT:
        _remove(fresh)
    return code


def _is_closed_loop_echo(err: BaseException | None) -> bool:
    return isinstance(err, RuntimeError) and str(err) == "Event loop is closed"


@contextlib.contextmanager
def _closed_loop_echoes_dropped():
    """While the body runs, tensorstore's callbacks that land in orbax's already closed event loop (after orbax
    gave up on a truncated checkpoint, or finished a save) print `RuntimeError: Event loop is closed` tracebacks
    from their threads, through whichever hook reaches them; those alone are dropped, anything else is kept."""
    hooks = sys.unraisablehook, sys.excepthook, threading.excepthook

    def unraisable(u) -> None:
        if not _is_closed_loop_echo(u.exc_value):
            hooks[0](u)

    def excepthook(kind, value, tb) -> None:
        if not _is_closed_loop_echo(value):
            hooks[1](kind, value, tb)

    def thread_hook(args) -> None:
        if not _is_closed_loop_echo(args.exc_value):
            hooks[2](args)

    sys.unraisablehook, sys.excepthook, threading.excepthook = unraisable, excepthook, thread_hook
    yield  # kept after a failure: the echoes come while and after the error is reported; the process then ends
    sys.unraisablehook, sys.excepthook, threading.excepthook = hooks


def _fail(message: str, fresh: list[pathlib.Path]) -> int:
    # The run is over: what a foreign library abandoned (orbax's pending read coroutines, tensorstore's closed
    # event loop) may still be collected before exit and print "Exception ignored in ..." tracebacks under the
    # one line; those are echoes of the error already reported.
    sys.unraisablehook = lambda unraisable: None
    # ... and asyncio logs orbax's abandoned read futures ("exception was never retrieved") when they are collected.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL + 1)
    _remove(fresh)
    say(message)
    return EXIT_BAD_INPUT


def _missing(path: str | os.PathLike) -> bool:
    """True if nothing (not even a dangling link) is at `path`; a path this user cannot look into is not ours to
    remove, so it counts as present."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


def _outermost_missing(path: pathlib.Path) -> pathlib.Path:
    """The outermost ancestor of `path` (or `path` itself) that does not exist yet: what a run creating `path`
    with its parents creates."""
    while path.parent != path and _missing(path.parent):
        path = path.parent
    return path


def _remove(paths: list[pathlib.Path]) -> None:
    """Removes what the failed run created (each path with the parent folders it made)."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink(missing_ok=True)
