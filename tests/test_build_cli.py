"""`python -m swapjax.data.build` failures: each exits 2 with one `error:` line naming the input and the fix, and
leaves the output folder as it was (bad arguments, an unwritable --out, a full disk while writing)."""

from __future__ import annotations

import errno
import os
import re
import tempfile

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
    assert err == (f"error: --out {str(out)!r} lies under {str(tmp_path / 'notes.txt')!r}, which is a file, not a "
                   "folder: pass an --out inside a folder")
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
    assert err == (f"error: --out {str(out)!r} cannot be written: {str(locked)!r} is read-only for this user; "
                   "pass an --out in a folder you can write to, or change its permissions")
    assert list(locked.iterdir()) == []


def test_out_on_a_read_only_filesystem_is_refused_first(tmp_path, capsys, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)  # the probe folder cannot be created
    assert build.main(["--src", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    err = _one_error_line(capsys)
    assert re.fullmatch(r"error: --out '.*out' cannot be written: creating a folder in '.*' failed "
                        r"\(Read-only file system\); pass an --out in a folder you can write to.*", err), err
    assert not (tmp_path / "out").exists()


def _array_record_failure(path):
    # what the ArrayRecord writer (C++) raises when the disk fills up
    return RuntimeError(f'Failed to finalize writing of split "train": write() failed: '
                        f"{os.strerror(errno.ENOSPC)}; writing {path}; at byte 204800")


@pytest.mark.parametrize("failure, expected", [
    (lambda path: OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)), "filled up"),
    (_array_record_failure, "filled up"),
    (lambda path: OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), str(path)), "filled up"),
    (lambda path: PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path)), "could not be written"),
], ids=["enospc", "array_record_enospc", "quota", "permission"])
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
