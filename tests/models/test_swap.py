"""The swap DiT: one-way reference attention (the cached two-stream model = the single pass over [prefix; video]
with two calls = with one dense mask, on every CPU backend; both single passes live in `swap_reference.py`),
reference isolation, loading an I2V checkpoint, full-size parameter counts, logical axes and input errors."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

from swapjax.config import Config, load_config
from swapjax.errors import ConfigError
from swapjax.models.dit_config import DiTConfig
from swapjax.models.swap_config import SwapConfig, validate_swap
from swapjax.errors import CheckpointError
from swapjax.convert.dit import convert_dit
from swapjax.convert.swap import check_base, convert_swap
from swapjax.models.attention import attention
from swapjax.models.dit import abstract_dit, dit_apply, param_count
from swapjax.models.swap import SwapDiT, SwapInputs, abstract_swap
from swapjax.parallel import LOGICAL_AXIS_RULES
from swap_reference import one_way_attention, one_way_mask, single_pass_tokens
from swap_fixtures import (ALL_ON, CONFIGS, DIT, SWAP, TINY, dense_single_pass, inputs, only, prefix_cache,
                           random_state, single_pass, video_step)
from helpers import rel_err
from wan_dit_torch import build_reference, run_reference, save_reference

BACKENDS = ["xla", "splash"]  # the backends that run on CPU (splash in interpret mode)


def _reference_attention(q, k, v, mask):
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    logits = np.einsum("bqnh,bknh->bnqk", q, k) / np.sqrt(q.shape[-1])
    w = np.exp(np.where(mask, logits, -np.inf) - logits.max(-1, keepdims=True))
    return np.einsum("bnqk,bknh->bqnh", w / w.sum(-1, keepdims=True), v)


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_call_attention_equals_dense_masked_attention(backend):
    """Prefix of 7 queries/keys, 20 more queries, 2 extra keys at the end that only the non-prefix rows read."""
    ks = jax.random.split(jax.random.key(0), 3)
    q = jax.random.normal(ks[0], (2, 27, 2, 16))
    k, v = (jax.random.normal(key, (2, 29, 2, 16)) for key in ks[1:])
    mask = one_way_mask(7, 27, 29)
    split = jax.jit(lambda q, k, v: one_way_attention(q, k, v, 7, backend=backend))(q, k, v)
    dense = jax.jit(lambda q, k, v: attention(q, k, v, backend=backend, mask=mask))(q, k, v)
    assert float(np.abs(np.asarray(split) - np.asarray(dense)).max()) <= 1e-6
    np.testing.assert_allclose(split, _reference_attention(q, k, v, mask), atol=2e-6, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_model_two_call_split_dense_mask_and_cache_agree(backend):
    """All conditions on: the model's cached two-stream path and the reference single pass with two calls per layer
    and with one dense mask give the same velocity (float32, relative 1e-6)."""
    cfg = dataclasses.replace(DIT, attention=backend)
    _, state = random_state(DIT, ALL_ON)
    graphdef, _ = abstract_swap(cfg, ALL_ON)
    x = inputs(ALL_ON)
    split = single_pass(graphdef, state, x)
    dense = dense_single_pass(graphdef, state, x)
    cached = video_step(graphdef, state, prefix_cache(graphdef, state, x), x.fused, x.t)
    assert split.shape == (2, 3, 4, 4, 16)
    assert rel_err(dense, split) <= 1e-6 and rel_err(cached, split) <= 1e-6


def test_changing_video_tokens_leaves_reference_tokens_bit_identical():
    """Single pass (prefix and video in one sequence, all conditions on): the prefix tokens' final states do not move
    by a single bit when every video input changes, while the video tokens do."""
    graphdef, state = random_state(DIT, ALL_ON)
    a, b = inputs(ALL_ON, seed=1), inputs(ALL_ON, seed=2)

    @jax.jit
    def tokens(fused, t, conditions):
        model = nnx.merge(graphdef, state)
        return single_pass_tokens(model, a._replace(fused=fused, t=t, conditions=conditions))[0]

    lp = ALL_ON.num_prefix_frames * 2 * 2
    out_a = np.asarray(tokens(a.fused, a.t, a.conditions))
    out_b = np.asarray(tokens(b.fused, b.t, b.conditions))
    np.testing.assert_array_equal(out_a[:, :lp], out_b[:, :lp])
    assert np.abs(out_a[:, lp:] - out_b[:, lp:]).min() > 0


def test_swap_model_from_i2v_checkpoint_reproduces_i2v(tmp_path):
    """A tiny diffusers I2V model -> convert_swap (no reference, no anchor) on [36 I2V channels | 16 zero condition
    channels] gives the I2V output (diffusers and swapjax's WanDiT) within 1e-5; new columns start at zero."""
    i2v = dict(num_attention_heads=DIT.num_heads, attention_head_dim=DIT.head_dim, in_channels=36, out_channels=16,
               text_dim=DIT.text_dim, freq_dim=DIT.freq_dim, ffn_dim=DIT.ffn_dim, num_layers=DIT.num_layers,
               image_dim=DIT.image_dim, added_kv_proj_dim=DIT.added_kv_proj_dim)
    reference = build_reference(seed=3, **i2v)
    src = save_reference(reference, tmp_path)
    config = TINY.replace(swap=dataclasses.replace(SWAP, reference=False, anchor=False))
    cfg, state = convert_swap(src, config)
    base_cfg, base_state = convert_dit(src)

    kernel = dict(nnx.to_flat_state(state))[("patch_embed", "kernel")].get_value()
    base_kernel = dict(nnx.to_flat_state(base_state))[("patch_embed", "kernel")].get_value()
    assert kernel.shape[3] == 52
    np.testing.assert_array_equal(kernel[:, :, :, :36], base_kernel)
    assert not kernel[:, :, :, 36:].any()

    rng = np.random.default_rng(0)
    x36 = rng.standard_normal((1, 2, 4, 4, 36)).astype(np.float32)
    t = np.array([0.7], np.float32)
    context = rng.standard_normal((1, 512, DIT.text_dim)).astype(np.float32)  # diffusers splits image tokens at 512
    image = rng.standard_normal((1, 3, DIT.image_dim)).astype(np.float32)
    expected = run_reference(reference, x36, t, context, image)
    i2v_out = jax.jit(dit_apply, static_argnums=0)(abstract_dit(base_cfg)[0], base_state, x36, t, context, image)
    x52 = np.concatenate([x36, np.zeros((1, 2, 4, 4, 16), np.float32)], axis=-1)
    graphdef, _ = abstract_swap(cfg, config.swap)
    cache = prefix_cache(graphdef, state, SwapInputs(x52, t, context, image))
    out = video_step(graphdef, state, cache, x52, t)
    assert rel_err(out, expected) <= 1e-5
    assert rel_err(out, i2v_out) <= 1e-5


def test_convert_cli_widens_a_base_into_a_saved_swap_model(tmp_path, capsys):
    """`python -m swapjax.convert --swap-config` saves kind "swap" that loads back as convert_swap's state."""
    from swapjax.convert.__main__ import main
    from swapjax.convert.saved import load_converted

    i2v = dict(num_attention_heads=DIT.num_heads, attention_head_dim=DIT.head_dim, in_channels=36, out_channels=16,
               text_dim=DIT.text_dim, freq_dim=DIT.freq_dim, ffn_dim=DIT.ffn_dim, num_layers=DIT.num_layers,
               image_dim=DIT.image_dim, added_kv_proj_dim=DIT.added_kv_proj_dim)
    src = save_reference(build_reference(seed=5, **i2v), tmp_path / "i2v")
    config_file = str(CONFIGS / "swap_tiny.py")
    assert main(["--src", str(src), "--out", str(tmp_path / "swap"), "--swap-config", config_file]) == 0
    kind, (dit_cfg, swap_cfg), state = load_converted(tmp_path / "swap")
    assert kind == "swap" and dit_cfg == TINY.dit and swap_cfg == TINY.swap
    _, expected = convert_swap(src, TINY)
    got = {p: np.asarray(v.get_value()) for p, v in nnx.to_flat_state(state)}
    for path, var in nnx.to_flat_state(expected):
        np.testing.assert_array_equal(got[path], np.asarray(var.get_value()), err_msg=str(path))

    capsys.readouterr()
    vae = tmp_path / "vae"
    vae.mkdir()
    (vae / "config.json").write_text('{"_class_name": "AutoencoderKLWan"}')
    assert main(["--src", str(vae), "--out", str(tmp_path / "x"), "--swap-config", config_file]) == 2
    assert "--swap-config widens a transformer" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_base_mismatch_lists_every_field():
    base = dataclasses.replace(DIT, in_channels=36, ffn_dim=128, num_layers=3)
    with pytest.raises(CheckpointError, match=r"ffn_dim: base 128, swap 64; num_layers: base 3, swap 2"):
        check_base(base, DIT)
    with pytest.raises(CheckpointError, match="in_channels: base 60 > swap 52"):
        check_base(dataclasses.replace(DIT, in_channels=60), DIT)


def _adapter_count(cfg: DiTConfig, swap: SwapConfig) -> int:
    """Parameters of the optional modules, from the config (formulas written out independently of the code)."""
    d, (_, ph, pw) = cfg.inner_dim, cfg.patch_size
    n, given = 0, swap.conditions
    if "pose" in given:
        pose = {"channels": 16, "widths": (32, 64), "layers": (), **given.kwargs("pose")}  # PoseSettings defaults
        widths = (pose["channels"], *pose["widths"])
        n += sum(9 * a * b + b for a, b in zip(widths[:-1], widths[1:])) + ph * pw * widths[-1] * d + d
        n += len(pose["layers"] or range(cfg.num_layers)) * (2 * (d * d + d) + d)  # k, v, RMSNorm
    if "identity" in given:
        n += given.kwargs("identity").get("dim", 512) * d + d + 2 * d  # Linear + affine LayerNorm
    if "points" in given:
        points = {"point_dim": 1280, "hidden": 256, "layers": (), **given.kwargs("points")}
        e, hid = points["point_dim"], points["hidden"]
        n += len(points["layers"] or range(cfg.num_layers)) * (e * hid + hid + hid * d + d)
    return n


@pytest.mark.parametrize("name, base_file, published", [
    ("swap_wan2_1_14b.py", "wan2_1_i2v_14b.py", 16_394_878_784),
    ("swap_wan2_1_1_3b.py", "wan2_1_t2v_1_3b.py", 1_418_996_800),
])
def test_full_size_parameter_counts(name, base_file, published):
    """jax.eval_shape counts: base + widened patch embedding (+ each optional module when turned on)."""
    config, base = load_config(CONFIGS / name), load_config(CONFIGS / base_file).dit
    assert param_count(abstract_dit(base)[1]) == published
    widened = (config.dit.in_channels - base.in_channels) * np.prod(config.dit.patch_size) * config.dit.inner_dim
    assert param_count(abstract_swap(config.dit, config.swap)[1]) == published + widened
    everything = dataclasses.replace(config.swap, conditions={"pose": {}, "identity": {},
                                                              "points": {"layers": (0, 10, 20)}})
    extra = _adapter_count(config.dit, everything)
    assert param_count(abstract_swap(config.dit, everything)[1]) == published + widened + extra
    if name == "swap_wan2_1_14b.py":
        assert published + widened == 16_395_206_464  # the figure the README states


def test_every_swap_parameter_has_logical_axes():
    config = load_config(CONFIGS / "swap_wan2_1_14b.py")
    swap = dataclasses.replace(config.swap, conditions={"pose": {}, "identity": {}, "points": {"layers": (3,)}})
    vocabulary = {name for name, _ in LOGICAL_AXIS_RULES} | {None}
    stacked = ("blocks", "pose", "points")
    for path, var in nnx.to_flat_state(abstract_swap(config.dit, swap)[1]):
        axes = var.out_sharding
        assert axes is not None and len(axes) == len(var.shape) and set(axes) <= vocabulary, (path, axes)
        is_stack = path[0] == "blocks" or (path[0] in stacked and "stack" in path)
        assert (axes[0] == "layers") == is_stack, (path, axes)


@pytest.mark.parametrize("change, match", [
    (dict(in_channels=36), r"in_channels \(36\) must be 2 \* out_channels \(16\) \+ .* = 52"),
    (dict(patch_size=(2, 2, 2)), "temporal size 1"),
])
def test_swap_config_validation(change, match):
    with pytest.raises(ConfigError, match=match):
        validate_swap(dataclasses.replace(DIT, **change), SWAP)
    with pytest.raises(ConfigError, match=r"conditions\['points'\] layers \(5,\) must index layers below"):
        validate_swap(DIT, dataclasses.replace(SWAP, conditions={"points": {"layers": (5,)}}))
    with pytest.raises(ConfigError, match="pixels_per_latent / frames_per_latent"):
        Config(name="x", dit=DIT, vae=TINY.vae, swap=dataclasses.replace(SWAP, pixels_per_latent=16))
    with pytest.raises(ConfigError, match="distinct layer indices"):
        SwapConfig(conditions={"pose": {"layers": (1, 1)}})


def test_bad_inputs_name_the_input(unchecked):
    """Checked while tracing (`jax.eval_shape`), before any heavy work."""
    model = SwapDiT(DIT, ALL_ON, rngs=nnx.Rngs(0))
    x = inputs(ALL_ON)
    c = x.conditions
    trace = lambda fn, *a, **kw: jax.eval_shape(lambda: fn(*a, **kw))
    with pytest.raises(ValueError, match=r"prefix frames are missing: this SwapConfig expects P = 2"):
        trace(model, x._replace(prefix=None))
    with pytest.raises(ValueError, match=r"prefix frames have shape \(2, 1, 4, 4, 52\)"):
        trace(model, x._replace(prefix=x.prefix[:, :1]))
    with pytest.raises(ValueError, match="pose condition latent has shape"):
        trace(model, only(x, "pose", pose=c["pose"]._replace(latent=c["pose"].latent[..., :3])))
    with pytest.raises(ValueError, match="identity embedding has shape"):
        trace(model, only(x, "identity", identity=c["identity"]._replace(embedding=c["identity"].embedding[:, :3])))
    small = SwapInputs(x.fused[:1], x.t[:1], x.context[:1], x.image_context[:1], prefix=x.prefix[:1])
    with pytest.raises(ValueError, match="prefix cache K/V have shape"):
        trace(lambda: model.video_forward(model.prefix_cache(small), x.fused, x.t))
    plain = SwapDiT(DIT, SWAP, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"a 'pose' condition was given, but SwapConfig.conditions \[\] does not"):
        trace(plain, only(x, "pose"))
    with pytest.raises(ValueError, match="turn it on with swap.conditions.points"):
        trace(plain, only(x, "points"))
    with pytest.raises(ValueError, match="for a condition 'posse', but no condition of that name is registered"):
        trace(model, x._replace(conditions={"posse": c["pose"]}))
    with pytest.raises(ValueError, match=r"the 'pose' condition takes PoseInputs\(latent, scale=None\), got ndarray"):
        trace(model, x._replace(conditions={"pose": c["pose"].latent}))


def test_readme_swap_snippet_runs(tmp_path, monkeypatch):
    """The README's swap snippet, as written, on a tiny I2V export (only the config path points at swap_tiny)."""
    import re

    readme = (CONFIGS.parent / "README.md").read_text()
    snippet = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "convert_swap" in b]
    assert len(snippet) == 1 and "configs/swap_wan2_1_14b.py" in snippet[0]
    i2v = dict(num_attention_heads=DIT.num_heads, attention_head_dim=DIT.head_dim, in_channels=36, out_channels=16,
               text_dim=DIT.text_dim, freq_dim=DIT.freq_dim, ffn_dim=DIT.ffn_dim, num_layers=DIT.num_layers,
               image_dim=DIT.image_dim, added_kv_proj_dim=DIT.added_kv_proj_dim)
    save_reference(build_reference(seed=4, **i2v), tmp_path / "Wan2.1-I2V-14B-480P-Diffusers" / "transformer")
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    latent = lambda f: rng.standard_normal((1, f, 4, 4, 16)).astype(np.float32)
    scope = dict(z_ref=latent(1), z_anchor=latent(1), z_t=latent(3), agnostic_latent=latent(3),
                 condition_latent=latent(3), mask=(rng.uniform(size=(1, 9, 32, 32)) < 0.3).astype(np.float32),
                 text=rng.standard_normal((1, 7, DIT.text_dim)).astype(np.float32),
                 clip_tokens=rng.standard_normal((1, 5, DIT.image_dim)).astype(np.float32),
                 t=np.array([0.6], np.float32))
    code = snippet[0].replace("configs/swap_wan2_1_14b.py", str(CONFIGS / "swap_tiny.py"))
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["velocity"].shape == (1, 3, 4, 4, 16)
    assert float(np.abs(np.asarray(scope["velocity"])).max()) > 0  # the converted weights are in use


