"""swapjax.flow: schedules and Euler/UniPC steps against diffusers' schedulers (same velocities, every
intermediate sample), one trace per sampling run, training-time sampling, guidance and config errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

from swapjax import flow
from swapjax.errors import ConfigError

SHIFTS = (1.0, 3.0, 5.0)
STEPS = (1, 2, 5, 20, 50)
SHAPE = (2, 3, 4, 5)  # a tiny latent [B, F, H, C]

_unipc_step = jax.jit(flow.unipc_step)
_euler_step = jax.jit(functools.partial(flow.solver_step, "euler"))


def _diffusers_scheduler(solver: str, num_steps: int, shift: float):
    """The scheduler as Wan's diffusers pipelines configure and prepare it."""
    if solver == "euler":
        sched = FlowMatchEulerDiscreteScheduler(shift=shift)
    else:
        sched = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift,
                                        solver_order=2, solver_type="bh2", lower_order_final=True,
                                        final_sigmas_type="zero")
    sched.set_timesteps(num_steps)
    sched.set_begin_index(0)
    return sched


def _inputs(num_steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(SHAPE).astype(np.float32)
    vs = rng.standard_normal((num_steps, *SHAPE)).astype(np.float32)
    return x, vs


def _diffusers_run(solver, num_steps, shift, x, vs, dtype):
    """Every sample diffusers' step returns, `[N, *SHAPE]` float64; `dtype=torch.float64` also runs the
    scheduler's own arithmetic (its sigmas) in float64."""
    sched = _diffusers_scheduler(solver, num_steps, shift)
    if dtype == torch.float64:
        sched.sigmas = sched.sigmas.double()
    sample, out = torch.from_numpy(x).to(dtype), []
    for i, t in enumerate(sched.timesteps):
        sample = sched.step(torch.from_numpy(vs[i]).to(dtype), t, sample, return_dict=False)[0]
        out.append(sample.numpy().astype(np.float64))
    return np.stack(out)


def _flow_run(step, state, x, vs, sigmas):
    xs = []
    for i in range(vs.shape[0]):
        x, state = step(state, x, jnp.asarray(vs[i], x.dtype), i, sigmas)
        xs.append(np.asarray(x, np.float64))
    return np.stack(xs)


@pytest.mark.parametrize("solver", flow.SOLVERS)
@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("num_steps", STEPS)
def test_sigmas_and_timesteps_equal_diffusers(solver, shift, num_steps):
    sched = _diffusers_scheduler(solver, num_steps, shift)
    sig = flow.sigmas(num_steps, shift, solver)
    assert sig.dtype == np.float32 and sig.shape == (num_steps + 1,) and sig[-1] == 0
    np.testing.assert_array_equal(sig, sched.sigmas.numpy())
    ts = flow.timesteps(num_steps, shift, solver)
    assert ts.dtype == np.float32 and ts.shape == (num_steps,)
    np.testing.assert_array_equal(ts, sched.timesteps.numpy().astype(np.float32))
    sig_cfg, times = flow.schedule(flow.SamplerConfig(solver=solver, num_steps=num_steps, shift=shift))
    np.testing.assert_array_equal(sig_cfg, sig)
    np.testing.assert_array_equal(times, ts / np.float32(1000))


@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("num_steps", STEPS)
def test_euler_run_equals_diffusers(shift, num_steps):
    x, vs = _inputs(num_steps)
    ref = _diffusers_run("euler", num_steps, shift, x, vs, torch.float32)
    got = _flow_run(_euler_step, (), jnp.asarray(x), vs, jnp.asarray(flow.sigmas(num_steps, shift, "euler")))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("num_steps", STEPS)
def test_unipc_run_equals_diffusers(shift, num_steps):
    """UniPC over a whole schedule: float64 JAX equals diffusers run in float64 to rounding (the same algorithm,
    orders and corrector included); float32 JAX stays within 1e-6 of that float64 reference (relative to the
    sample scale), closer than diffusers' own float32 run is."""
    x, vs = _inputs(num_steps, seed=num_steps)
    sig = flow.sigmas(num_steps, shift, "unipc")
    ref64 = _diffusers_run("unipc", num_steps, shift, x, vs, torch.float64)
    with jax.enable_x64(True):
        x64 = jnp.asarray(x, jnp.float64)
        got64 = _flow_run(_unipc_step, flow.unipc_init(x64), x64, vs, jnp.asarray(sig))
    np.testing.assert_allclose(got64, ref64, rtol=0, atol=1e-12)

    got32 = _flow_run(_unipc_step, flow.unipc_init(jnp.asarray(x)), jnp.asarray(x), vs, jnp.asarray(sig))
    scale = max(1.0, float(np.abs(ref64).max()))
    assert np.abs(got32 - ref64).max() <= 1e-6 * scale
    ref32 = _diffusers_run("unipc", num_steps, shift, x, vs, torch.float32)
    assert np.abs(got32 - ref64).max() <= max(np.abs(ref32 - ref64).max(), 1e-6 * scale)


def _fake_model(x, t, cond):
    """A stand-in for the DiT: a smooth function of sample, time and conditioning, `[B, F, H, C]`."""
    return jnp.tanh(x * (1.0 + t) + cond) - 0.5 * x


@pytest.mark.parametrize("solver", flow.SOLVERS)
def test_one_trace_per_sampling_run(solver):
    """One jitted guided step serves every step of a run and a second run with another guidance scale."""
    traces = []

    def guided_step(state, x, step_index, sigmas, times, scale, cond):
        traces.append(1)  # runs once per trace
        t = times[step_index]
        v = flow.cfg_velocity(_fake_model(x, t, cond), _fake_model(x, t, 0.0), scale)
        return flow.solver_step(solver, state, x, v, step_index, sigmas)

    step = jax.jit(guided_step)
    sig, times = flow.schedule(flow.SamplerConfig(solver=solver, num_steps=6, shift=3.0))
    sig, times = jnp.asarray(sig), jnp.asarray(times)
    x0 = jax.random.normal(jax.random.key(0), SHAPE)
    cond = jnp.full(SHAPE, 0.3)
    finals = []
    for scale in (3.0, 7.5):
        x, state = x0, flow.init_state(solver, x0)
        for i in range(6):
            x, state = step(state, x, i, sig, times, jnp.float32(scale), cond)
        finals.append(x)
    assert len(traces) == 1
    assert not np.allclose(finals[0], finals[1])  # the scale is really used


def test_scan_equals_python_loop():
    """The UniPC step under `lax.scan` (traced step index) gives the Python loop's samples."""
    num_steps = 7
    x, vs = _inputs(num_steps, seed=3)
    sig = jnp.asarray(flow.sigmas(num_steps, 5.0, "unipc"))
    loop = _flow_run(_unipc_step, flow.unipc_init(jnp.asarray(x)), jnp.asarray(x), vs, sig)

    def body(carry, inputs):
        x, state = carry
        i, v = inputs
        x, state = flow.unipc_step(state, x, v, i, sig)
        return (x, state), x

    _, scanned = jax.jit(lambda x0: jax.lax.scan(body, (x0, flow.unipc_init(x0)),
                                                  (jnp.arange(num_steps), jnp.asarray(vs))))(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(scanned), loop, rtol=0, atol=1e-6)


def test_unipc_keeps_sample_dtype():
    x = jnp.ones(SHAPE, jnp.bfloat16)
    sig = jnp.asarray(flow.sigmas(3, 3.0, "unipc"))
    state = flow.unipc_init(x)
    out, state = _unipc_step(state, x, x, 0, sig)
    assert out.dtype == jnp.bfloat16 and state.x0_prev.dtype == jnp.float32
    assert flow.euler_step(x, x, 0.5, 0.25).dtype == jnp.bfloat16


def test_shift_sigma_hand_values():
    np.testing.assert_allclose(flow.shift_sigma(np.array([0.0, 0.25, 0.5, 1.0]), 3.0), [0.0, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(flow.shift_sigma(np.array([0.2, 0.7]), 1.0), [0.2, 0.7])
    assert flow.shift_sigma(0.5, 5.0) == pytest.approx(5 / 6)
    # shift 1/s undoes shift s
    u = np.linspace(0.0, 1.0, 11)
    np.testing.assert_allclose(flow.shift_sigma(flow.shift_sigma(u, 5.0), 0.2), u, atol=1e-12)


@pytest.mark.parametrize("distribution", flow.TRAIN_DISTRIBUTIONS)
def test_sample_train_t_range_and_determinism(distribution):
    key = jax.random.key(7)
    t = flow.sample_train_t(key, 4096, shift=3.0, distribution=distribution)
    assert t.shape == (4096,) and t.dtype == jnp.float32
    assert float(t.min()) > 0.0 and float(t.max()) < 1.0
    np.testing.assert_array_equal(t, flow.sample_train_t(key, 4096, shift=3.0, distribution=distribution))
    other = flow.sample_train_t(jax.random.key(8), 4096, shift=3.0, distribution=distribution)
    assert not np.array_equal(t, other)
    # extreme logit-normal draws saturate the sigmoid and still stay inside (0, 1)
    t = flow.sample_train_t(key, 256, shift=1.0, distribution="logit_normal", std=60.0)
    assert float(t.min()) > 0.0 and float(t.max()) < 1.0


def test_sample_train_t_follows_the_shifted_distribution():
    """Uniform u shifted by s: P(t <= τ) = shift_sigma(τ, 1/s); logit-normal: P(t <= τ) = Φ((logit(τ) − m)/std)."""
    n = 20000
    tau = np.linspace(0.05, 0.95, 19)
    t = np.sort(np.asarray(flow.sample_train_t(jax.random.key(1), n, shift=3.0, distribution="uniform")))
    ecdf = np.searchsorted(t, tau) / n
    assert np.abs(ecdf - flow.shift_sigma(tau, 1 / 3)).max() < 0.02
    t = np.sort(np.asarray(flow.sample_train_t(jax.random.key(2), n, shift=1.0, distribution="logit_normal",
                                               mean=0.5, std=0.8)))
    ecdf = np.searchsorted(t, tau) / n
    z = (np.log(tau / (1 - tau)) - 0.5) / 0.8
    cdf = np.asarray(jax.scipy.stats.norm.cdf(z))
    assert np.abs(ecdf - cdf).max() < 0.02


def test_sample_train_t_errors():
    key = jax.random.key(0)
    with pytest.raises(ConfigError, match=r"distribution \('beta'\) must be one of"):
        flow.sample_train_t(key, 2, distribution="beta")
    with pytest.raises(ConfigError, match=r"shift \(0.0\) must be a finite number > 0"):
        flow.sample_train_t(key, 2, shift=0.0)
    with pytest.raises(ConfigError, match=r"std \(-1.0\) > 0"):
        flow.sample_train_t(key, 2, distribution="logit_normal", std=-1.0)
    with pytest.raises(ConfigError, match=r"batch \(0\) must be an int >= 1"):
        flow.sample_train_t(key, 0)


def test_cfg_velocity_hand_values():
    v_cond, v_uncond = jnp.array([1.0, 2.0, -1.0]), jnp.array([0.0, 1.0, 1.0])
    np.testing.assert_allclose(flow.cfg_velocity(v_cond, v_uncond, 3.0), [3.0, 4.0, -5.0])
    np.testing.assert_allclose(flow.cfg_velocity(v_cond, v_uncond, 1.0), v_cond)
    np.testing.assert_allclose(flow.cfg_velocity(v_cond, v_uncond, 0.0), v_uncond)
    # a traced scale
    np.testing.assert_allclose(jax.jit(flow.cfg_velocity)(v_cond, v_uncond, jnp.float32(2.0)), [2.0, 3.0, -3.0])


def test_two_branch_velocity():
    v_null, v_ref, v_full = jnp.array([1.0, 0.0]), jnp.array([2.0, 1.0]), jnp.array([4.0, 0.0])
    # 1 + 2·(2 − 1) + 3·(4 − 2) = 9;  0 + 2·1 + 3·(−1) = −1
    np.testing.assert_allclose(flow.two_branch_velocity(v_null, v_ref, v_full, 2.0, 3.0), [9.0, -1.0])
    # equal scales: ordinary guidance between the fully conditioned and the null prediction
    np.testing.assert_allclose(flow.two_branch_velocity(v_null, v_ref, v_full, 2.5, 2.5),
                               flow.cfg_velocity(v_full, v_null, 2.5))
    # text scale 1: reference guidance with the text on
    np.testing.assert_allclose(flow.two_branch_velocity(v_null, v_ref, v_full, 4.0, 1.0),
                               flow.cfg_velocity(v_ref, v_null, 4.0) + (v_full - v_ref))


def test_sampler_config_validation(unchecked):
    cfg = flow.SamplerConfig(solver="euler", num_steps=10, shift=5.0)
    assert hash(cfg) == hash(flow.SamplerConfig(solver="euler", num_steps=10, shift=5.0))
    with pytest.raises(ConfigError, match=r"SamplerConfig.solver \('ddim'\) must be one of \('euler', 'unipc'\)"):
        flow.SamplerConfig(solver="ddim")
    with pytest.raises(ConfigError, match=r"SamplerConfig.num_steps \(0\) must be an int >= 1"):
        flow.SamplerConfig(num_steps=0)
    with pytest.raises(ConfigError, match=r"SamplerConfig.num_steps \(2.5\) must be an int"):
        flow.SamplerConfig(num_steps=2.5)
    with pytest.raises(ConfigError, match=r"SamplerConfig.shift \(-1.0\) must be a finite number > 0"):
        flow.SamplerConfig(shift=-1.0)
    with pytest.raises(ConfigError, match=r"SamplerConfig.guidance_scale \(nan\) must be a finite number >= 0"):
        flow.SamplerConfig(guidance_scale=float("nan"))
    with pytest.raises(ConfigError, match=r"SamplerConfig.text_guidance_scale \(-2.0\) must be None"):
        flow.SamplerConfig(text_guidance_scale=-2.0)
    with pytest.raises(ConfigError, match=r"SamplerConfig.solver \('heun'\)"):
        flow.sigmas(4, 3.0, "heun")
    with pytest.raises(ConfigError, match=r"solver_step: solver \('heun'\)"):
        flow.solver_step("heun", (), jnp.zeros(2), jnp.zeros(2), 0, jnp.zeros(3))
