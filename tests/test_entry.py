"""`swapjax.entry`, in process: the --set grammar, the exit codes and the cleanup of what a failed run created.
The same behaviour through every real command is tests/test_entry_points.py."""

from __future__ import annotations

import os

import pytest

from swapjax.cli_parser import OneLineParser
from swapjax.entry import Outcome, Status, add_set_argument, exit_code, run_main
from swapjax.errors import CheckpointError, InputError


def test_repeated_and_multiple_set_values_are_all_kept_in_order():
    parser = OneLineParser(prog="x")
    add_set_argument(parser)
    args = parser.parse_args(["--set", "a=1", "b=2", "--set", "c=3", "--set", "a=4"])
    assert args.overrides == ["a=1", "b=2", "c=3", "a=4"]


def test_bad_input_is_one_line_exit_2_and_the_new_folders_are_removed(tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "run"

    def body() -> int:
        out.mkdir(parents=True)
        (out / "checkpoints").mkdir()
        raise InputError("video 'a.mp4' is empty: pass a video with frames")

    assert run_main(body, creates=[out]) == 2
    assert os.listdir(tmp_path) == []  # 'new' and 'deeper' were made by the run too
    assert capsys.readouterr().err == "error: video 'a.mp4' is empty: pass a video with frames\n"


def test_an_existing_folder_is_never_removed(tmp_path, capsys):
    (tmp_path / "run").mkdir()

    def body() -> int:
        (tmp_path / "run" / "step_1").mkdir()
        raise CheckpointError("checkpoint 'x' is truncated:\n  one\n  two")

    assert run_main(body, creates=[tmp_path / "run"]) == 2
    assert (tmp_path / "run" / "step_1").is_dir()
    assert capsys.readouterr().err == "error: checkpoint 'x' is truncated: one; two\n"


def test_a_foreign_error_is_translated_and_an_unknown_one_keeps_its_traceback(tmp_path, capsys):
    def denied() -> int:
        raise PermissionError(13, "Permission denied", str(tmp_path / "w"))

    assert run_main(denied) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'w'} cannot be written")

    def bug() -> int:
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        run_main(bug)


def test_a_body_returning_2_cleans_up_and_other_codes_keep_the_outputs(tmp_path):
    def made(code: int):
        def body() -> int:
            (tmp_path / f"out{code}").mkdir()
            return code
        return body

    assert run_main(made(2), creates=[tmp_path / "out2"]) == 2 and not (tmp_path / "out2").exists()
    assert run_main(made(1), creates=[tmp_path / "out1"]) == 1 and (tmp_path / "out1").is_dir()


def test_exit_code_of_outcomes():
    done, stopped = Outcome(Status.DONE), Outcome(Status.PREEMPTED, step=3)
    assert exit_code([done, stopped]) == 0
    assert exit_code([done, Outcome(Status.FAILED, "job 'a': no frames")]) == 1
    assert exit_code([Outcome(Status.NONFINITE, step=7)]) == 1
    assert Outcome(Status.NONFINITE).status == "nonfinite"  # a str enum: old comparisons still read right
