"""umT5 text encoder: parity with transformers' `UMT5EncoderModel` (fp32, padding and mask), the relative-position
buckets at Wan's 512 tokens, the full-size parameter count, the converter's tied-embedding and error handling, and
the prompt tokenizer against transformers' tokenizer."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from encoder_fixtures import SENTENCES, tiny_tokenizer, tiny_umt5
from helpers import rel_err
from swapjax.errors import CheckpointError
from swapjax.convert.umt5 import convert_umt5, umt5_config_to_json
from swapjax.models.dit import param_count
from swapjax.models.umt5 import abstract_umt5, prompt_embeddings, relative_buckets, umt5_apply
from swapjax.models.umt5_config import UMT5Config
from swapjax.models.umt5_tokenizer import PromptTokenizer, clean_prompt


@pytest.fixture(scope="module")
def model():
    return tiny_umt5()


@pytest.fixture(scope="module")
def folder(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("umt5")
    model.save_pretrained(path)
    return path


def _ids_and_mask():
    rng = np.random.default_rng(0)
    ids = rng.integers(2, 64, (3, 24))
    mask = np.ones_like(ids)
    for row, n in enumerate((24, 9, 1)):  # full, padded, one token
        ids[row, n:], mask[row, n:] = 0, 0
    return ids, mask


def test_matches_transformers_with_padding_and_mask(model, folder):
    cfg, state = convert_umt5(folder)
    graph, _ = abstract_umt5(cfg)
    ids, mask = _ids_and_mask()
    with torch.no_grad():
        ref = model(torch.tensor(ids), torch.tensor(mask)).last_hidden_state.numpy()  # [3, 24, 32]
    out = np.asarray(umt5_apply(graph, state, jnp.asarray(ids), jnp.asarray(mask)))
    assert rel_err(out, ref) <= 1e-5
    emb = np.asarray(prompt_embeddings(graph, state, jnp.asarray(ids), jnp.asarray(mask)))
    assert rel_err(emb[mask == 1], ref[mask == 1]) <= 1e-5 and not emb[mask == 0].any()  # tail zeroed (Wan)


def test_unrolled_and_bfloat16_runs_agree(folder):
    cfg, state = convert_umt5(folder)
    ids, mask = _ids_and_mask()
    base = np.asarray(umt5_apply(abstract_umt5(cfg)[0], state, jnp.asarray(ids), jnp.asarray(mask)))
    unrolled = dataclasses.replace(cfg, scan_layers=False)
    same = umt5_apply(abstract_umt5(unrolled)[0], state, jnp.asarray(ids), jnp.asarray(mask))
    assert rel_err(same, base) <= 1e-6
    bf_cfg, bf_state = convert_umt5(folder, dtype="bfloat16")
    bf_cfg = dataclasses.replace(bf_cfg, dtype="bfloat16")
    low = np.asarray(umt5_apply(abstract_umt5(bf_cfg)[0], bf_state, jnp.asarray(ids), jnp.asarray(mask)))
    assert low.dtype == np.float32 and rel_err(low, base) < 5e-2


def test_relative_buckets_match_transformers_at_512_tokens(model):
    attention = model.encoder.block[0].layer[0].SelfAttention
    offsets = torch.arange(512)[None, :] - torch.arange(512)[:, None]
    ref = attention._relative_position_bucket(offsets).numpy()
    np.testing.assert_array_equal(relative_buckets(512, 32, 128), ref)


def test_full_size_parameter_count_equals_transformers():
    from transformers import UMT5Config as HFConfig, UMT5EncoderModel

    cfg = UMT5Config()  # umT5-XXL as Wan2.1 uses it
    with torch.device("meta"):
        ref = UMT5EncoderModel(HFConfig(**umt5_config_to_json(cfg))).num_parameters()
    ours = param_count(abstract_umt5(cfg)[1])
    assert ours == ref == 5_680_910_336


def test_every_parameter_has_logical_axes():
    _, state = abstract_umt5(UMT5Config(vocab_size=16, d_model=8, d_kv=4, num_heads=2, d_ff=12, num_layers=2))
    for path, var in nnx.to_flat_state(state):
        axes = var.get_metadata().get("out_sharding")
        assert axes is not None and len(axes) == len(var.shape), path


def test_tied_table_saved_under_either_name_converts(model, folder, tmp_path):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    table = tensors.pop("shared.weight", None)
    if table is not None:
        tensors["encoder.embed_tokens.weight"] = table
    alt = tmp_path / "alt"
    alt.mkdir()
    save_file(tensors, alt / "model.safetensors")
    (alt / "config.json").write_text((folder / "config.json").read_text())
    _, a = convert_umt5(folder)
    _, b = convert_umt5(alt)
    for (path, x), (_, y) in zip(nnx.to_flat_state(a), nnx.to_flat_state(b)):
        np.testing.assert_array_equal(x.get_value(), y.get_value(), err_msg=str(path))


def test_mismatched_checkpoint_lists_every_difference(folder):
    cfg = UMT5Config(vocab_size=64, d_model=32, d_kv=8, num_heads=4, d_ff=40, num_layers=3)
    with pytest.raises(CheckpointError, match=r"d_ff|wi_0") as err:
        convert_umt5(folder, cfg=cfg)
    text = str(err.value)
    assert "encoder.block.0.layer.1.DenseReluDense.wi_0.weight: config expects (40, 32)" in text
    assert "encoder.block.2.layer.0.SelfAttention.q.weight: missing from checkpoint" in text


def test_non_umt5_config_is_refused(folder, tmp_path):
    import json

    bad = json.loads((folder / "config.json").read_text())
    bad["model_type"] = "t5"
    (tmp_path / "config.json").write_text(json.dumps(bad))
    (tmp_path / "model.safetensors").symlink_to(folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="model_type = 't5', not 'umt5'"):
        convert_umt5(tmp_path)


def test_tokenizer_matches_transformers_padding_truncation_and_cleaning(tmp_path):
    hf = tiny_tokenizer()
    hf.save_pretrained(tmp_path)
    ours = PromptTokenizer.from_folder(tmp_path)
    prompts = [SENTENCES[0], "  a  dog\n\tjumps &amp;amp; runs ", "", " ".join(SENTENCES)]
    cleaned = [clean_prompt(p) for p in prompts]
    assert cleaned[1] == "a dog jumps & runs"
    ref = hf(cleaned, padding="max_length", max_length=16, truncation=True, add_special_tokens=True,
             return_attention_mask=True, return_tensors="np")
    ids, mask = ours(prompts, max_length=16)
    np.testing.assert_array_equal(ids, ref["input_ids"])
    np.testing.assert_array_equal(mask, ref["attention_mask"])
    assert mask[3].all() and ids[3, -1] == hf.eos_token_id  # cut to 16 with the end token kept


def test_missing_tokenizer_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="tokenizer.json.* does not exist"):
        PromptTokenizer.from_folder(tmp_path)


def test_jitted_encoder_compiles_once_per_shape(folder):
    cfg, state = convert_umt5(folder)
    graph, _ = abstract_umt5(cfg)
    traces = []

    def counted(graph, state, ids, mask):
        traces.append(ids.shape)  # runs once per trace (compile), not per call
        return prompt_embeddings(graph, state, ids, mask)

    fn = jax.jit(counted, static_argnums=0)
    ids, mask = _ids_and_mask()
    state = jax.device_put(state)
    for row in range(3):
        fn(graph, state, jnp.asarray(ids[row:row + 1]), jnp.asarray(mask[row:row + 1]))
    assert len(traces) == 1
