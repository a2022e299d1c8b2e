"""`python -m swapjax.data.build` failures: each exits 2 (a signal: 128 + its number) with one `error:` line naming
the input and the fix, and leaves the output folder as it was (bad arguments, an unwritable --out, a full disk,
SIGTERM or Ctrl-C while writing)."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys

import pytest

from media_fixtures import box_mask, smooth_video, snapshot
from swapjax.data import build, video_io


def _source(folder):
    """A one-clip source folder: `walk.mp4` + `walk_mask.npz`."""
    folder.mkdir(parents=True)
    video_io.write_video(folder / "walk.mp4", smooth_video(5), 12)
    video_io.write_mask(folder / "walk_mask.npz", box_mask(5))
    return folder


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1"])
def test_max_record_mib_must_be_a_finite_positive_size(tmp_path, capsys, value):
    # --src does not exist: the argument is refused before any input is looked at
    argv = ["--src", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"), f"--max-record-mib={value}"]
    assert build.main(argv) == 2
    err = _one_error_line(capsys)
    assert re.fullmatch(rf"error: --max-record-mib {value} is not a size: pass a finite number of MiB above 0 "
                        r"\(e\.g\. 512, the default\)", err), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, expected", [
    (["--src", "x"], "the following arguments are required: --out"),
    (["--src", "x", "--out", "y", "--max-record-mib", "lots"], "argument --max-record-mib: invalid float value"),
])
def test_bad_command_line_is_one_line(capsys, argv, expected):
    with pytest.raises(SystemExit) as exit_info:
        build.main(argv)
    assert exit_info.value.code == 2
    err = _one_error_line(capsys)
    assert expected in err and err.endswith("see python -m swapjax.data.build --help")


def test_out_under_a_regular_file_is_refused_first(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a folder")
    before = snapshot(tmp_path)
    out = tmp_path / "notes.txt" / "datasets" / "out"
    assert build.main(["--src", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    err = _one_error_line(capsys)
    assert err == (f"error: --out {str(out)!r} cannot be created: {str(tmp_path / 'notes.txt')!r} is a file, not "
                   "a folder; choose a --out inside a folder")
    assert snapshot(tmp_path) == before


def test_out_in_a_read_only_folder_is_refused_first(tmp_path, capsys, monkeypatch):
    # Tests run as root, which writes through permission bits; the check asks os.access, faked here as a
    # non-root user would see a chmod 555 folder.
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
        False if os.fspath(path) == str(locked) and mode & os.W_OK else real_access(path, mode, **kw)))
    out = locked / "out"
    assert build.main(["--src", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    err = _one_error_line(capsys)
    assert err == (f"error: --out {str(out)!r} cannot be created: the folder {str(locked)!r} is read-only for "
                   "this user; choose a --out in a folder you can write to")
    assert list(locked.iterdir()) == []


def _array_record_failure(path):
    # what the ArrayRecord writer (C++) raises when the disk fills up
    return RuntimeError(f'Failed to finalize writing of split "train": write() failed: '
                        f"{os.strerror(errno.ENOSPC)}; writing {path}; at byte 204800")


@pytest.mark.parametrize("failure, expected", [
    (lambda path: OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)), "filled up"),
    (_array_record_failure, "filled up"),
    (lambda path: OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), str(path)), "filled up"),
], ids=["enospc", "array_record_enospc", "quota"])
def test_write_failure_removes_the_partial_dataset(tmp_path, capsys, monkeypatch, failure, expected):
    from tensorflow_datasets.core import file_adapters

    src = _source(tmp_path / "src")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("untouched")
    before = snapshot(tmp_path / "out")
    written = []

    def fail_midway(cls, path, examples):
        with open(path, "wb") as f:  # half a record file on disk, then the device gives up
            f.write(b"\0" * 4096)
        written.append(path)
        raise failure(path)

    monkeypatch.setattr(file_adapters.ArrayRecordFileAdapter, "write_examples", classmethod(fail_midway))
    assert build.main(["--src", str(src), "--out", str(tmp_path / "out")]) == 2
    err = _one_error_line(capsys)
    assert expected in err and "the partial output was removed" in err and str(tmp_path / "out") in err
    assert written  # the failure happened while writing, not before
    assert snapshot(tmp_path / "out") == before  # no .partial folder, no swap_clips/ left behind


def test_other_errors_are_not_disguised(tmp_path, monkeypatch):
    from tensorflow_datasets.core import file_adapters

    def broken(cls, path, examples):
        raise RuntimeError("serializer bug")

    monkeypatch.setattr(file_adapters.ArrayRecordFileAdapter, "write_examples", classmethod(broken))
    with pytest.raises(RuntimeError, match="serializer bug"):
        build.main(["--src", str(_source(tmp_path / "src")), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


# Runs the CLI in a child process whose record writer leaves half a file and then stalls, so the test can
# signal it mid-write; "writing" on stdout says the stall has begun.
_STALLING_BUILD = """
import sys, time
from tensorflow_datasets.core import file_adapters
from swapjax.data import build

