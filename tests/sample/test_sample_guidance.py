"""Guidance branches of the sampling step: with a separate text scale the step runs three branches
`[null; reference; reference + text]`, and equal reference and text scales reproduce plain two-branch guidance
`[conditional; null]` (Euler, so the check also covers the second solver); both scales stay traced."""

from __future__ import annotations

import jax
import numpy as np

from sample_fixtures import CONFIG, SAMPLE, box_track, clip, random_models
from swapjax.flow import SamplerConfig
from swapjax.sample.composite import to_unit
from swapjax.sample.engine import Engine, WindowInputs


def _run(engine: Engine, scales) -> np.ndarray:
    reference = engine.encode_image(to_unit(clip(1, seed=9)[0]))
    window = WindowInputs(pixels=to_unit(clip(5, seed=1)), mask=box_track(5).astype(np.float32), condition=None,
                          reference=reference, anchor=to_unit(clip(1, seed=4)[0]),
                          text=np.random.default_rng(0).standard_normal((3, CONFIG.dit.text_dim)).astype(np.float32))
    return engine.generate(window, jax.random.key(1), np.asarray(scales, np.float32))


def test_three_branches_with_equal_scales_equal_two_branch_guidance():
    models = random_models()
    two = Engine(models, SAMPLE.replace(sampler=SamplerConfig(solver="euler", num_steps=3)))
    three = Engine(models, SAMPLE.replace(sampler=SamplerConfig(solver="euler", num_steps=3, text_guidance_scale=2.0)))
    assert three.cfg.num_branches == 3 and two.cfg.num_branches == 2
    np.testing.assert_allclose(_run(three, [3.5, 3.5]), _run(two, [3.5, 1.0]), atol=2e-5, rtol=0)
    text_off = _run(three, [3.5, 0.0])  # a new text scale: same compiled step, different result
    assert np.abs(text_off - _run(three, [3.5, 3.5])).max() > 1e-3
    assert three.traces["step"] == 1 and two.traces["step"] == 1
