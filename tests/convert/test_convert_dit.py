"""DiT converter: both key layouts, all-mismatches errors, config translation, the CLI and its saved format."""

from __future__ import annotations

import dataclasses
import pathlib
import json

import jax
import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
import torch
from diffusers import WanTransformer3DModel
from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
from flax import nnx

from swapjax.config import load_config
from swapjax.errors import ConfigError
from swapjax.convert.__main__ import detect_kind, main
from swapjax.errors import CheckpointError
from swapjax.convert.dit import (ORIGINAL_PREFIX, convert_dit, dit_config_from_diffusers, dit_config_from_original,
                                 dit_config_to_diffusers, param_table)
from swapjax.convert.saved import load_converted
from swapjax.parallel import MESH_AXES
from wan_dit_torch import build_reference, save_reference
from helpers import assert_same_tree, flat

T2V = dict(num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, text_dim=32, freq_dim=32,
           ffn_dim=64, num_layers=2)
I2V = dict(T2V, image_dim=24, added_kv_proj_dim=32)

CONFIGS = pathlib.Path(__file__).parent.parent.parent / "configs"


def _numpy_state_dict(model) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def test_table_names_agree_with_diffusers_model_and_its_single_file_converter():
    cfg = dit_config_from_diffusers(I2V)
    table = param_table(cfg)
    with torch.device("meta"):
        model = WanTransformer3DModel(**I2V)
    assert {e.diffusers for e in table} == set(model.state_dict())
    # diffusers' own original -> diffusers renaming maps every original name onto our diffusers name.
    renamed = convert_wan_transformer_to_diffusers({ORIGINAL_PREFIX + e.original: e.diffusers for e in table})
    assert all(renamed[k] == k for k in renamed) and len(renamed) == len(table)


def test_original_layout_converts_to_the_same_params(tmp_path):
    model = build_reference(seed=3, **I2V)
    cfg, expected = convert_dit(save_reference(model, tmp_path / "diffusers"))
    sd = _numpy_state_dict(model)
    original = {ORIGINAL_PREFIX + e.original: sd[e.diffusers] for e in param_table(cfg)}
    (tmp_path / "original").mkdir()
    safetensors.numpy.save_file(original, tmp_path / "original" / "wan.safetensors")
    # No config.json (the original I2V config cannot express a tiny image_dim): the config is given.
    cfg2, state = convert_dit(tmp_path / "original" / "wan.safetensors", cfg=cfg)
    assert cfg2 == cfg
    assert_same_tree(state, expected)


def test_original_layout_with_original_config_json(tmp_path):
    model = build_reference(seed=4, **T2V)
    cfg, expected = convert_dit(save_reference(model, tmp_path / "diffusers"))
    sd = _numpy_state_dict(model)
    src = tmp_path / "original"
    src.mkdir()
    safetensors.numpy.save_file({e.original: sd[e.diffusers] for e in param_table(cfg)}, src / "model.safetensors")
    (src / "config.json").write_text(json.dumps({
        "_class_name": "WanModel", "model_type": "t2v", "dim": 32, "num_heads": 2, "ffn_dim": 64, "freq_dim": 32,
        "in_dim": 4, "out_dim": 4, "text_dim": 32, "num_layers": 2, "eps": 1e-6, "text_len": 512}))
    cfg2, state = convert_dit(src)
    assert cfg2 == cfg
    assert_same_tree(state, expected)
    assert detect_kind(src / "model.safetensors") == "dit"


def test_mismatches_are_all_listed_with_both_shapes(tmp_path):
    model = build_reference(seed=5, **T2V)
    sd = _numpy_state_dict(model)
    sd["blocks.1.attn1.to_q.weight"] = np.zeros((32, 31), np.float32)
    sd["proj_out.bias"] = np.zeros((12,), np.float32)
    del sd["blocks.0.ffn.net.2.bias"]
    sd["blocks.0.unknown.weight"] = np.zeros((3,), np.float32)
    save_reference(model, tmp_path)
    (tmp_path / "diffusion_pytorch_model.safetensors").unlink()
    safetensors.numpy.save_file(sd, tmp_path / "diffusion_pytorch_model.safetensors")
    with pytest.raises(CheckpointError) as info:
        convert_dit(tmp_path)
    msg = str(info.value)
    assert "4 parameters differ" in msg
    assert "blocks.1.attn1.to_q.weight: config expects (32, 32), checkpoint has (32, 31)" in msg
    assert "proj_out.bias: config expects (16,), checkpoint has (12,)" in msg
    assert "blocks.0.ffn.net.2.bias: missing from checkpoint (expected (32,))" in msg
    assert "blocks.0.unknown.weight: unexpected in checkpoint (shape (3,))" in msg


def test_config_that_does_not_match_the_checkpoint_lists_the_layers(tmp_path):
    model = build_reference(seed=6, **T2V)
    cfg = dit_config_from_diffusers(dict(T2V, num_layers=3, ffn_dim=48))
    with pytest.raises(CheckpointError, match=r"blocks\.2\.attn1\.to_q\.weight: missing") as info:
        convert_dit(save_reference(model, tmp_path), cfg=cfg)
    assert "blocks.0.ffn.net.0.proj.weight: config expects (48, 32), checkpoint has (64, 32)" in str(info.value)


