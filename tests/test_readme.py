"""The README's conversion commands and Python snippet run as written (on tiny random diffusers models)."""

from __future__ import annotations

import pathlib
import re
import shlex

import numpy as np
import pytest

import wan_dit_torch
import wan_vae_torch
from swapjax.convert.__main__ import main as convert_main

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
TINY_DIT = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16,
                out_channels=16, text_dim=4096, freq_dim=32, ffn_dim=48, num_layers=2)


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_opens_with_the_demo_then_the_test_command():
    demo, tests = (block.strip() for block in _blocks("bash")[:2])
    setup = "python3 -m venv .venv && .venv/bin/pip install -q -e"
    assert demo == f"{setup} . && .venv/bin/python -m swapjax.demo --workdir runs/demo"
    assert tests == f"{setup} '.[test]' && .venv/bin/python -m pytest -q"
    ci = (README.parent / ".ci" / "run").read_text()
    assert tests in ci
    from swapjax.demo.cli import DEFAULT_CONFIG, parse_args

    args = parse_args(shlex.split(demo.split("&& ")[-1])[3:])  # what the demo command runs
    assert args.workdir == "runs/demo" and pathlib.Path(args.config) == DEFAULT_CONFIG and DEFAULT_CONFIG.is_file()


@pytest.mark.slow
def test_readme_convert_and_run_snippet(tmp_path, monkeypatch):
    export = tmp_path / "Wan2.1-T2V-1.3B-Diffusers"
    wan_dit_torch.save_reference(wan_dit_torch.build_reference(0, **TINY_DIT), export / "transformer")
    wan_vae_torch.build_reference(0, base_dim=8, z_dim=16, num_res_blocks=1).save_pretrained(export / "vae")
    monkeypatch.chdir(tmp_path)

    block = next(b for b in _blocks("bash") if "python -m swapjax.convert" in b)
    commands = [c for c in block.splitlines() if c.startswith("python -m swapjax.convert")]
    assert len(commands) == 2
    for command in commands:
        assert convert_main(shlex.split(command)[3:]) == 0

    snippet = [b for b in _blocks("python") if "load_converted" in b]
    assert len(snippet) == 1
    scope: dict = {}
    exec(compile(snippet[0], str(README), "exec"), scope)
    assert scope["velocity"].shape == (1, 2, 8, 8, 16)
    assert scope["frames"].shape == (1, 5, 64, 64, 3)
    assert np.isfinite(np.asarray(scope["frames"])).all()
    assert float(np.abs(np.asarray(scope["velocity"])).max()) > 0  # the converted weights are in use
