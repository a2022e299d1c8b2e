"""The one sampling runner (`swapjax.sample.runner`): `sample.py`, `python -m swapjax.evaluate` and the demo all
sample through `Runner.run` (a spy stands in for the model work), the batch exit codes (1 when part failed, 2 when
nothing could run), and the edges: a truncated checkpoint is one line and exit 2 with nothing written (a real
`sample.py` process), an existing output names `--overwrite`, a config whose get_config() raises is one line."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import types

import numpy as np
import pytest

from sample_fixtures import CONFIG_PATH, box_track, clip, reference, write_checkpoint
from swapjax.data import video_io
from swapjax.entry import Outcome, Status
from swapjax.sample import cli as sample_cli
from swapjax.sample.jobs import Job

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("runner")
    video_io.write_video(d / "walk.mp4", clip(5), 12.0)
    np.save(d / "walk_mask.npy", box_track(5))
    video_io.write_image(d / "walk_ref.png", reference())
    write_checkpoint(d / "ckpt")
    return d


class Spy:
    """Stands in for `Runner.run`: records each call's runner and jobs, and returns a done outcome per job."""

    def __init__(self):
        self.calls = []

    def __call__(self, runner, jobs, on_result=None, on_outcome=None, progress=False):
        self.calls.append((runner, [job.name for job in jobs]))
        return [Outcome(Status.DONE, report={"name": job.name, "status": "ok"}, subject=job) for job in jobs]


@pytest.fixture
def spy(monkeypatch):
    from swapjax.sample.runner import Runner

    spy = Spy()
    monkeypatch.setattr(Runner, "run", lambda self, jobs, **kw: spy(self, jobs, **kw))
    return spy


def _sample_args(files, out, *extra):
    return ["--config", str(CONFIG_PATH), "--checkpoint", str(files / "ckpt"), "--video", str(files / "walk.mp4"),
            "--mask", str(files / "walk_mask.npy"), "--reference", str(files / "walk_ref.png"), "--out", str(out),
            "--quiet", *extra]


def test_sample_evaluate_and_the_demo_all_run_through_the_runner(files, tmp_path, spy, monkeypatch):
    from swapjax.evaluate import cli as evaluate_cli

    assert sample_cli.main(_sample_args(files, tmp_path / "one.mp4")) == 0
    cases = tmp_path / "cases"
    cases.mkdir()
    for suffix in ("", "_mask", "_ref"):
        src = next(files.glob(f"walk{suffix}.*"))
        (cases / src.name).write_bytes(src.read_bytes())
    argv = ["--config", str(CONFIG_PATH), "--checkpoint", str(files / "ckpt"), "--cases", str(cases), "--out",
            str(tmp_path / "eval"), "--quiet"]
    assert evaluate_cli.main(argv) == 0
    assert [(r.kind, names) for r, names in spy.calls] == [("job", ["walk"]), ("case", ["walk"])]

    import swapjax.train
    from swapjax.demo import cli as demo_cli
    from swapjax.sample.runner import Runner

    monkeypatch.setattr(swapjax.train, "train", lambda config, workdir: types.SimpleNamespace(status="done"))
    monkeypatch.setattr(Runner, "check", lambda self: None)  # no trained checkpoint: the spy samples nothing
    assert demo_cli.main(["--workdir", str(tmp_path / "demo"), "--pairs", "2", "--quiet"]) == 0
    assert spy.calls[-1][0].kind == "case"
    assert spy.calls[-1][1] == ["heldout_0000", "heldout_0001", "infamily_0000", "infamily_0001"]


def _jobs(tmp_path, files, bad: int, good: int) -> pathlib.Path:
    entries = [{"video": str(files / "walk.mp4"), "mask": str(files / "walk_mask.npy"), "out": f"bad{i}.mp4"}
               for i in range(bad)]
    entries += [{"video": str(files / "walk.mp4"), "mask": str(files / "walk_mask.npy"),
                 "reference": str(files / "walk_ref.png"), "out": f"good{i}.mp4"} for i in range(good)]
    (tmp_path / "jobs.json").write_text(json.dumps(entries))
    return tmp_path / "jobs.json"


