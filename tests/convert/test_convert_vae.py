"""Wan2.1 VAE converter: diffusers and original layouts, config mapping, shape errors."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
import torch
from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
from flax import nnx
from safetensors.numpy import save_file

from swapjax.models.vae_config import VAEConfig
from swapjax.errors import CheckpointError
from swapjax.convert.vae import convert_vae, original_name, vae_config_from_diffusers
from swapjax.parallel import logical_specs
from helpers import assert_same_tree, flat
from wan_vae_torch import build_reference

# diffusers' own original->diffusers converter hard-codes this structure (2 res blocks, 4 levels, (1,2,4,4)).
WAN21_TINY = dict(base_dim=4, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                  temperal_downsample=[False, True, True])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    ref = build_reference(seed=3, **WAN21_TINY)
    path = tmp_path_factory.mktemp("vae_diffusers")
    ref.save_pretrained(path)
    state_dict = {k: v.numpy() for k, v in ref.state_dict().items()}
    return path, state_dict


def test_diffusers_directory_converts_every_tensor(reference):
    path, state_dict = reference
    cfg, state = convert_vae(path)
    assert cfg.base_dim == 4 and cfg.z_dim == 4 and cfg.dim_mult == (1, 2, 4, 4)
    assert cfg.latents_std == pytest.approx([1.0 + 0.1 * i for i in range(4)])
    leaves = flat(state)
    assert sum(a.size for a in leaves.values()) == sum(a.size for a in state_dict.values())
    # Spot-check the layout transforms: Conv3d, per-frame Conv2d, gamma, bias.
    w = state_dict["encoder.conv_in.weight"]  # [O, I, kt, kh, kw]
    np.testing.assert_array_equal(leaves["encoder/conv_in/conv/kernel"], w.transpose(2, 3, 4, 1, 0))
    w = state_dict["decoder.up_blocks.0.upsamplers.0.resample.1.weight"]  # [O, I, kh, kw]
    np.testing.assert_array_equal(leaves["decoder/up_blocks/0/upsamplers/0/resample/kernel"],
                                  w.transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(leaves["encoder/mid_block/attentions/0/norm/gamma"],
                                  state_dict["encoder.mid_block.attentions.0.norm.gamma"].reshape(-1))
    np.testing.assert_array_equal(leaves["quant_conv/conv/bias"], state_dict["quant_conv.bias"])


def test_state_carries_logical_axes(reference):
    _, state = convert_vae(reference[0])
    specs = dict(nnx.to_flat_state(logical_specs(state)))
    assert len(specs[("encoder", "conv_in", "conv", "kernel")]) == 5
    names = nnx.to_flat_state(state)[0][1].get_metadata()["out_sharding"]
    assert all(isinstance(n, str) for n in names)


def test_original_layout_names_agree_with_diffusers_converter(reference):
    """Our original-layout names, fed to diffusers' own original->diffusers converter, come back unchanged."""
    _, state_dict = reference
    cfg = vae_config_from_diffusers(dict(WAN21_TINY))
    original = {original_name(k, cfg): v for k, v in state_dict.items()}
    assert "encoder.downsamples.0.residual.2.weight" in original and "decoder.upsamples.7.resample.1.weight" in original
    back = convert_wan_vae_to_diffusers({k: torch.from_numpy(v) for k, v in original.items()})
    assert sorted(back) == sorted(state_dict)


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_original_layout_gives_the_same_params(reference, tmp_path, fmt):
    path, state_dict = reference
    cfg, want = convert_vae(path)
    original = {original_name(k, cfg): v for k, v in state_dict.items()}
    if fmt == "safetensors":
        src = tmp_path / "Wan2.1_VAE.safetensors"
        save_file(original, str(src))
        got_cfg, got = convert_vae(src, cfg=cfg)
    else:
        src = tmp_path / "Wan2.1_VAE.pth"
        torch.save({k: torch.from_numpy(v) for k, v in original.items()}, src)
        with pytest.raises(CheckpointError, match="allow_pickle"):
            convert_vae(src, cfg=cfg)
        got_cfg, got = convert_vae(src, cfg=cfg, allow_pickle=True)
    assert got_cfg == cfg
    assert_same_tree(got, want)


def test_mismatches_are_all_listed(reference, tmp_path):
    _, state_dict = reference
    broken = dict(state_dict)
    del broken["decoder.conv_out.bias"]  # missing
    broken["encoder.conv_in.weight"] = np.zeros((5, 3, 3, 3, 3), np.float32)  # wrong shape
    broken["encoder.extra.weight"] = np.zeros((2,), np.float32)  # unexpected
    save_file(broken, str(tmp_path / "diffusion_pytorch_model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKLWan", **WAN21_TINY}))
    with pytest.raises(CheckpointError) as err:
        convert_vae(tmp_path)
    message = str(err.value)
    assert "3 parameters differ" in message
    for name in ("decoder.conv_out.bias", "encoder.conv_in.weight", "encoder.extra.weight"):
        assert name in message
    assert "(3, 3, 3, 3, 4)" in message and "(3, 3, 3, 3, 5)" in message