def test_config_translation_round_trip():
    cfg = dit_config_from_diffusers(dict(I2V, patch_size=[1, 2, 2], cross_attn_norm=False))
    assert dit_config_from_diffusers(dit_config_to_diffusers(cfg)) == cfg
    model = WanTransformer3DModel.from_config(dit_config_to_diffusers(cfg))
    assert dit_config_from_diffusers(dict(model.config)) == cfg
    with pytest.raises(CheckpointError, match="pos_embed_seq_len"):
        dit_config_from_diffusers(dict(I2V, pos_embed_seq_len=514))
    with pytest.raises(ConfigError, match="added_kv_proj_dim"):
        dit_config_from_diffusers(dict(I2V, added_kv_proj_dim=40))


@pytest.mark.parametrize("config_file, original", [
    ("wan2_1_t2v_1_3b.py", dict(model_type="t2v", dim=1536, ffn_dim=8960, freq_dim=256, in_dim=16,
                                        out_dim=16, num_heads=12, num_layers=30, eps=1e-6, text_len=512)),
    ("wan2_1_i2v_14b.py", dict(model_type="i2v", dim=5120, ffn_dim=13824, freq_dim=256, in_dim=36,
                                       out_dim=16, num_heads=40, num_layers=40, eps=1e-6, text_len=512)),
])
def test_original_wan_config_json_gives_the_shipped_architecture(config_file, original):
    shipped = load_config(CONFIGS / config_file).dit
    execution = {f: getattr(shipped, f) for f in ("param_dtype", "dtype", "attention", "remat_policy")}
    assert dit_config_from_original(original, **execution) == shipped
    with pytest.raises(CheckpointError, match="model_type"):
        dit_config_from_original(dict(original, model_type="flf2v"))


def test_cli_converts_saves_and_loads(tmp_path, capsys):
    model = build_reference(seed=7, **T2V)
    src = save_reference(model, tmp_path / "src")
    _, expected = convert_dit(src)
    assert main(["--src", str(src), "--out", str(tmp_path / "out")]) == 0
    kind, cfg, state = load_converted(tmp_path / "out")
    assert kind == "dit" and cfg == dit_config_from_diffusers(T2V)
    assert_same_tree(state, expected)
    # logical axes survive the round trip
    assert dict(nnx.to_flat_state(state))[("blocks", "self_attn", "q", "kernel")].out_sharding == (
        "layers", "embed", "heads")

    mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]).reshape(2, 2, 2, 1), MESH_AXES)
    _, _, sharded = load_converted(tmp_path / "out", mesh=mesh)
    kernel = dict(nnx.to_flat_state(sharded))[("blocks", "ffn", "fc1", "kernel")].get_value()
    assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor")
    assert_same_tree(sharded, expected)

    assert main(["--src", str(src), "--out", str(tmp_path / "bf16"), "--dtype", "bfloat16"]) == 0
    _, cfg16, state16 = load_converted(tmp_path / "bf16")
    assert cfg16 == dataclasses.replace(cfg, param_dtype="bfloat16")
    assert {leaf.dtype for leaf in jax.tree.leaves(state16)} == {np.dtype(ml_dtypes.bfloat16)}

    capsys.readouterr()
    assert main(["--src", str(src), "--out", str(tmp_path / "out")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["--src", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cli_dispatches_vae_checkpoints_by_config_class(tmp_path):
    from swapjax.convert.vae import convert_vae
    from wan_vae_torch import build_reference as build_vae

    vae = build_vae(0, base_dim=8, z_dim=4, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[True])
    vae.save_pretrained(tmp_path / "vae")
    assert detect_kind(tmp_path / "vae") == "vae"
    assert main(["--src", str(tmp_path / "vae"), "--out", str(tmp_path / "out"), "--dtype", "bfloat16"]) == 0
    kind, cfg, state = load_converted(tmp_path / "out")
    cfg32, expected = convert_vae(tmp_path / "vae")
    assert kind == "vae" and cfg == dataclasses.replace(cfg32, param_dtype="bfloat16")
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(expected)):
        assert a.dtype == ml_dtypes.bfloat16
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b).astype(ml_dtypes.bfloat16))


def test_load_converted_lists_mismatches_against_its_config(tmp_path):
    src = save_reference(build_reference(seed=8, **T2V), tmp_path / "src")
    assert main(["--src", str(src), "--out", str(tmp_path / "out")]) == 0
    meta_file = tmp_path / "out" / "swapjax_config.json"
    meta = json.loads(meta_file.read_text())
    meta["config"]["ffn_dim"] = 48
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"blocks/ffn/fc1/kernel: config expects \(2, 32, 48\), checkpoint "
                                              r"has \(2, 32, 64\)"):
        load_converted(tmp_path / "out")


def test_sharded_bf16_export_converts_to_the_rounded_params(tmp_path):
    """A multi-file bf16 diffusers export (with its index.json) gives the bf16-rounded fp32 parameters."""
    model = build_reference(seed=8, **T2V)
    _, expected = convert_dit(save_reference(model, tmp_path / "fp32"))
    model.to(torch.bfloat16).save_pretrained(tmp_path / "bf16", safe_serialization=True, max_shard_size="20KB")
    shards = sorted((tmp_path / "bf16").glob("*.safetensors"))
    assert len(shards) > 1 and list((tmp_path / "bf16").glob("*.safetensors.index.json"))
    cfg, state = convert_dit(tmp_path / "bf16", dtype="float32")
    assert cfg.param_dtype == "float32"
    got, want = flat(state), flat(expected)
    for k in want:
        assert got[k].dtype == np.float32
        np.testing.assert_array_equal(got[k], want[k].astype(ml_dtypes.bfloat16).astype(np.float32), err_msg=str(k))
