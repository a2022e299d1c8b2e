"""CLIP vision tower: parity of the penultimate hidden states with transformers (`CLIPVisionModel` and
`...WithProjection`, fp32), the ViT-H/14 parameter count, and the numpy preprocessing against transformers'
`CLIPImageProcessor` (PIL resampling)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from encoder_fixtures import tiny_clip, tiny_processor
from helpers import rel_err
from swapjax.errors import CheckpointError
from swapjax.convert.clip_vision import clip_vision_config_to_json, convert_clip_vision
from swapjax.models.clip_preprocess import ClipPreprocess, preprocess_image
from swapjax.models.clip_vision import abstract_clip_vision, clip_image_tokens
from swapjax.models.clip_vision_config import ClipVisionConfig
from swapjax.models.dit import param_count


@pytest.mark.parametrize("with_projection", [False, True])
def test_penultimate_hidden_states_match_transformers(tmp_path, with_projection):
    model = tiny_clip(with_projection=with_projection)
    model.save_pretrained(tmp_path)
    cfg, state = convert_clip_vision(tmp_path)
    graph, _ = abstract_clip_vision(cfg)
    pixels = np.random.default_rng(0).standard_normal((2, 3, 28, 28)).astype(np.float32)  # [B, C, H, W]
    with torch.no_grad():
        ref = model(pixel_values=torch.tensor(pixels), output_hidden_states=True).hidden_states[-2].numpy()
    out = np.asarray(clip_image_tokens(graph, state, jnp.asarray(pixels.transpose(0, 2, 3, 1))))
    assert out.shape == (2, 5, 32) and rel_err(out, ref) <= 1e-5


def test_full_size_parameter_count_equals_transformers():
    from transformers import CLIPVisionConfig, CLIPVisionModel

    cfg = ClipVisionConfig()  # ViT-H/14, Wan2.1 I2V's image encoder
    with torch.device("meta"):
        ref = CLIPVisionModel(CLIPVisionConfig(**clip_vision_config_to_json(cfg))).num_parameters()
    assert param_count(abstract_clip_vision(cfg)[1]) == ref == 630_766_080
    assert cfg.num_tokens == 257 and cfg.layers_run == 31


def test_mismatched_checkpoint_lists_every_difference(tmp_path):
    tiny_clip().save_pretrained(tmp_path)
    cfg = ClipVisionConfig(hidden_size=32, intermediate_size=48, num_layers=4, num_heads=4, image_size=28,
                           patch_size=14)
    with pytest.raises(CheckpointError) as err:
        convert_clip_vision(tmp_path, cfg=cfg)
    text = str(err.value)
    assert "encoder.layers.0.mlp.fc1.weight: config expects (48, 32), checkpoint has (64, 32)" in text
    assert "encoder.layers.3.self_attn.q_proj.weight: missing from checkpoint" in text


def _smooth(h: int, w: int, seed: int) -> np.ndarray:
    """uint8 `[h, w, 3]` photo-like content: smooth gradients and blobs."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    chans = [128 + 60 * np.sin(xs / rng.uniform(8, 30) + c) * np.cos(ys / rng.uniform(8, 30) - c) for c in range(3)]
    return np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def processors(tmp_path_factory):
    from transformers import CLIPImageProcessor

    folder = tmp_path_factory.mktemp("processor")
    CLIPImageProcessor().save_pretrained(folder)  # OpenAI CLIP's: shortest side 224, bicubic, crop 224
    return CLIPImageProcessor.from_pretrained(folder), ClipPreprocess.from_folder(folder)


@pytest.mark.parametrize("shape", [(300, 400), (224, 224), (100, 150), (1000, 801), (257, 613), (224, 500)])
def test_preprocessing_equals_transformers(processors, shape):
    theirs, ours = processors
    image = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)  # noise: every rounding shows
    ref = theirs(images=image, return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)  # [224, 224, 3]
    np.testing.assert_array_equal(preprocess_image(image, ours), ref)


@pytest.mark.parametrize("shape", [(613, 257), (64, 60)])
def test_preprocessing_where_pillow_resamples_rows_first(processors, shape):
    """For some sizes Pillow runs its vertical pass first; the uint8 rounding between the passes then differs
    (see swapjax/models/clip_preprocess.py). On photo-like content that is at most a couple of levels."""
    theirs, ours = processors
    image = _smooth(*shape, seed=2)
    ref = theirs(images=image, return_tensors="np")["pixel_values"][0].transpose(1, 2, 0)
    levels = np.abs(preprocess_image(image, ours) - ref) * np.asarray(ours.std, np.float32) * 255
    assert levels.max() <= 2.01 and levels.mean() < 0.2


def test_tiny_processor_round_trip(tmp_path):
    tiny_processor().save_pretrained(tmp_path)
    cfg = ClipPreprocess.from_folder(tmp_path)
    assert cfg.shortest_edge == 28 and cfg.crop_hw == (28, 28) and cfg.resample == 3
    assert preprocess_image(_smooth(40, 90, 0), cfg).shape == (28, 28, 3)


def test_bad_preprocessor_config_is_named(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text('{"resample": 0}')
    with pytest.raises(CheckpointError, match="resample = 0"):
        ClipPreprocess.from_folder(tmp_path)
