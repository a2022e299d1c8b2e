"""WanVAE unit tests that need no reference: input errors, compile counts, dtypes, latent helpers, sizes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from swapjax.models.vae_config import VAEConfig
from swapjax.models import vae as wan_vae
from swapjax.parallel import state_shardings

TINY = VAEConfig(base_dim=4, z_dim=4, dim_mult=(1, 2, 2, 2), num_res_blocks=1,
                 latents_mean=(0.5, -1.0, 0.0, 2.0), latents_std=(2.0, 0.5, 1.0, 4.0))


def random_model(cfg: VAEConfig, seed: int = 0):
    """(graphdef, state) with random numpy values: kernels N(0, 1/fan_in), biases N(0, 0.1^2), gammas
    U(0.5, 1.5). (Eager `WanVAE(cfg, rngs=...)` compiles one initializer per parameter shape: slow on CPU.)"""
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: wan_vae.WanVAE(cfg, rngs=nnx.Rngs(0))))
    rng = np.random.default_rng(seed)
    values = {}
    for path, var in nnx.to_flat_state(abstract):
        shape, dtype = var.shape, var.dtype
        if path[-1] == "kernel":
            value = rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1]))
        elif path[-1] == "gamma":
            value = rng.uniform(0.5, 1.5, size=shape)
        else:
            value = rng.normal(scale=0.1, size=shape)
        values[path] = jnp.asarray(value, dtype)
    nnx.replace_by_pure_dict(abstract, _nest(values))
    return graphdef, abstract


def _nest(flat: dict) -> dict:
    out: dict = {}
    for path, value in flat.items():
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return out


@pytest.fixture(scope="module")
def tiny():
    return random_model(TINY)


def _video(frames, h=16, w=16, seed=0):
    return jax.random.uniform(jax.random.key(seed), (1, frames, h, w, 3), minval=-1, maxval=1)


@pytest.mark.parametrize("shape, match", [
    ((1, 6, 16, 16, 3), r"6 frames: the Wan VAE needs 1 mod 4 frames \(e.g. 5\)"),
    ((1, 5, 16, 16, 4), r"expected \[B, F, H, W, 3\]"),
    ((1, 5, 20, 16, 3), r"20x16: height and width must be multiples of 8"),
    ((5, 16, 16, 3), r"expected \[B, F, H, W, 3\]"),
])
def test_bad_video_is_named(tiny, shape, match, unchecked):
    graphdef, state = tiny
    with pytest.raises(ValueError, match=match):
        wan_vae.vae_encode(graphdef, state, jnp.zeros(shape))
    with pytest.raises(ValueError, match=match):
        next(wan_vae.encode_chunks(graphdef, state, np.zeros(shape, np.float32)))


def test_bad_latents_and_chunks_are_named(tiny):
    graphdef, state = tiny
    with pytest.raises(ValueError, match=r"expected \[B, f, h, w, 4\]"):
        wan_vae.vae_decode(graphdef, state, jnp.zeros((1, 2, 2, 2, 16)))
    with pytest.raises(ValueError, match=r"chunk_frames \(6\) must be a positive multiple of 4"):
        next(wan_vae.encode_chunks(graphdef, state, np.zeros((1, 5, 16, 16, 3), np.float32), chunk_frames=6))
    with pytest.raises(ValueError, match=r"chunk_latents \(0\) must be positive"):
        next(wan_vae.decode_chunks(graphdef, state, np.zeros((1, 2, 2, 2, 4), np.float32), chunk_latents=0))


def test_chunked_steps_compile_once_per_chunk_shape(tiny):
    """Any video length reuses two compiled steps (first chunk, later chunks) for encode and for decode."""
    graphdef, state = tiny
    wan_vae.encode_step.clear_cache()
    wan_vae.decode_step.clear_cache()
    for frames in (9, 17):
        mean, _ = wan_vae.vae_encode_chunked(graphdef, state, _video(frames))
        video = wan_vae.vae_decode_chunked(graphdef, state, mean)
        assert video.shape == (1, frames, 16, 16, 3)
    assert wan_vae.encode_step._cache_size() == 2
    assert wan_vae.decode_step._cache_size() == 2


def test_causal_in_time(tiny):
    """Changing a later frame leaves the latents of earlier frames untouched (both modes)."""
    graphdef, state = tiny
    video = _video(9)
    edited = video.at[:, 6:].set(0.3)  # pixel frames 6.. belong to latent frame 2
    a, _ = wan_vae.vae_encode(graphdef, state, video)
    b, _ = wan_vae.vae_encode(graphdef, state, edited)
    np.testing.assert_array_equal(a[:, :2], b[:, :2])
    assert not np.allclose(a[:, 2], b[:, 2])
    da, db = wan_vae.vae_decode(graphdef, state, a), wan_vae.vae_decode(graphdef, state, b)
    np.testing.assert_array_equal(da[:, :5], db[:, :5])


def test_bfloat16_matches_float32(tiny):
    graphdef, state = tiny
    cfg16 = VAEConfig(**{**TINY.__dict__, "param_dtype": "bfloat16", "dtype": "bfloat16"})
    graphdef16, state16 = random_model(cfg16)  # same seed: the float32 values rounded to bfloat16
    video = _video(5)
    mean, logvar = wan_vae.vae_encode(graphdef, state, video)
    mean16, logvar16 = wan_vae.vae_encode(graphdef16, state16, video)
    assert mean16.dtype == jnp.float32 and logvar16.dtype == jnp.float32
    assert jax.tree.leaves(state16)[0].dtype == jnp.bfloat16
    out, out16 = wan_vae.vae_decode(graphdef, state, mean), wan_vae.vae_decode(graphdef16, state16, mean)
    assert out16.dtype == jnp.float32
    rms = lambda a, b: float(jnp.sqrt(jnp.mean((a - b) ** 2) / jnp.mean(b ** 2)))
    print(f"\nbf16 vs f32: mean rms {rms(mean16, mean):.1e}, decode rms {rms(out16, out):.1e}")
    # Random deep VAEs amplify bf16 rounding: diffusers in bf16 is off its own fp32 by ~1e-2 (encode) and
    # ~4e-2 (decode) relative RMS on the parity config, and so is this implementation.
    assert rms(mean16, mean) < 3e-2 and rms(out16, out) < 1e-1


def test_latent_helpers():
    z = jnp.array([[1.5, -1.0, 3.0, 2.0]])
    np.testing.assert_allclose(wan_vae.normalize_latents(z, TINY), [[0.5, 0.0, 3.0, 0.0]])
    np.testing.assert_allclose(wan_vae.denormalize_latents(wan_vae.normalize_latents(z, TINY), TINY), z)
    mean = jnp.full((2, 3, 4, 4, 4), 1.0)
    logvar = jnp.full((2, 3, 4, 4, 4), jnp.log(4.0))  # std 2
    rng = jax.random.key(1)
    sample = wan_vae.sample_latent(mean, logvar, rng)
    np.testing.assert_allclose(sample, 1.0 + 2.0 * jax.random.normal(rng, mean.shape), rtol=1e-6)
    assert not np.allclose(sample, wan_vae.sample_latent(mean, logvar, jax.random.key(2)))


def test_wan21_size_matches_the_release():
    """The default config is the released Wan2.1 VAE: 126,892,531 parameters (diffusers' AutoencoderKLWan())."""
    state = nnx.state(nnx.eval_shape(lambda: wan_vae.WanVAE(VAEConfig(), rngs=nnx.Rngs(0))))
    assert sum(x.size for x in jax.tree.leaves(state)) == 126_892_531
    shapes = jax.eval_shape(lambda s, v: wan_vae.vae_encode(nnx.graphdef(
        nnx.eval_shape(lambda: wan_vae.WanVAE(VAEConfig(), rngs=nnx.Rngs(0)))), s, v),
        state, jax.ShapeDtypeStruct((1, 81, 480, 832, 3), jnp.float32))
    assert shapes[0].shape == (1, 21, 60, 104, 16)


def test_data_parallel_encode_matches_single_device(tiny):
    """Batch sharded over 8 (fake) devices, parameters placed by the logical-axis rules: same latents."""
    graphdef, state = tiny
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]).reshape(8, 1, 1, 1), ("data", "fsdp", "tensor", "sequence"))
    placed = jax.device_put(state, state_shardings(state, mesh))
    video = jax.random.uniform(jax.random.key(3), (8, 5, 16, 16, 3), minval=-1, maxval=1)
    sharded = jax.device_put(video, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(("data", "fsdp"))))
    mean, _ = wan_vae.vae_encode(graphdef, placed, sharded)
    want, _ = wan_vae.vae_encode(graphdef, state, video)
    assert len(mean.sharding.device_set) == 8
    np.testing.assert_allclose(mean, want, rtol=1e-5, atol=1e-6)