def stall(cls, path, examples):
    with open(path, "wb") as f:
        f.write(bytes(4096))
    print("writing", flush=True)
    time.sleep(120)

file_adapters.ArrayRecordFileAdapter.write_examples = classmethod(stall)
sys.exit(build.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("signum, code, what", [(signal.SIGTERM, 2, "SIGTERM"), (signal.SIGINT, 2, "Ctrl-C")])
def test_signal_while_writing_removes_the_partial_dataset(tmp_path, signum, code, what):
    src = _source(tmp_path / "src")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("untouched")
    before = snapshot(tmp_path / "out")
    # Ctrl-C as a terminal delivers it: the child starts with SIGINT's default action even where the suite was
    # started from a background shell, whose children inherit SIGINT ignored.
    child = subprocess.Popen([sys.executable, "-c", _STALLING_BUILD, "--src", str(src), "--out",
                              str(tmp_path / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for line in child.stdout:  # TFDS prints its own progress lines first
            if line.strip() == "writing":
                break
        assert snapshot(tmp_path / "out") != before  # half a record file lies in a temporary folder
        child.send_signal(signum)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == code
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [f"error: stopped by {what} while building the dataset: --out {str(tmp_path / 'out')!r} was "
                     "left as it was (the partial output was removed); run the command again to build"], err
    assert snapshot(tmp_path / "out") == before


# The build finishes writing; SIGTERM comes while its scratch folder is being removed ("cleaning" on stdout).
_STALLING_CLEANUP = """
import shutil, sys, time
from swapjax import atomic
from swapjax.data import build

real_rmtree = shutil.rmtree

def slow_rmtree(path, *args, **kwargs):
    if ".scratch-" in str(path):
        print("cleaning", flush=True)
        time.sleep(3)
    real_rmtree(path, *args, **kwargs)

atomic.shutil.rmtree = slow_rmtree
sys.exit(build.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("stall, out_exists", [(_STALLING_BUILD, False), (_STALLING_CLEANUP, True)],
                         ids=["while-writing-new-out", "while-cleaning-scratch"])
def test_sigterm_leaves_no_scratch_and_no_parent_folder(tmp_path, stall, out_exists):
    """SIGTERM while writing into a new nested --out, or while the scratch folder is being removed: the scratch
    folder, the temporary dataset and every folder the run made are gone, and the message says so."""
    src = _source(tmp_path / "src")
    out = tmp_path / "out" if out_exists else tmp_path / "new" / "deep" / "out"
    if out_exists:
        out.mkdir()
        (out / "keep.txt").write_text("untouched")
    before = sorted(os.listdir(tmp_path))
    child = subprocess.Popen([sys.executable, "-c", stall, "--src", str(src), "--out", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in child.stdout:
            if line.strip() in ("writing", "cleaning"):
                break
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "stopped by SIGTERM" in lines[0] and "partial output was removed" in lines[0], err
    assert sorted(os.listdir(tmp_path)) == before
    if out_exists:
        assert sorted(os.listdir(out)) == ["keep.txt"]


def test_a_failed_build_removes_the_folders_it_made(tmp_path, capsys):
    """A bad source (no clips) under a new nested --out: exit 2, one line, and no folder of --out is left."""
    (tmp_path / "empty").mkdir()
    assert build.main(["--src", str(tmp_path / "empty"), "--out", str(tmp_path / "new" / "out")]) == 2
    _one_error_line(capsys)
    assert sorted(os.listdir(tmp_path)) == ["empty"]
