"""The README's training commands run as written (in a scratch folder holding the repository's configs)."""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest

from train_fixtures import PYTHON, ROOT, compile_cache, losses, subprocess_env  # noqa: F401

README = ROOT / "README.md"


def _training_commands() -> list[str]:
    section = README.read_text().split("## Training", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```bash\n(.*?)```", section, flags=re.S)[0]
    return [line for line in block.splitlines() if line.startswith("python train.py")]


@pytest.mark.slow
def test_readme_training_commands_run_as_written(tmp_path, compile_cache):  # noqa: F811
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    commands = _training_commands()
    assert len(commands) == 3 and "train.stage=1" in commands[1] and "train.init_from=" in commands[1]
    for command in commands:
        args = shlex.split(command)
        done = subprocess.run([PYTHON, str(ROOT / args[1]), *args[2:]], cwd=tmp_path, env=subprocess_env(compile_cache),
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    assert sorted(losses(tmp_path / "runs" / "stage2")) == [1, 2, 3, 4]
    assert (tmp_path / "runs" / "stage2" / "diffusers" / "config.json").is_file()