def test_a_partly_failed_batch_exits_1_and_an_all_bad_one_2(files, tmp_path, spy, capsys):
    base = ["--config", str(CONFIG_PATH), "--checkpoint", str(files / "ckpt"), "--quiet", "--jobs"]
    assert sample_cli.main(base + [str(_jobs(tmp_path, files, bad=1, good=1))]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "needs a mask and a reference" in lines[0] and spy.calls[0][1] == ["1:walk"]
    assert sample_cli.main(base + [str(_jobs(tmp_path, files, bad=2, good=0))]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 2 and len(spy.calls) == 1  # no model work


def test_a_failed_job_in_the_run_exits_1(files, tmp_path, monkeypatch, capsys):
    from swapjax.sample.runner import Runner

    def run(runner, jobs, on_result=None, on_outcome=None, progress=False):
        outcomes = [Outcome(Status.FAILED, "job 'x': its output folder vanished", subject=jobs[0])]
        on_outcome(outcomes[0])
        return outcomes

    monkeypatch.setattr(Runner, "run", run)
    assert sample_cli.main(_sample_args(files, tmp_path / "a.mp4")) == 1
    assert capsys.readouterr().err.strip() == "error: job 'x': its output folder vanished"


def test_one_job_parser_reads_ground_truth_and_names(files, tmp_path):
    from swapjax.sample.jobs import jobs_from_json

    np.save(tmp_path / "truth.npy", clip(5, seed=2))
    entry = {"video": str(files / "walk.mp4"), "mask": str(files / "walk_mask.npy"),
             "reference": str(files / "walk_ref.png"), "ground_truth": "truth.npy", "name": "walk it"}
    (tmp_path / "jobs.json").write_text(json.dumps([{**entry, "out": "o.mp4"}, entry]))
    job, missing_out = jobs_from_json(tmp_path / "jobs.json")
    assert isinstance(job, Job) and job.name == "walk it" and job.out == tmp_path / "o.mp4"
    assert job.read(None).ground_truth.shape == (5, 32, 32, 3)
    assert "needs \"out\"" in str(missing_out)
    cases = jobs_from_json(tmp_path / "jobs.json", out_dir=tmp_path / "eval")  # evaluate: no "out", safe names
    assert "unknown keys ['out']" in str(cases[0]) and cases[1].out == tmp_path / "eval" / "walk_it.mp4"


def test_truncated_checkpoint_is_one_line_exit_2_and_nothing_written(files, tmp_path):
    ckpt = write_checkpoint(tmp_path / "ckpt")
    data = max((p for p in (ckpt / "dit").rglob("*") if p.is_file() and "params" in p.parts),
               key=lambda p: p.stat().st_size)
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])  # a copy cut off half-way
    out = tmp_path / "out" / "result.mp4"
    args = _sample_args(files, out)
    args[args.index("--checkpoint") + 1] = str(ckpt)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, str(ROOT / "sample.py"), *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: swap model ") and str(ckpt / "dit") in lines[0], lines
    assert "truncated or corrupt" in lines[0] and "convert the checkpoint again" in lines[0]
    assert not (tmp_path / "out").exists()


def test_an_existing_output_names_overwrite(files, tmp_path, capsys):
    out = tmp_path / "taken.mp4"
    out.write_bytes(b"keep")
    assert sample_cli.main(_sample_args(files, out)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "--out" in err and "already exists" in err and "--overwrite" in err
    assert out.read_bytes() == b"keep"


def test_evaluate_names_the_cases_flag(files, tmp_path, capsys):
    from swapjax.evaluate import cli as evaluate_cli

    (tmp_path / "empty").mkdir()
    argv = ["--config", str(CONFIG_PATH), "--checkpoint", str(files / "ckpt"), "--cases", str(tmp_path / "empty"),
            "--out", str(tmp_path / "eval")]
    assert evaluate_cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --cases ") and "--batch" not in err and not (tmp_path / "eval").exists()


def test_a_config_whose_get_config_raises_is_one_line(files, tmp_path, capsys):
    config = tmp_path / "broken.py"
    config.write_text("def get_config():\n    raise RuntimeError('no such preset')\n")
    args = _sample_args(files, tmp_path / "r.mp4")
    args[args.index("--config") + 1] = str(config)
    assert sample_cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "broken.py" in err and "no such preset" in err, err
