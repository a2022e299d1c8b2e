"""`sample.py --pipeline`: a tiny diffusers pipeline converted in one command swaps a clip on CPU, its umT5 encoding
the prompt (and the empty prompt for guidance) and its CLIP the reference; `--prompt` without `--pipeline` is one
error line."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from encoder_fixtures import save_tiny_pipeline
from sample_fixtures import CONFIG_PATH, box_track, clip, reference
from swapjax.convert.__main__ import main as convert_main
from swapjax.data import video_io

ROOT = pathlib.Path(__file__).resolve().parents[2]
SETS = ["--set", "sample.sampler.num_steps=2", "--set", "sample.text_len=16", "--set", "sample.area=1024"]


def _sample(*args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    return subprocess.run([sys.executable, str(ROOT / "sample.py"), "--config", str(CONFIG_PATH), *args, *SETS,
                           "--quiet"], capture_output=True, text=True, env=env, timeout=600, cwd=cwd)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    save_tiny_pipeline(root / "Wan-tiny-I2V")
    out = root / "converted"
    assert convert_main(["--pipeline", str(root / "Wan-tiny-I2V"), "--out", str(out), "--swap-config",
                         str(CONFIG_PATH)]) == 0
    return out


def test_sample_swaps_a_clip_from_a_converted_pipeline(converted, tmp_path):
    np.savez(tmp_path / "case.npz", source=clip(5, 32, 32), mask=box_track(5, 32, 32), reference=reference(40))
    proc = _sample("--pipeline", str(converted), "--prompt", "a cat walks on the grass", "--case",
                   str(tmp_path / "case.npz"), "--out", str(tmp_path / "out.mp4"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "wrote " in proc.stdout
    frames, fps, _ = video_io.read_video(tmp_path / "out.mp4")
    assert frames.shape == (5, 32, 32, 3) and fps == 24
    assert (tmp_path / "out_sheet.png").is_file()


def test_prompt_without_pipeline_is_one_error_line(tmp_path):
    np.savez(tmp_path / "case.npz", source=clip(5, 32, 32), mask=box_track(5, 32, 32), reference=reference(40))
    proc = _sample("--checkpoint", str(tmp_path), "--prompt", "a cat", "--case", str(tmp_path / "case.npz"),
                   "--out", str(tmp_path / "out.mp4"), cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "--prompt / --negative-prompt need --pipeline" in lines[0]


def test_guidance_branches_carry_image_tokens_and_the_negative_prompt():
    import jax.numpy as jnp

    from sample_fixtures import SAMPLE, random_models
    from swapjax.sample.engine import Engine

    engine = Engine(random_models(), SAMPLE)  # two branches: [conditional; null]
    text, null, image = np.ones((4, 32), np.float32), np.full((3, 32), 2.0, np.float32), np.ones((5, 32), np.float32)
    _, contexts, images = engine._branches(jnp.zeros((1, 1, 4, 4, 16)), None, text, null, image)
    assert images.shape == (2, 5, 32) and images[0].all() and not images[1].any()  # the null branch: zero tokens
    assert (contexts[0, :4] == 1).all() and not contexts[0, 4:].any()
    assert (contexts[1, :3] == 2).all() and not contexts[1, 3:].any()  # the negative prompt, zero-padded
    _, _, none = engine._branches(jnp.zeros((1, 1, 4, 4, 16)), None, text)
    assert none is None
