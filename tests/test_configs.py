"""Every configs/*.py loads and validates; config validation names the bad values."""

from __future__ import annotations

import dataclasses
import pathlib

import pytest

from swapjax.config import Config, load_config
from swapjax.errors import ConfigError
from swapjax.models.dit_config import DiTConfig
from swapjax.models.vae_config import VAEConfig
from swapjax.models.dit import abstract_dit, param_count

CONFIG_FILES = sorted(pathlib.Path(__file__).parent.parent.glob("configs/*.py"))


def test_the_required_configs_exist():
    assert {"tiny.py", "wan2_1_t2v_1_3b.py", "wan2_1_i2v_14b.py"} <= {p.name for p in CONFIG_FILES}


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.stem)
def test_config_loads_and_builds(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config) and isinstance(cfg.dit, DiTConfig) and isinstance(cfg.vae, VAEConfig)
    assert cfg.name and (path.read_text().lstrip().startswith('"""')), "config files document their command"
    assert cfg.dit.in_channels >= cfg.vae.z_dim and cfg.dit.out_channels == cfg.vae.z_dim
    _, state = abstract_dit(cfg.dit)  # builds abstractly (no memory), whatever the size
    assert param_count(state) > 0


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.stem)
def test_config_docstring_names_the_command_that_runs_it(path):
    doc = path.read_text().split('"""')[1]
    assert "python " in doc, f"{path.name}: say in the docstring which command runs this config"
    if path.stem.startswith("swap") or path.stem == "demo":
        assert f"configs/{path.name}" in doc, f"{path.name}: the command should pass this file as --config"


def test_config_names_are_unique():
    names = [load_config(p).name for p in CONFIG_FILES]
    assert len(names) == len(set(names))


def test_tiny_is_tiny():
    cfg = load_config(pathlib.Path(__file__).parent.parent / "configs/tiny.py")
    assert param_count(abstract_dit(cfg.dit)[1]) < 100_000


@pytest.mark.parametrize("change, match", [
    (dict(attention="flash"), r"DiTConfig.attention \('flash'\)"),
    (dict(remat_policy="some"), r"DiTConfig.remat_policy \('some'\)"),
    (dict(dtype="float16"), r"dtype \('float16'\)"),
    (dict(head_dim=7), r"DiTConfig.head_dim \(7\)"),
    (dict(image_dim=1280), r"image_dim \(1280\) and added_kv_proj_dim \(None\)"),
    (dict(image_dim=1280, added_kv_proj_dim=5120), r"added_kv_proj_dim \(5120\) must equal num_heads \* head_dim"),
])
def test_dit_config_validation_names_the_values(change, match):
    with pytest.raises(ConfigError, match=match):
        dataclasses.replace(DiTConfig(), **change)


def test_load_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.py")
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(ConfigError, match="no get_config"):
        load_config(tmp_path / "empty.py")


@pytest.mark.parametrize("name, text, match", [
    ("missing.py", None, "config file '.*missing.py' does not exist: pass a path such as configs/tiny.py"),
    ("notes.md", "hello", r"config file '.*notes.md' is not a Python file: pass a path"),
    ("broken.py", "def get_config(:\n", r"is not valid Python \(line 1: .*\): fix it, or pass a configs/\*.py file"),
    ("empty.py", "x = 1\n", r"has no get_config\(\): define one returning swapjax.config.Config"),
    ("wrong.py", "def get_config():\n    return 3\n", r"get_config\(\) returned int, not swapjax.config.Config"),
])
def test_a_bad_config_file_is_one_config_error_that_says_what_to_do(tmp_path, name, text, match):
    if text is not None:
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(tmp_path / name)
