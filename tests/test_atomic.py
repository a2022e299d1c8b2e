"""The one atomic-write helper: rename on success, cleanup on errors / full disk / SIGTERM, umask permissions,
and the output check that CLIs run before heavy work."""

from __future__ import annotations

import errno
import os
import pathlib
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from swapjax import atomic
from swapjax.atomic import Terminated, atomic_write, check_output, scratch_dir
from swapjax.errors import OutputError
from swapjax.errors import InputError


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def _mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_file_appears_only_when_complete_and_replaces_on_success(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_write(target) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".json" and not tmp.exists()
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["a.json"]
    with atomic_write(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["a.json"]


def test_private_temporaries_get_the_umask_permissions(tmp_path, umask_027):
    assert atomic.current_umask() == 0o027
    with atomic_write(tmp_path / "folder") as tmp:
        tmp.mkdir(mode=0o700)  # what tempfile.mkdtemp makes
        (tmp / "x").write_text("x")
    with atomic_write(tmp_path / "file.txt") as tmp:
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600)  # what tempfile.mkstemp makes
        os.close(fd)
    assert _mode(tmp_path / "folder") == 0o750 and _mode(tmp_path / "file.txt") == 0o640


def test_folders_are_replaced_whole_or_refused(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stale").write_text("x")
    with atomic_write(tmp_path / "out") as tmp:
        tmp.mkdir()
        (tmp / "fresh").write_text("y")
    assert os.listdir(tmp_path / "out") == ["fresh"] and os.listdir(tmp_path) == ["out"]
    with pytest.raises(OutputError, match="appeared while it was being written"):
        with atomic_write(tmp_path / "out", replace=False) as tmp:
            tmp.mkdir()
    assert os.listdir(tmp_path / "out") == ["fresh"] and os.listdir(tmp_path) == ["out"]
    with pytest.raises(OutputError, match="writer produced nothing"):
        with atomic_write(tmp_path / "never"):
            pass
    assert os.listdir(tmp_path) == ["out"]


def test_a_missing_parent_is_refused_unless_asked_for(tmp_path):
    with pytest.raises(OutputError, match=r"output directory '.*/a' does not exist: create it first"):
        with atomic_write(tmp_path / "a" / "out") as tmp:
            tmp.write_text("never")
    assert os.listdir(tmp_path) == []


def test_missing_parents_are_created_and_removed_again_on_failure(tmp_path):
    with pytest.raises(ValueError):
        with atomic_write(tmp_path / "a" / "b" / "out", make_parents=True) as tmp:
            tmp.mkdir()
            raise ValueError("bad")
    assert os.listdir(tmp_path) == []
    with atomic_write(tmp_path / "a" / "b" / "out", make_parents=True) as tmp:
        tmp.write_text("ok")
    assert (tmp_path / "a" / "b" / "out").read_text() == "ok"


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
                                   OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)),
                                   RuntimeError(f"tensorstore: write failed: {os.strerror(errno.ENOSPC)} [os error]")])
def test_full_disk_cleans_up_and_says_so_in_one_line(tmp_path, error):
    with pytest.raises(OutputError) as info:
        with atomic_write(tmp_path / "sub" / "out", make_parents=True) as tmp:
            tmp.mkdir()
            (tmp / "half").write_bytes(b"x" * 100)
            raise error
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "sub" / "out") in message
    assert "filled up" in message and "partial output was removed" in message and "free space" in message
    assert isinstance(info.value, InputError) and os.listdir(tmp_path) == []


def test_is_disk_full_follows_the_exception_chain():
    try:
        try:
            raise OSError(errno.ENOSPC, "write")
        except OSError as inner:
            raise ValueError("save failed") from inner
    except ValueError as outer:
        assert atomic.is_disk_full(outer)
    assert not atomic.is_disk_full(OSError(errno.EACCES, "denied")) and not atomic.is_disk_full(ValueError("x"))


def test_sigterm_during_the_write_removes_the_temporary_and_exits_143(tmp_path):
    with pytest.raises(Terminated) as info:
        with atomic_write(tmp_path / "out") as tmp:
            tmp.mkdir()
            (tmp / "half").write_text("x")
            signal.raise_signal(signal.SIGTERM)
            pytest.fail("SIGTERM did not stop the write")
    assert info.value.code == 128 + signal.SIGTERM and isinstance(info.value, SystemExit)
    assert os.listdir(tmp_path) == [] and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_ctrl_c_during_the_write_removes_the_temporary(tmp_path):
    # Python's own Ctrl-C handler, also where the suite was started in the background (SIGINT ignored there).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _ctrl_c_during_a_write(tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert os.listdir(tmp_path) == []


