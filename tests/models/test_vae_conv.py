"""The VAE's 3-d convolution computed as a 2-d one (the CPU path) equals XLA's 3-d convolution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from swapjax.models.vae_blocks import _CONV_DIMS, _conv3d_as_2d


@pytest.mark.parametrize("window, strides, padding", [
    ((3, 3, 3), (1, 1, 1), ((0, 0), (1, 1), (1, 1))),  # causal conv (context already prepended)
    ((3, 1, 1), (2, 1, 1), ((0, 0), (0, 0), (0, 0))),  # temporal downsampling
    ((1, 1, 1), (1, 1, 1), ((0, 0), (0, 0), (0, 0))),  # shortcut
    ((2, 3, 3), (1, 2, 2), ((1, 0), (0, 1), (0, 1))),  # temporal padding and spatial stride
])
def test_conv3d_as_2d_matches_conv3d(window, strides, padding):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 7, 8, 10, 3)), jnp.float32)  # [N, T, H, W, C_in]
    kernel = jnp.asarray(rng.standard_normal((*window, 3, 5)), jnp.float32)
    want = jax.lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=_CONV_DIMS[5])
    got = _conv3d_as_2d(x, kernel, strides, padding)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    grad = lambda f: jax.grad(lambda x, k: jnp.sum(f(x, k) ** 2), argnums=(0, 1))(x, kernel)  # noqa: E731
    for g, w in zip(grad(lambda x, k: _conv3d_as_2d(x, k, strides, padding)),
                    grad(lambda x, k: jax.lax.conv_general_dilated(x, k, strides, padding,
                                                                   dimension_numbers=_CONV_DIMS[5]))):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)