def test_training_gradients_reach_prefix_and_adapters_with_or_without_remat():
    """The training forward (prefix stream -> K/V -> video stream): the loss depends on the prefix frames and on
    every condition module's parameters (per-layer slots inside the scan), and full rematerialisation gives the
    same gradients."""
    from swapjax.models.swap import swap_apply

    _, state = random_state(DIT, ALL_ON)
    x = inputs(ALL_ON)
    grads = {}
    for policy in ("none", "full"):
        graphdef, _ = abstract_swap(dataclasses.replace(DIT, remat_policy=policy), ALL_ON)

        def loss(state, prefix):
            v = swap_apply(graphdef, state, x._replace(prefix=prefix))
            return jax.numpy.mean(jax.numpy.square(v))

        grads[policy] = jax.jit(jax.grad(loss, argnums=(0, 1)))(state, x.prefix)
    for a, b in zip(jax.tree.leaves(grads["none"]), jax.tree.leaves(grads["full"])):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
    g_state, g_prefix = grads["none"]
    assert float(np.abs(g_prefix).max()) > 0
    flat = dict(nnx.to_flat_state(g_state))
    for path in [("pose", "guider", "patch", "kernel"), ("pose", "proj", "stack", "k", "kernel"),
                 ("identity", "proj", "kernel"), ("points", "mlps", "stack", "fc1", "kernel")]:
        assert float(np.abs(flat[path].get_value()).max()) > 0, path