def test_original_file_without_config_uses_wan21_defaults(reference, tmp_path):
    _, state_dict = reference
    cfg = vae_config_from_diffusers(dict(WAN21_TINY))
    save_file({original_name(k, cfg): v for k, v in state_dict.items()}, str(tmp_path / "vae.safetensors"))
    with pytest.raises(CheckpointError, match=r"Wan2.1 defaults .*pass cfg="):
        convert_vae(tmp_path / "vae.safetensors")  # tiny tensors vs the 127M-parameter default config


def test_config_from_diffusers_and_wan22_rejection():
    cfg = vae_config_from_diffusers({"_class_name": "AutoencoderKLWan", "base_dim": 96, "z_dim": 16,
                                     "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_scales": [],
                                     "temperal_downsample": [False, True, True], "dropout": 0.0},
                                    dtype="bfloat16")
    assert cfg == VAEConfig(dtype="bfloat16")
    with pytest.raises(CheckpointError, match="Wan2.2-only options .*is_residual"):
        vae_config_from_diffusers({"base_dim": 160, "z_dim": 48, "is_residual": True, "patch_size": 2})
    with pytest.raises(CheckpointError, match="AutoencoderKLQwenImage"):
        vae_config_from_diffusers({"_class_name": "AutoencoderKLQwenImage"})


def test_bf16_checkpoint_loads_into_float32_params(tmp_path):
    ref = build_reference(seed=4, **WAN21_TINY).to(torch.bfloat16)
    ref.save_pretrained(tmp_path)
    _, state = convert_vae(tmp_path)
    assert all(leaf.dtype == np.float32 for leaf in jax.tree.leaves(state))
    w = ref.state_dict()["decoder.conv_out.weight"].float().numpy()
    np.testing.assert_array_equal(flat(state)["decoder/conv_out/conv/kernel"], w.transpose(2, 3, 4, 1, 0))


def test_bfloat16_params_from_config(reference):
    path, _ = reference
    cfg, state = convert_vae(path, cfg=vae_config_from_diffusers(dict(WAN21_TINY), param_dtype="bfloat16"))
    assert cfg.param_dtype == "bfloat16"
    assert all(leaf.dtype == jax.numpy.bfloat16 for leaf in jax.tree.leaves(state))


def test_z_dim_8_export_converts_with_neutral_statistics_and_matches_diffusers(tmp_path, capsys):
    """diffusers writes its 16-entry latent statistics into config.json for any z_dim (and never reads them):
    the CLI replaces them with mean 0 / std 1, says so in one line, and the model equals diffusers."""
    from diffusers import AutoencoderKLWan

    from swapjax.convert.__main__ import main
    from swapjax.convert.saved import load_converted
    from swapjax.models import vae as wan_vae
    from helpers import rel_err
    from wan_vae_torch import from_torch_video, to_torch_video

    torch.manual_seed(8)
    ref = AutoencoderKLWan(base_dim=8, z_dim=8, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[True]).eval()
    with torch.no_grad():
        for name, param in ref.named_parameters():  # RMS_norm gammas start at one: make a wrong mapping visible
            if name.endswith("gamma"):
                param.uniform_(0.5, 1.5)
    ref.save_pretrained(tmp_path / "vae")
    written = json.loads((tmp_path / "vae" / "config.json").read_text())
    assert written["z_dim"] == 8 and len(written["latents_mean"]) == len(written["latents_std"]) == 16

    capsys.readouterr()
    assert main(["--src", str(tmp_path / "vae"), "--out", str(tmp_path / "out")]) == 0
    notice = capsys.readouterr().err.strip().splitlines()
    assert len(notice) == 1 and "z_dim = 8 but 16-entry latents_mean and 16-entry latents_std" in notice[0]
    assert "replaced by mean 0 / std 1" in notice[0]
    kind, cfg, state = load_converted(tmp_path / "out")
    assert kind == "vae" and cfg.z_dim == 8
    assert cfg.latents_mean == (0.0,) * 8 and cfg.latents_std == (1.0,) * 8
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: wan_vae.WanVAE(cfg, rngs=nnx.Rngs(0))))

    video = np.random.default_rng(0).uniform(-1, 1, (1, 5, 16, 16, 3)).astype(np.float32)
    with torch.no_grad():
        want_mean = from_torch_video(ref.encode(to_torch_video(video)).latent_dist.mean)
    mean, _ = wan_vae.vae_encode(graphdef, state, jax.numpy.asarray(video))
    assert mean.shape == want_mean.shape == (1, 3, 8, 8, 8)
    z = np.random.default_rng(1).normal(size=want_mean.shape).astype(np.float32)
    with torch.no_grad():
        want_video = from_torch_video(ref.decode(to_torch_video(z)).sample)
    got_video = wan_vae.vae_decode(graphdef, state, jax.numpy.asarray(z))
    errors = {"encode": rel_err(mean, want_mean), "decode": rel_err(got_video, want_video)}
    print("\n[z_dim=8 export] " + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))
    assert max(errors.values()) <= 1e-5, errors  # the tolerance of tests/models/test_parity_vae.py
