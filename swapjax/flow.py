"""Flow matching, stateless: training-time sampling, sampler schedules, Euler and UniPC steps, guidance.

Convention (the diffusers Wan one): `x_t = (1 − σ)·x0 + σ·ε`, the model predicts `v = ε − x0`, so
`x0 = x_t − σ·v`; σ in [0, 1], 0 = clean. The model's timestep is σ·1000 (see `timesteps`).

Everything here is a pure function. A sampler config is a frozen, hashable `SamplerConfig` (static under
`jax.jit`); the schedule is a float32 array passed as an argument; the step index and the guidance scales are
traced values, so one compiled step serves every step of every run of the same shape and every guidance value.
UniPC's history (previous x0 predictions, the last sample) is a small `UniPCState` pytree threaded through
the loop (a Python loop over one jitted step, or `lax.scan`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from swapjax.errors import require

NUM_TRAIN_TIMESTEPS = 1000  # diffusers' Wan schedulers: timestep = σ · 1000
SOLVERS = ("euler", "unipc")
TRAIN_DISTRIBUTIONS = ("uniform", "logit_normal")
_TRAIN_T_EPS = 1e-6  # training times are clipped to [eps, 1 − eps], strictly inside (0, 1)


def _compute_dtype(x: jax.Array):
    """Sampler arithmetic runs in float32, or float64 when the sample is float64 (x64 parity checks)."""
    return jnp.promote_types(x.dtype, jnp.float32)


# ----------------------------------------------------------------------------------------------------------
# Shift and training-time sampling


def shift_sigma(sigma, shift):
    """Timestep shift `σ' = s·σ / (1 + (s − 1)·σ)` (elementwise; numpy, jax or Python scalars, any shape).

    `s > 1` moves mass towards σ = 1 (noisier); `s = 1` is the identity; 0 and 1 are fixed points.
    """
    return shift * sigma / (1 + (shift - 1) * sigma)


def sample_train_t(key: jax.Array, batch: int, *, shift: float = 1.0, distribution: str = "uniform",
                   mean: float = 0.0, std: float = 1.0) -> Float[Array, "b"]:
    """Training times `t` `[B]` float32 in (0, 1): `u` uniform or logit-normal, then `t = s·u/(1 + (s − 1)·u)`.

    `logit_normal`: `u = sigmoid(mean + std·n)`, `n ~ N(0, 1)`. Times are clipped to `[1e-6, 1 − 1e-6]` so that
    neither end (where float32 rounding of the shift or the sigmoid could land) is ever returned.
    """
    require(distribution in TRAIN_DISTRIBUTIONS,
            f"sample_train_t: distribution ({distribution!r}) must be one of {TRAIN_DISTRIBUTIONS}")
    require(isinstance(batch, int) and batch >= 1, f"sample_train_t: batch ({batch!r}) must be an int >= 1")
    require(math.isfinite(shift) and shift > 0,
            f"sample_train_t: shift ({shift}) must be a finite number > 0 (1 = no shift)")
    if distribution == "uniform":
        u = jax.random.uniform(key, (batch,), jnp.float32)  # [B] in [0, 1)
    else:
        require(math.isfinite(std) and std > 0 and math.isfinite(mean),
                f"sample_train_t: logit_normal needs a finite mean ({mean}) and std ({std}) > 0")
        u = jax.nn.sigmoid(mean + std * jax.random.normal(key, (batch,), jnp.float32))  # [B]
    t = shift_sigma(u, jnp.float32(shift))
    return jnp.clip(t, _TRAIN_T_EPS, 1.0 - _TRAIN_T_EPS).astype(jnp.float32)


# ----------------------------------------------------------------------------------------------------------
# Sampler config and schedules


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """How to sample: solver, number of steps, shift, default guidance scales (static, hashable).

    The guidance scales here are only defaults: the step takes the scale as a traced argument, so changing it
    never recompiles. `text_guidance_scale=None` means one-branch guidance on the reference (two model passes
    per step); a number turns on two-branch guidance on reference and text (three passes; see
    `two_branch_velocity`).
    """

    solver: str = "unipc"  # "euler" (diffusers FlowMatchEulerDiscreteScheduler) | "unipc" (Wan's default)
    num_steps: int = 50
    shift: float = 3.0  # Wan: 3.0 at 480p, 5.0 at 720p
    guidance_scale: float = 5.0  # reference guidance (1 = none)
    text_guidance_scale: float | None = None

    def __post_init__(self):
        require(self.solver in SOLVERS, f"SamplerConfig.solver ({self.solver!r}) must be one of {SOLVERS}")
        require(isinstance(self.num_steps, int) and not isinstance(self.num_steps, bool) and self.num_steps >= 1,
                f"SamplerConfig.num_steps ({self.num_steps!r}) must be an int >= 1")
        require(isinstance(self.shift, (int, float)) and math.isfinite(self.shift) and self.shift > 0,
                f"SamplerConfig.shift ({self.shift!r}) must be a finite number > 0 (1 = no shift; Wan: 3 or 5)")
        require(isinstance(self.guidance_scale, (int, float)) and math.isfinite(self.guidance_scale)
                and self.guidance_scale >= 0,
                f"SamplerConfig.guidance_scale ({self.guidance_scale!r}) must be a finite number >= 0 (1 = none)")
        require(self.text_guidance_scale is None
                or (isinstance(self.text_guidance_scale, (int, float)) and math.isfinite(self.text_guidance_scale)
                    and self.text_guidance_scale >= 0),
                f"SamplerConfig.text_guidance_scale ({self.text_guidance_scale!r}) must be None (reference guidance "
                "only) or a finite number >= 0")


def _euler_sigmas(num_steps: int, shift: float) -> np.ndarray:
    # diffusers' FlowMatchEulerDiscreteScheduler: its constructor shifts a 1000-point float32 grid, and
    # set_timesteps spaces num_steps points between the shifted ends and shifts them a second time.
    grid_low = np.float32(1) / np.float32(NUM_TRAIN_TIMESTEPS)  # the constructor grid's lowest sigma
    lowest = float(shift_sigma(grid_low, np.float32(shift)))  # shifted in float32, as there
    t = np.linspace(1.0 * NUM_TRAIN_TIMESTEPS, lowest * NUM_TRAIN_TIMESTEPS, num_steps)  # float64
    return shift_sigma(t / NUM_TRAIN_TIMESTEPS, shift).astype(np.float32)  # [N]


def _unipc_sigmas(num_steps: int, shift: float) -> np.ndarray:
    # diffusers' UniPCMultistepScheduler with use_flow_sigmas: N points of linspace(1, 1/1000, N + 1), shifted
    # in float64, the first moved off 1 by 1e-6 (so log(σ/(1 − σ)) stays finite).
    s = np.linspace(1, 1 / NUM_TRAIN_TIMESTEPS, num_steps + 1)[:-1]
    s = shift_sigma(s, shift)
    if np.fabs(s[0] - 1) < 1e-6:
        s[0] -= 1e-6
    return s  # [N] float64


def sigmas(num_steps: int, shift: float, solver: str) -> np.ndarray:
    """The sampler's noise levels, numpy float32 `[num_steps + 1]`, decreasing, ending at 0 (diffusers' values).

    Sample `i` sits at `sigmas[i]`; step `i` moves it to `sigmas[i + 1]`.
    """
    SamplerConfig(solver=solver, num_steps=num_steps, shift=shift)  # validates the three
    inner = _euler_sigmas(num_steps, shift) if solver == "euler" else _unipc_sigmas(num_steps, shift)
    return np.concatenate([inner, [0.0]]).astype(np.float32)


def timesteps(num_steps: int, shift: float, solver: str) -> np.ndarray:
    """The model's timestep at each step, numpy float32 `[num_steps]`, exactly diffusers' values.

    Euler: float32 `σ·1000`. UniPC: `σ·1000` in float64 truncated to a whole number (diffusers stores them as
    int64 and Wan's transformer receives those), so the model time `timesteps / 1000` differs slightly from σ.
    """
    SamplerConfig(solver=solver, num_steps=num_steps, shift=shift)
    if solver == "euler":
        return _euler_sigmas(num_steps, shift) * np.float32(NUM_TRAIN_TIMESTEPS)
    return (_unipc_sigmas(num_steps, shift) * NUM_TRAIN_TIMESTEPS).astype(np.int64).astype(np.float32)


def schedule(config: SamplerConfig) -> tuple[np.ndarray, np.ndarray]:
    """`(sigmas [N + 1], model_times [N])` float32 for `config`; model time = timestep / 1000, in [0, 1]."""
    return (sigmas(config.num_steps, config.shift, config.solver),
            timesteps(config.num_steps, config.shift, config.solver) / np.float32(NUM_TRAIN_TIMESTEPS))


# ----------------------------------------------------------------------------------------------------------
# Guidance


def cfg_velocity(v_cond: Float[Array, "..."], v_uncond: Float[Array, "..."], scale) -> Float[Array, "..."]:
    """Classifier-free guidance `v_uncond + scale·(v_cond − v_uncond)` (same shapes; `scale` may be traced)."""
    return v_uncond + scale * (v_cond - v_uncond)


def two_branch_velocity(v_null: Float[Array, "..."], v_ref: Float[Array, "..."], v_full: Float[Array, "..."],
                        ref_scale, text_scale) -> Float[Array, "..."]:
    """Guidance on the reference and on the text: `v_null + s_ref·(v_ref − v_null) + s_text·(v_full − v_ref)`.

    `v_null`: neither reference nor text; `v_ref`: reference, null text; `v_full`: reference and text (same
    shapes). The reference direction is measured without text and the text direction on top of the reference,
    so each scale acts on its own condition: `s_text = 1` is plain reference guidance with the text on,
    `s_ref = s_text = s` is ordinary guidance `cfg_velocity(v_full, v_null, s)`. Scales may be traced.
    """
    return v_null + ref_scale * (v_ref - v_null) + text_scale * (v_full - v_ref)


# ----------------------------------------------------------------------------------------------------------
# Euler


def euler_step(x: Float[Array, "..."], v: Float[Array, "..."], sigma, sigma_next) -> Float[Array, "..."]:
    """One Euler step `x + (σ_next − σ)·v` in float32 (float64 for a float64 `x`), in `x`'s dtype and shape."""
    dtype = _compute_dtype(x)
    dt = jnp.asarray(sigma_next, dtype) - jnp.asarray(sigma, dtype)
    return (x.astype(dtype) + dt * v.astype(dtype)).astype(x.dtype)


# ----------------------------------------------------------------------------------------------------------
# UniPC (bh2, order 2, x0 form, flow prediction) as diffusers' UniPCMultistepScheduler runs it for Wan:
# at step i the corrector (UniC) first refines the sample x_i using the new x0 prediction m_i, then the
# predictor (UniP) moves it to σ_{i+1}. Orders: predictor 1 at the first step (no history) and the last one
# (lower_order_final), else 2; corrector none at the first step, 1 at the second, else 2.


class UniPCState(NamedTuple):
    """UniPC's history between steps (each shaped like the sample, in the compute dtype): the x0 predictions of
    the last two steps (`x0_prev` = m_{i−1}, `x0_prev2` = m_{i−2}) and the last corrected sample x_{i−1}."""

    x0_prev: jax.Array
    x0_prev2: jax.Array
    last_sample: jax.Array


def unipc_init(x: Float[Array, "..."]) -> UniPCState:
    """An empty history for a sample shaped like `x` (zeros; the first steps ignore it)."""
    zeros = jnp.zeros(x.shape, _compute_dtype(x))
    return UniPCState(zeros, zeros, zeros)


def _lambda_gap(sigma_from, sigma_to):
    """λ(σ_to) − λ(σ_from), λ(σ) = log((1 − σ)/σ) the log signal-to-noise ratio; +inf when σ_to = 0.

    Written as two log1p of positive arguments (`hi`, `lo` the larger and smaller sigma), so the gap between
    close sigmas keeps float32's relative accuracy instead of cancelling two large logs.
    """
    hi, lo = jnp.maximum(sigma_from, sigma_to), jnp.minimum(sigma_from, sigma_to)
    d = hi - lo
    gap = jnp.log1p(d / (1 - hi)) + jnp.log1p(d / lo)  # λ(lo) − λ(hi) >= 0
    return jnp.where(sigma_from >= sigma_to, gap, -gap)


def _bh2(h):
    """For a log-SNR step `h > 0`: `(h·φ1(−h), B(h))`, both `expm1(−h)` in the bh2 variant."""
    h_phi_1 = jnp.expm1(-h)
    return h_phi_1, h_phi_1


def _expm1_tails(z):
    """`(g2, g3)` = `((e^z − 1 − z)/z², (e^z − 1 − z − z²/2)/z³)` for finite z, accurate near 0 (Taylor series
    for |z| < 2, where the direct forms cancel; the direct forms elsewhere)."""
    small = jnp.abs(z) < 2
    zs = jnp.where(small, z, 1.0)
    g3_series = jnp.zeros_like(z)
    for k in range(22, 2, -1):  # Σ_{k>=3} z^(k−3)/k! by Horner; first dropped term 2^20/23! < 1e-16
        g3_series = g3_series * zs + 1.0 / math.factorial(k)
    g2_series = 0.5 + zs * g3_series
    zd = jnp.where(small, 1.0, z)
    e = jnp.expm1(zd)
    g2_direct = (e - zd) / (zd * zd)
    g3_direct = (e - zd - 0.5 * zd * zd) / (zd * zd * zd)
    return jnp.where(small, g2_series, g2_direct), jnp.where(small, g3_series, g3_direct)


def _corrector_rhos(h, rk, order2):
    """UniC's weights `(ρ0, ρ1)` for the step h (> 0, finite): order 1 `(0, 1/2)`; order 2 solves
    `[[1, 1], [rk, 1]]·ρ = [b1, b2]`, `b1 = (φ1 − 1)/B`, `b2 = 2·((φ1 − 1)/z − 1/2)/B` at `z = −h`, written
    through the series tails so small steps keep their precision."""
    z = -h
    g2, g3 = _expm1_tails(z)
    b_h = jnp.expm1(z)
    b1 = z * g2 / b_h
    b2 = 2 * z * g3 / b_h
    rho0 = jnp.where(order2, (b2 - b1) / (rk - 1), 0.0)
    rho1 = jnp.where(order2, b1 - rho0, 0.5)
    return rho0, rho1


def unipc_step(state: UniPCState, x: Float[Array, "..."], v: Float[Array, "..."], step_index,
               sigmas: Float[Array, "n1"]) -> tuple[Float[Array, "..."], UniPCState]:
    """One UniPC step from `sigmas[i]` to `sigmas[i + 1]`: `(x_next, state)`, `x_next` shaped and typed like `x`.

    `x`: the sample at step `i` (what the model saw), `v`: the model's (guided) velocity there; `step_index`
    may be traced; `sigmas` `[N + 1]` (from `sigmas(..., "unipc")`: in (0, 1), then a final 0). Computes in
    float32 (float64 for a float64 `x`).
    """
    n = sigmas.shape[0] - 1  # static number of steps
    i = jnp.asarray(step_index, jnp.int32)
    dtype = _compute_dtype(x)
    sig = sigmas.astype(dtype)
    at = lambda k: sig[jnp.clip(k, 0, n)]  # noqa: E731
    s_prev2, s_prev, s_cur, s_next = at(i - 2), at(i - 1), at(i), at(i + 1)
    x_in = x.astype(dtype)
    m_cur = x_in - s_cur * v.astype(dtype)  # x0 prediction m_i

    # Corrector: redo the step σ_{i−1} -> σ_i from the last sample with m_i included.
    use_c = i >= 1
    c_order2 = i >= 2
    h_c = jnp.where(use_c, _lambda_gap(s_prev, s_cur), 1.0)
    rk_c = jnp.where(c_order2, _lambda_gap(s_prev, s_prev2) / h_c, -1.0)
    h_phi_1, b_h = _bh2(h_c)
    rho0, rho1 = _corrector_rhos(h_c, rk_c, c_order2)
    alpha_cur = 1 - s_cur
    base = (s_cur / s_prev) * state.last_sample - (alpha_cur * h_phi_1) * state.x0_prev
    corr = rho0 * ((state.x0_prev2 - state.x0_prev) / rk_c)
    x_corr = base - (alpha_cur * b_h) * (corr + rho1 * (m_cur - state.x0_prev))
    x_cur = jnp.where(use_c, x_corr, x_in)

    # Predictor: σ_i -> σ_{i+1}.
    p_order2 = (i >= 1) & (i <= n - 2)
    h_p = _lambda_gap(s_cur, s_next)
    rk_p = jnp.where(p_order2, _lambda_gap(s_cur, s_prev) / h_p, 1.0)
    h_phi_1, b_h = _bh2(h_p)
    rho_p = jnp.where(p_order2, 0.5, 0.0)
    alpha_next = 1 - s_next
    base = (s_next / s_cur) * x_cur - (alpha_next * h_phi_1) * m_cur
    x_next = base - (alpha_next * b_h) * (rho_p * ((state.x0_prev - m_cur) / rk_p))
    return x_next.astype(x.dtype), UniPCState(x0_prev=m_cur, x0_prev2=state.x0_prev, last_sample=x_cur)


# ----------------------------------------------------------------------------------------------------------
# One interface over both solvers (the solver name is static)


def init_state(solver: str, x: Float[Array, "..."]):
    """The solver's empty history for a sample like `x`: `()` for Euler, a `UniPCState` for UniPC."""
    require(solver in SOLVERS, f"init_state: solver ({solver!r}) must be one of {SOLVERS}")
    return () if solver == "euler" else unipc_init(x)


def solver_step(solver: str, state, x: Float[Array, "..."], v: Float[Array, "..."], step_index,
                sigmas: Float[Array, "n1"]):
    """One step of `solver` from `sigmas[i]` to `sigmas[i + 1]`: `(x_next, state)` (`step_index` may be traced)."""
    require(solver in SOLVERS, f"solver_step: solver ({solver!r}) must be one of {SOLVERS}")
    if solver == "unipc":
        return unipc_step(state, x, v, step_index, sigmas)
    i = jnp.asarray(step_index, jnp.int32)
    return euler_step(x, v, sigmas[i], sigmas[i + 1]), state
