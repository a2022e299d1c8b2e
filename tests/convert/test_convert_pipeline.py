"""`python -m swapjax.convert --pipeline`: a tiny diffusers Wan I2V pipeline (all parts, `save_pretrained`) converts
in one command into one folder with one manifest; its JAX encoders give what diffusers' `encode_prompt` and
`encode_image` give; a folder missing a part is one line naming it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from encoder_fixtures import SENTENCES, save_tiny_pipeline
from helpers import rel_err
from sample_fixtures import CONFIG_PATH
from swapjax.convert.__main__ import main
from swapjax.convert.pipeline import MANIFEST
from swapjax.encoding import ImageEncoder, TextEncoder

PROMPTS = [SENTENCES[0], "a  cat\n jumps over the red &amp; blue car at night", ""]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipe") / "Wan-tiny-I2V"
    return folder, save_tiny_pipeline(folder)


@pytest.fixture(scope="module")
def converted(pipeline, tmp_path_factory):
    out = tmp_path_factory.mktemp("conv") / "converted"
    assert main(["--pipeline", str(pipeline[0]), "--out", str(out), "--swap-config", str(CONFIG_PATH)]) == 0
    return out


def test_one_command_writes_every_part_and_one_manifest(converted, pipeline):
    manifest = json.loads((converted / MANIFEST).read_text())
    kinds = {part: entry["kind"] for part, entry in manifest["parts"].items()}
    assert kinds == {"dit": "swap", "vae": "vae", "text_encoder": "umt5", "tokenizer": "tokenizer",
                     "image_encoder": "clip_vision", "image_processor": "image_processor"}
    assert manifest["parts"]["dit"]["source"] == "transformer" and manifest["source"] == str(pipeline[0])
    assert (converted / "tokenizer" / "tokenizer.json").is_file()
    assert (converted / "image_processor" / "preprocessor_config.json").is_file()


def test_prompt_embeddings_equal_diffusers_encode_prompt(converted, pipeline):
    pipe = pipeline[1]
    with torch.no_grad():
        ref, neg = pipe.encode_prompt(PROMPTS, negative_prompt=[""] * len(PROMPTS), max_sequence_length=512,
                                      device=torch.device("cpu"))
    with TextEncoder.from_pipeline(converted) as text:
        ours = np.stack([text.encode(p) for p in PROMPTS])  # [3, 512, 32]
        again = text.encode("")
    assert ours.shape == tuple(ref.shape) == (3, 512, 32)
    assert rel_err(ours, ref.numpy()) <= 1e-5 and rel_err(again, neg.numpy()[0]) <= 1e-5
    assert text.state is None  # released when the block ended


def test_image_tokens_equal_diffusers_encode_image(converted, pipeline):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (28, 28, 3), dtype=np.uint8), rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)]
    with ImageEncoder.from_pipeline(converted) as image:
        for picture in images:
            with torch.no_grad():
                ref = pipeline[1].encode_image(picture, device=torch.device("cpu")).numpy()[0]  # [5, 32]
            assert rel_err(image.encode(picture), ref) <= 1e-5


@pytest.mark.parametrize("part,folder", [("text encoder", "text_encoder"), ("tokenizer", "tokenizer"),
                                         ("CLIP image encoder", "image_encoder"), ("Wan VAE", "vae")])
def test_missing_part_is_one_line_naming_it(pipeline, tmp_path, capsys, part, folder):
    copy = tmp_path / "pipe"
    shutil.copytree(pipeline[0], copy)
    shutil.rmtree(copy / folder)
    out = tmp_path / "out"
    assert main(["--pipeline", str(copy), "--out", str(out), "--swap-config", str(CONFIG_PATH)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and f"no {folder}/ (" in err and part in err
    assert not out.exists()


def test_mismatched_parts_are_refused_before_reading(pipeline, tmp_path, capsys):
    copy = tmp_path / "pipe"
    shutil.copytree(pipeline[0], copy)
    config = json.loads((copy / "text_encoder" / "config.json").read_text())
    config["d_model"] = 48
    (copy / "text_encoder" / "config.json").write_text(json.dumps(config))
    assert main(["--pipeline", str(copy), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "d_model = 48 but the transformer reads text_dim = 32" in err