def _ctrl_c_during_a_write(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(tmp_path / "out.txt") as tmp:
            tmp.write_text("x")
            signal.raise_signal(signal.SIGINT)


def test_sigterm_during_the_cleanup_waits_until_the_cleanup_is_done(tmp_path, monkeypatch):
    real_remove = atomic._remove

    def interrupted_remove(path, *args):
        signal.raise_signal(signal.SIGTERM)  # held: the removal below still runs
        real_remove(path, *args)

    monkeypatch.setattr(atomic, "_remove", interrupted_remove)
    with pytest.raises(Terminated):
        with atomic_write(tmp_path / "out") as tmp:
            tmp.mkdir()
            raise RuntimeError("first failure")
    assert os.listdir(tmp_path) == []


def test_sigterm_during_a_scratch_cleanup_inside_a_write_removes_everything(tmp_path, monkeypatch):
    """A scratch folder inside an atomic write (data.build): SIGTERM while the scratch folder is being removed
    waits until it is gone, then stops the write, which removes its temporary and the parents it made."""
    real_rmtree = shutil.rmtree

    def interrupted_rmtree(path, *args, **kwargs):
        if ".scratch-" in str(path):
            signal.raise_signal(signal.SIGTERM)  # held by the outer guard: the removal below still runs
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(atomic.shutil, "rmtree", interrupted_rmtree)
    final = tmp_path / "out" / "swap_clips" / "1.0.0"
    with pytest.raises(Terminated):
        with atomic_write(final, make_parents=True) as tmp, scratch_dir(final.parent, "swap_clips") as scratch:
            (scratch / "half").write_text("x")
            tmp.mkdir()
    assert os.listdir(tmp_path) == [] and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_writer_still_writing_in_the_background_is_removed_again(tmp_path):
    """orbax/tensorstore may write into the temporary folder after the save raised: `settle_s` removes it again."""
    seen = []

    def late_writer(folder):
        time.sleep(0.2)
        (folder / "ocdbt").mkdir(parents=True, exist_ok=True)  # what a still-running background write does
        (folder / "ocdbt" / "d").write_text("late")
        seen.append(folder)

    with pytest.raises(RuntimeError, match="first failure"):
        with atomic_write(tmp_path / "sub" / "out", make_parents=True, settle_s=1.0) as tmp:
            tmp.mkdir()
            writer = threading.Thread(target=late_writer, args=(tmp,))
            writer.start()
            raise RuntimeError("first failure")
    writer.join()
    assert seen and os.listdir(tmp_path) == []


def test_a_handler_the_program_installed_stays_in_charge(tmp_path):
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with atomic_write(tmp_path / "out.txt") as tmp:
            signal.raise_signal(signal.SIGTERM)
            tmp.write_text("done")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen == [signal.SIGTERM] and (tmp_path / "out.txt").read_text() == "done"


def test_scratch_folder_is_removed_however_the_block_ends(tmp_path):
    with scratch_dir(tmp_path, "build") as scratch:
        (scratch / "x").write_text("x")
        assert scratch.name.startswith(".build.scratch-")
    with pytest.raises(Terminated):
        with atomic_write(tmp_path / "out") as tmp, scratch_dir(tmp_path) as scratch:
            (scratch / "x").write_text("x")
            tmp.mkdir()
            signal.raise_signal(signal.SIGTERM)
    assert os.listdir(tmp_path) == []


def test_check_output_refuses_existing_targets_and_file_parents(tmp_path):
    (tmp_path / "done").mkdir()
    with pytest.raises(OutputError, match=r"--out '.*done' already exists: choose a new --out or delete it"):
        check_output(tmp_path / "done")
    with pytest.raises(OutputError, match=r"--out '.*done' already exists: choose a new --out, delete it or pass "
                                          r"--overwrite$"):
        check_output(tmp_path / "done", overwrite_flag="--overwrite")  # a command that can replace it says so
    assert check_output(tmp_path / "done", replace=True) == tmp_path / "done"
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match=r"'.*file' is a file, not a folder; choose a --dir inside a folder"):
        check_output(tmp_path / "file" / "deeper" / "out", flag="--dir")
    assert check_output(tmp_path / "new" / "deeper" / "out") == tmp_path / "new" / "deeper" / "out"
    assert sorted(os.listdir(tmp_path)) == ["done", "file"]


def test_check_output_refuses_a_read_only_folder(tmp_path, monkeypatch):
    calls = []

    def access(path, mode):
        calls.append((pathlib.Path(path), mode))
        return False

    monkeypatch.setattr(atomic.os, "access", access)
    with pytest.raises(OutputError, match=r"folder '.*' is read-only for this user; choose a --out in a folder"):
        check_output(tmp_path / "missing" / "out")
    assert calls == [(tmp_path, os.W_OK | os.X_OK)]  # the nearest existing folder is the one checked


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root to run the check as the unprivileged user 'nobody'")
def test_check_output_as_an_unprivileged_user_on_a_read_only_folder():
    """Root ignores permission bits, so the real check runs as uid 65534 on a 0555 folder."""
    base = pathlib.Path(tempfile.mkdtemp())
    try:
        base.chmod(0o755)
        (base / "ro").mkdir(mode=0o555)
        code = ("import sys\nfrom swapjax.atomic import OutputError, check_output\n"
                "try:\n    check_output(sys.argv[1])\nexcept OutputError as err:\n    print(err)\n")
        run = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                              code, str(base / "ro" / "out")], capture_output=True, text=True, timeout=120,
                             cwd=pathlib.Path(__file__).parent.parent)
        assert run.returncode == 0, run.stderr
        assert "is read-only for this user" in run.stdout and str(base / "ro") in run.stdout
    finally:
        shutil.rmtree(base)
