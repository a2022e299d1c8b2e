"""Objectives against values worked out by hand (numbers in the comments), plus the maps and cosines they read."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from swapjax.errors import ConfigError
from swapjax.loss_maps import (frame_difference, frame_identity_cosines, landmark_proximity, mear_latent_weights,
                               mear_pixel_weights, pool_to_latent)
from swapjax.losses import (LossConfig, LossInputs, coherence_chunk_onehot, coherence_weights, flow_matching_loss,
                            identity_coherence_loss, identity_loss, mear_loss, region_reweighted_loss, total_loss)
from swapjax.models.image_encoder import SmallEncoderConfig, build_image_encoder, encode_images


def latent(values, channels=1):
    """[f][h][w] nested numbers (or [f][h][w][c]) -> a batch-1 latent video [1, f, h, w, C]."""
    a = np.asarray(values, np.float32)
    return jnp.asarray(a[None] if channels > 1 else a[None, ..., None])


# --------------------------------------------------------------------------------------- flow matching
def test_flow_matching_is_the_mean_squared_velocity_error():
    v_pred = jnp.asarray([[[[[1.0, 2.0], [3.0, 4.0]]]], [[[[0.5, 0.5], [0.5, 0.5]]]]])  # [2, 1, 1, 2, 2]
    v_target = jnp.asarray([[[[[0.0, 0.0], [0.0, 0.0]]]], [[[[1.5, 1.5], [1.5, 1.5]]]]])
    # sample 0: (1 + 4 + 9 + 16) / 4 = 7.5; sample 1: every error is 1
    np.testing.assert_allclose(flow_matching_loss(v_pred, v_target), [7.5, 1.0])
    loss, metrics = total_loss(LossConfig(), LossInputs(v_pred, v_target))
    np.testing.assert_allclose([loss, metrics["loss/flow_matching"]], [4.25, 4.25])


def test_flow_matching_names_disagreeing_shapes(unchecked):
    v_pred = jnp.zeros((2, 1, 1, 2, 2))
    with pytest.raises(ValueError, match="must both be"):
        flow_matching_loss(v_pred, v_pred[:, :, :, :1])


# ------------------------------------------------------------------------------------------ pooling
def test_pool_to_latent_groups_frames_like_the_vae():
    mask = np.zeros((1, 9, 16, 24), np.float32)
    mask[0, 0, 0, 0] = 1  # latent frame 0, cell (0, 0)
    mask[0, 3, 9, 12] = 1  # pixel frame 3 -> latent frame 1 (frames 1..4), cell (1, 1)
    mask[0, 5, 15, 23] = 1  # pixel frame 5 -> latent frame 2 (frames 5..8), cell (1, 2)
    got_max = np.asarray(pool_to_latent(jnp.asarray(mask), "max"))
    want = np.zeros((1, 3, 2, 3), np.float32)
    want[0, 0, 0, 0] = want[0, 1, 1, 1] = want[0, 2, 1, 2] = 1
    np.testing.assert_array_equal(got_max, want)
    got_mean = np.asarray(pool_to_latent(jnp.asarray(mask), "mean"))
    want[0, 0, 0, 0] = 1 / 64  # one pixel of one frame's 8x8 block
    want[0, 1, 1, 1] = want[0, 2, 1, 2] = 1 / 256  # one pixel out of 4 frames x 64
    np.testing.assert_allclose(got_mean, want, rtol=1e-6)
    with pytest.raises(ValueError, match=r"F must be 1 mod 4 and H, W multiples of 8"):
        pool_to_latent(jnp.zeros((1, 4, 16, 16)))


# ------------------------------------------------------------------------------------------- region
def test_region_loss_hand_value_with_channels():
    # two positions, two channels: errors (1, 9) at position 0 and (4, 16) at position 1
    v_pred = latent([[[[1.0, 3.0], [2.0, 4.0]]]], channels=2)  # [1, 1, 1, 2, 2]
    v_target = jnp.zeros_like(v_pred)
    mask = jnp.asarray([[[[1.0, 0.0]]]])  # [1, 1, 1, 2]: subject at position 0
    # mean = 30 / 4 = 7.5; region mean = (1 + 9) / 2 = 5; λ = 2 -> 7.5 + 10 = 17.5
    np.testing.assert_allclose(region_reweighted_loss(v_pred, v_target, mask, 2.0), [17.5])


def test_region_loss_small_subject_counts_as_much_as_a_large_one():
    v_pred = latent([[[1.0, 2.0], [3.0, 4.0]]])  # errors 1, 4, 9, 16
    mask = jnp.asarray([[[[1.0, 0.0], [0.0, 1.0]]]])
    # mean 7.5 + λ·(1 + 16)/2 with λ = 1 -> 16.0; a subject covering all four: 7.5 + 7.5 = 15.0
    np.testing.assert_allclose(region_reweighted_loss(v_pred, 0 * v_pred, mask, 1.0), [16.0])
    np.testing.assert_allclose(region_reweighted_loss(v_pred, 0 * v_pred, jnp.ones_like(mask), 1.0), [15.0])


def test_region_loss_empty_mask_and_batch_one_stay_finite():
    v_pred = latent([[[1.0, 2.0], [3.0, 4.0]]])  # batch 1
    empty = jnp.zeros((1, 1, 2, 2))
    np.testing.assert_allclose(region_reweighted_loss(v_pred, 0 * v_pred, empty, 3.0), [7.5])
    cfg = LossConfig(flow_matching_weight=0.0, region_weight=1.0, region_lambda=3.0)
    grad = jax.grad(lambda v: total_loss(cfg, LossInputs(v, 0 * v, subject_mask=empty))[0])(v_pred)
    np.testing.assert_allclose(grad, 2 * v_pred / 4)  # only the whole-video mean remains


def test_region_loss_names_a_mask_of_the_wrong_rank(unchecked):
    v_pred = latent([[[1.0, 2.0], [3.0, 4.0]]])
    with pytest.raises(ValueError, match=r"subject_mask has shape \(1, 2, 2\)"):
        region_reweighted_loss(v_pred, 0 * v_pred, jnp.zeros((1, 2, 2)), 1.0)


# ---------------------------------------------------------------------------------------- coherence
# DreamID-V: Q = 1 / (cos(E(x̂0_frame), E(ref)) + δ) per decoded frame, averaged over each VAE chunk's frames to
# Q_c, loss Σ_c Q_c · mean(ℓ_c). Two latent frames = 5 pixel frames: chunk 0 = pixel frame 0, chunk 1 = 1..4.
COS = [0.9, 0.4, 0.6, 0.15, 0.9]
DELTA = 0.1


def _two_chunk_velocity():
    # latent frame 0: errors 1, 9 (mean 5); latent frame 1: errors 4, 0 (mean 2)
    return latent([[[1.0, 3.0]], [[2.0, 0.0]]])  # [1, 2, 1, 2, 1]


def _paper_coherence(cos, err_means, delta, reduce=sum):
    """The paper's formula in plain Python: per-frame Q, mean over the chunk's frames, Σ_c Q_c · mean(ℓ_c)."""
    q = [1 / (c + delta) for c in cos]
    chunks = [q[:1], q[1:5]]
    return reduce([sum(qc) / len(qc) * e for qc, e in zip(chunks, err_means)])


def test_coherence_loss_is_the_papers_formula_by_hand():
    v_pred = _two_chunk_velocity()
    # Q per frame: 1/1.0 = 1, 1/0.5 = 2, 1/0.7 = 10/7, 1/0.25 = 4, 1/1.0 = 1
    # Q_0 = 1; Q_1 = (2 + 10/7 + 4 + 1) / 4 = 59/28; loss = 1·5 + 59/28·2 = 129/14 = 9.2142857
    np.testing.assert_allclose(129 / 14, _paper_coherence(COS, [5, 2], DELTA), rtol=1e-12)
    loss = identity_coherence_loss(v_pred, 0 * v_pred, jnp.asarray([COS]), delta=DELTA)
    np.testing.assert_allclose(loss, [129 / 14], rtol=1e-6)
    # the same through total_loss with the default LossConfig options (the paper's form)
    cfg = LossConfig(flow_matching_weight=0.0, coherence_weight=1.0, coherence_delta=DELTA)
    got, metrics = total_loss(cfg, LossInputs(v_pred, 0 * v_pred, frame_cos=jnp.asarray([COS])))
    np.testing.assert_allclose([got, metrics["loss/coherence"]], [129 / 14] * 2, rtol=1e-6)
    # the weights alone, per sample: a second sample with every cosine 0.4 has Q = 2 in both chunks
    _, onehot = coherence_chunk_onehot(2, 5, 1)
    np.testing.assert_allclose(coherence_weights(jnp.asarray([COS, [0.4] * 5]), onehot, DELTA),
                               [[1.0, 59 / 28], [2.0, 2.0]], rtol=1e-6)


def test_coherence_variants_are_options_with_their_own_hand_values():
    v_pred, cos = _two_chunk_velocity(), jnp.asarray([COS])
    loss = functools.partial(identity_coherence_loss, v_pred, 0 * v_pred, cos, delta=DELTA)
    # mean over the chunks instead of the sum: 129/14 / 2
    np.testing.assert_allclose(loss(chunk_reduce="mean"), [129 / 28], rtol=1e-6)
    # chunk cosine first: chunk 1's mean cosine (0.4 + 0.6 + 0.15 + 0.9)/4 = 0.5125 -> Q_1 = 1/0.6125 = 80/49;
    # loss = 5 + 2·80/49 = 405/49
    np.testing.assert_allclose(loss(q_from="chunk_cosine"), [405 / 49], rtol=1e-6)
    # Q rescaled to mean 1: mean(1, 59/28) = 87/56 -> Q = 56/87, 118/87; loss = (5·56 + 2·118)/87 = 516/87
    np.testing.assert_allclose(loss(normalize=True), [516 / 87], rtol=1e-6)
    # a cosine below −δ: as written its Q is negative (1/(−0.5 + 0.1) = −2.5); clamped it is 1/δ = 10
    neg = jnp.asarray([[0.9, 0.4, 0.6, -0.5, 0.9]])
    # unclamped: Q_1 = (2 + 10/7 − 2.5 + 1)/4 = 27/56 -> 5 + 2·27/56 = 167/28
    np.testing.assert_allclose(identity_coherence_loss(v_pred, 0 * v_pred, neg, delta=DELTA), [167 / 28], rtol=1e-6)
    # clamped: Q_1 = (2 + 10/7 + 10 + 1)/4 = 101/28 -> 5 + 2·101/28 = 171/14
    np.testing.assert_allclose(identity_coherence_loss(v_pred, 0 * v_pred, neg, delta=DELTA, clamp_cosine=True),
                               [171 / 14], rtol=1e-6)
    # the project's earlier form is the four options together: clamp, chunk cosine, mean 1, mean over chunks
    # chunk cosines 0.9, 0.5125 -> q = 1, 80/49, mean 129/98 -> Q = 98/129, 160/129; (5·98 + 2·160)/129/2
    cfg = LossConfig(flow_matching_weight=0.0, coherence_weight=1.0, coherence_delta=DELTA,
                     coherence_clamp_cosine=True, coherence_q_from="chunk_cosine", coherence_normalize_q=True,
                     coherence_chunk_reduce="mean")
    got, _ = total_loss(cfg, LossInputs(v_pred, 0 * v_pred, frame_cos=cos))
    np.testing.assert_allclose(got, (5 * 98 + 2 * 160) / 129 / 2, rtol=1e-6)


def test_coherence_chunks_of_several_latent_frames():
    # 3 latent frames (9 pixel frames), chunks of 2 latent frames: chunk 0 = latent {0, 1} = pixel 0..4,
    # chunk 1 = latent {2} = pixel 5..8
    v_pred = latent([[[1.0]], [[3.0]], [[2.0]]])  # errors 1, 9, 4 -> chunk means 5, 4
    cos = [0.9, 0.4, 0.4, 0.4, 0.4, 0.15, 0.15, 0.15, 0.15]
    # Q_0 = (1 + 4·2)/5 = 9/5; Q_1 = 4; loss = 9/5·5 + 4·4 = 25
    got = identity_coherence_loss(v_pred, 0 * v_pred, jnp.asarray([cos]), delta=DELTA, chunk_frames=2)
    np.testing.assert_allclose(got, [25.0], rtol=1e-6)


def test_coherence_shape_errors_are_named(unchecked):
    v_pred = latent([[[1.0]], [[3.0]], [[2.0]]])  # 3 latent frames: 9 pixel frames
    with pytest.raises(ValueError, match=r"frame_cos has 8 frames for 3 latent frames: expected \(f − 1\)·T \+ 1"):
        identity_coherence_loss(v_pred, 0 * v_pred, jnp.ones((1, 8)), delta=DELTA)
    with pytest.raises(ValueError, match=r"frame_cos has shape \(2, 9\): expected \[B, F\] with B = 1"):
        identity_coherence_loss(v_pred, 0 * v_pred, jnp.ones((2, 9)), delta=DELTA)


def test_coherence_weights_pass_no_gradient():
    v_pred = _two_chunk_velocity()
    f = lambda v, c: identity_coherence_loss(v, 0 * v, c, delta=DELTA)[0]
    g_v, g_cos = jax.grad(f, argnums=(0, 1))(v_pred, jnp.asarray([COS]))
    np.testing.assert_array_equal(g_cos, np.zeros((1, 5)))
    # d/dv of Q_c·mean(ℓ_c) = Q_c·2v/|c| (|c| = 2 positions): latent frame 0: 1·2·1/2 = 1, 1·2·3/2 = 3;
    # latent frame 1: 59/28·2·2/2 = 59/14, and 0
    np.testing.assert_allclose(g_v.ravel(), [1.0, 3.0, 59 / 14, 0.0], rtol=1e-6)


# --------------------------------------------------------------------------------------------- MEAR
def test_frame_difference_hand_value():
    video = np.zeros((1, 3, 1, 2, 3), np.float32)
    video[0, 1, 0, 0] = (0.3, 0.4, 0.0)  # frame 0 -> 1: pixel 0 moves by 0.5
    video[0, 2, 0, 1] = (0.0, 0.0, 1.0)  # frame 1 -> 2: pixel 0 back (0.5), pixel 1 moves by 1.0
    # steps: t1 = [0.5, 0], t2 = [0.5, 1.0]; frame 0 copies t1; divided by the clip maximum 1.0
    np.testing.assert_allclose(frame_difference(jnp.asarray(video))[0, :, 0], [[0.5, 0], [0.5, 0], [0.5, 1.0]],
                               rtol=1e-6)
    np.testing.assert_array_equal(frame_difference(jnp.zeros((1, 3, 1, 2, 3))), np.zeros((1, 3, 1, 2)))


def test_landmark_proximity_matches_a_direct_computation():
    lm = np.array([[[[1.0, 0.0], [0.0, 1.0], [2.0, 1.5]]]], np.float32)  # [1, 1, 3, 2] (x, y)
    valid = np.array([[[1.0, 0.0, 1.0]]], np.float32)  # the second landmark is missing
    sigma = 1.5
    want = np.zeros((2, 3))
    for i in range(2):  # rows (y)
        for j in range(3):  # columns (x)
            want[i, j] = max(math.exp(-((j - x) ** 2 + (i - y) ** 2) / (2 * sigma ** 2))
                             for (x, y), ok in zip(lm[0, 0], valid[0, 0]) if ok)
    got = landmark_proximity(jnp.asarray(lm), 2, 3, sigma, jnp.asarray(valid))
    np.testing.assert_allclose(got[0, 0], want, rtol=1e-6)


def test_mear_weights_and_loss_hand_value():
    video = np.zeros((1, 1, 1, 2, 3), np.float32)  # one frame: D = 0
    lm = np.array([[[[0.0, 0.0]]]], np.float32)  # on pixel 0: P = 1 there, exp(-1/2) at pixel 1
    w = mear_pixel_weights(jnp.asarray(video), jnp.asarray(lm), alpha=5.0, beta=2.0, sigma=1.0)
    np.testing.assert_allclose(w[0, 0, 0], [3.0, 1 + 2 * math.exp(-0.5)], rtol=1e-6)
    # errors 1, 9 with weights 1, 3: mean(w·ℓ) / mean(w) = ((1 + 27)/2) / 2 = 7
    v_pred = latent([[[1.0, 3.0]]])
    np.testing.assert_allclose(mear_loss(v_pred, 0 * v_pred, jnp.asarray([[[[1.0, 3.0]]]])), [7.0])
    # pooled weights: mean over the frame groups and 8x8 blocks of the pixel weights
    vid = jax.random.uniform(jax.random.key(0), (1, 5, 16, 16, 3))
    lms = jnp.full((1, 5, 2, 2), 4.0)
    px = mear_pixel_weights(vid, lms, alpha=1.0, beta=1.0, sigma=3.0)
    lat = mear_latent_weights(vid, lms, alpha=1.0, beta=1.0, sigma=3.0)
    np.testing.assert_allclose(lat[0, 1, 0, 1], np.mean(np.asarray(px)[0, 1:5, 0:8, 8:16]), rtol=1e-5)
    assert lat.shape == (1, 2, 2, 2) and float(lat.min()) >= 1.0


# ----------------------------------------------------------------------------------------- identity
def test_identity_loss_hand_value():
    x0_pred = np.zeros((1, 1, 1, 2, 3), np.float32)
    x0_pred[0, 0, 0, 0] = (1.0, 2.0, 2.0)  # squared error 9 inside the head
    x0_pred[0, 0, 0, 1] = (5.0, 5.0, 5.0)  # outside the head: ignored
    head = jnp.asarray([[[[1.0, 0.0]]]])
    cos = jnp.asarray([[0.8, 0.6]])
    # 9 / 6 elements = 1.5, plus 1 − 0.7 = 0.3
    np.testing.assert_allclose(identity_loss(jnp.asarray(x0_pred), jnp.zeros_like(x0_pred), head, cos), [1.8],
                               rtol=1e-6)


def test_identity_cosines_per_frame():
    colours = [(1, 0, 0), (0, 1, 0), (1, 1, 0), (-1, 0, 0), (3, 4, 0)]  # 5 pixel frames = 2 latent frames
    frames = jnp.asarray(np.broadcast_to(np.array(colours, np.float32)[None, :, None, None], (1, 5, 8, 8, 3)))
    reference = jnp.zeros((1, 8, 8, 3)).at[..., 0].set(1.0)
    encode = lambda images: jnp.mean(images, axis=(1, 2))  # [N, H, W, 3] -> mean colour [N, 3]
    want = [1.0, 0.0, 1 / math.sqrt(2), -1.0, 0.6]
    np.testing.assert_allclose(frame_identity_cosines(encode, frames, reference), [want], atol=1e-6)


def test_identity_term_trains_through_the_small_encoder():
    enc = build_image_encoder("small", SmallEncoderConfig(widths=(4, 8), embed_dim=8), rngs=nnx.Rngs(0))
    frames = jax.random.uniform(jax.random.key(1), (1, 5, 16, 16, 3), minval=-1, maxval=1)
    reference = jax.random.uniform(jax.random.key(2), (1, 16, 16, 3), minval=-1, maxval=1)
    cfg = LossConfig(flow_matching_weight=0.0, identity_weight=1.0)
    v = jnp.zeros((1, 2, 2, 2, 4))

    @jax.jit
    def loss_and_grad(enc, x0):
        def f(x0):
            cos = frame_identity_cosines(functools.partial(encode_images, enc), x0, reference)
            inputs = LossInputs(v, v, x0_pred_px=x0, x0_px=frames, head_mask=jnp.ones(frames.shape[:-1]),
                                identity_cos=cos)
            return total_loss(cfg, inputs)[0]
        return jax.value_and_grad(f)(x0)

    loss, grad = loss_and_grad(enc, frames + 0.1)
    assert np.isfinite(loss) and 0 < float(loss) < 3
    assert np.all(np.isfinite(grad)) and float(jnp.abs(grad).max()) > 0


# -------------------------------------------------------------------------------------- composition
def test_total_loss_is_the_weighted_sum_of_the_terms():
    key = jax.random.split(jax.random.key(3), 6)
    v_pred, v_target = jax.random.normal(key[0], (2, 3, 2, 2, 4)), jax.random.normal(key[1], (2, 3, 2, 2, 4))
    mask = (jax.random.uniform(key[2], (2, 3, 2, 2)) > 0.5).astype(jnp.float32)
    cos = jax.random.uniform(key[3], (2, 9))  # 3 latent frames = 9 decoded frames
    w = 1 + jax.random.uniform(key[4], (2, 3, 2, 2))
    x0p, x0 = jax.random.normal(key[5], (2, 1, 4, 4, 3)), jnp.zeros((2, 1, 4, 4, 3))
    head, idc = jnp.ones((2, 1, 4, 4)), jnp.asarray([[0.5], [0.2]])
    cfg = LossConfig(flow_matching_weight=0.5, region_weight=1.0, region_lambda=2.0, coherence_weight=2.0,
                     coherence_delta=0.2, mear_weight=1.5, identity_weight=0.1)
    inputs = LossInputs(v_pred, v_target, mask, cos, w, x0p, x0, head, idc)
    terms = {"flow_matching": flow_matching_loss(v_pred, v_target),
             "region": region_reweighted_loss(v_pred, v_target, mask, 2.0),
             "coherence": identity_coherence_loss(v_pred, v_target, cos, delta=0.2, chunk_frames=1),
             "mear": mear_loss(v_pred, v_target, w), "identity": identity_loss(x0p, x0, head, idc)}
    weights = {"flow_matching": 0.5, "region": 1.0, "coherence": 2.0, "mear": 1.5, "identity": 0.1}
    want = np.mean(sum(weights[k] * np.asarray(terms[k]) for k in terms))
    loss, metrics = jax.jit(functools.partial(total_loss, cfg))(inputs)
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    assert set(metrics) == {"loss"} | {f"loss/{k}" for k in terms}
    for k in terms:
        np.testing.assert_allclose(metrics[f"loss/{k}"], np.mean(terms[k]), rtol=1e-6)


def test_enabled_term_without_its_input_is_explained():
    v = jnp.zeros((1, 1, 2, 2, 4))
    with pytest.raises(ValueError, match=r"'mear' is on \(LossConfig.mear_weight > 0\) but LossInputs.mear_weights "
                                         r"is None"):
        total_loss(LossConfig(mear_weight=1.0), LossInputs(v, v))


@pytest.mark.parametrize("changes, message", [
    (dict(region_weight=-1.0), r"LossConfig.region_weight = -1.0: must be a finite number >= 0"),
    (dict(flow_matching_weight=0.0), r"every term weight is 0"),
    (dict(coherence_delta=0.0), r"LossConfig.coherence_delta = 0.0: must be a finite number > 0"),
    (dict(coherence_chunk_frames=0), r"LossConfig.coherence_chunk_frames = 0: must be an integer >= 1"),
    (dict(coherence_q_from="chunk"), r"LossConfig.coherence_q_from = 'chunk': allowed values are \['frames', "),
    (dict(coherence_chunk_reduce="max"), r"LossConfig.coherence_chunk_reduce = 'max': allowed values are \['sum', "),
    (dict(mear_sigma=float("nan")), r"LossConfig.mear_sigma = nan"),
    (dict(encoder="clip"), r"LossConfig.encoder = 'clip': allowed values are \['iresnet', 'small'\]"),
])
def test_loss_config_errors_name_field_value_and_allowed(changes, message):
    with pytest.raises(ConfigError, match=message):
        LossConfig(**changes)
