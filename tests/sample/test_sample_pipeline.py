"""The sampling pipeline on the tiny swap model (pose-attention and points on): one compiled step for every
step, video and guidance value; per-video condition work done once; exact background and frame counts; long
videos in windows at flat device memory; tunnel inpainting pasted back exactly."""

from __future__ import annotations

import collections
import dataclasses

import jax
import numpy as np
import pytest

from sample_fixtures import CONFIG_PATH, SAMPLE, clip, random_models, swap_inputs
from swapjax.config import load_config
from swapjax.models.conditions import PointInputs, PointCondition, PoseCondition
from swapjax.sample.composite import to_unit
from swapjax.sample.engine import Engine, WindowInputs
from swapjax.sample.pipeline import swap_video

CONFIG = load_config(CONFIG_PATH, ["swap.conditions.pose.widths=8", "swap.conditions.points.num_points=4",
                                   "swap.conditions.points.point_dim=8", "swap.conditions.points.hidden=16",
                                   "swap.conditions.points.layers=1"])
PREPARED = collections.Counter()  # executions (not traces) of each condition's per-video prepare


def _counting(name, prepare):
    def wrapped(self, inputs, video):
        out = prepare(self, inputs, video)
        jax.debug.callback(lambda: PREPARED.update([name]))  # runs once per execution of the compiled function
        return out
    return wrapped


@pytest.fixture(scope="module")
def engine():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PoseCondition, "prepare", _counting("pose", PoseCondition.prepare))
        patch.setattr(PointCondition, "prepare", _counting("points", PointCondition.prepare))
        yield Engine(random_models(CONFIG), SAMPLE)


def _points(num_frames: int, seed: int) -> PointInputs:
    rng = np.random.default_rng(seed)
    k, e = 4, 8  # conditions.points.num_points, point_dim of CONFIG
    return PointInputs(coords=rng.uniform(0, 32, (1, num_frames, k, 2)).astype(np.float32),
                       visible=np.ones((1, num_frames, k), bool),
                       embeddings=rng.standard_normal((1, k, e)).astype(np.float32))


def test_one_compiled_step_for_every_step_video_and_guidance_and_conditions_prepared_once(engine):
    reference = engine.encode_image(to_unit(clip(1, seed=9)[0]))
    outputs = []
    for video, guidance in [(0, 5.0), (1, 2.0), (0, 2.0)]:  # two videos, two guidance scales
        window = WindowInputs(pixels=to_unit(clip(5, seed=video)), mask=(clip(5, seed=7)[..., 0] > 128) * 1.0,
                              condition=to_unit(clip(5, seed=video + 4)), reference=reference, anchor=None,
                              text=None, conditions={"points": _points(5, video)})
        before = dict(PREPARED)
        outputs.append(engine.generate(window, jax.random.key(0), np.array([guidance, 1.0], np.float32)))
        jax.effects_barrier()
        assert PREPARED["pose"] - before.get("pose", 0) == 1  # pose features: once per video, not per step
        assert PREPARED["points"] - before.get("points", 0) == 1  # point features: once per video
    assert engine.traces["step"] == 1 and engine.traces["prefix"] == 1
    assert engine.calls["step"] == 3 * SAMPLE.sampler.num_steps
    assert np.abs(outputs[0] - outputs[2]).max() > 1e-4  # the traced guidance scale is in use


@pytest.mark.parametrize("num_frames", [7, 10])
def test_background_is_the_source_and_frame_count_is_kept(engine, num_frames):
    inputs = swap_inputs(num_frames, seed=num_frames, condition=clip(num_frames, seed=2))
    result = swap_video(engine, inputs, SAMPLE, CONFIG.data.mask)
    assert result.frames.shape == inputs.video.shape and result.frames.dtype == np.uint8
    outside = result.alpha == 0  # [F, H, W]
    assert 0.3 < outside.mean() < 0.95
    assert np.array_equal(result.frames[outside], inputs.video[outside])  # bit-exact, before any encoding
    inside = inputs.mask != 0
    assert np.abs(result.frames[inside].astype(int) - inputs.video[inside]).mean() > 5  # the subject was redone
    assert len(result.report["windows"]) == (2 if num_frames == 7 else 3)
    assert engine.traces["step"] <= 2  # one step with points in the cache (above), one without, for every window


def test_three_windows_use_the_one_window_step_and_flat_device_memory(engine, monkeypatch):
    live = []
    generate = engine.generate_window

    def measured(*args, **kwargs):
        out = generate(*args, **kwargs)
        live.append(sum(a.nbytes for a in jax.live_arrays()))
        return out

    monkeypatch.setattr(engine, "generate_window", measured)
    one = swap_video(engine, swap_inputs(5, seed=3, condition=clip(5, seed=1)), SAMPLE, CONFIG.data.mask)
    memory_one = engine.step_memory()
    traces = engine.traces["step"]
    three = swap_video(engine, swap_inputs(13, seed=4, condition=clip(13, seed=1)), SAMPLE, CONFIG.data.mask)
    memory_three = engine.step_memory()
    assert len(one.report["windows"]) == 1 and len(three.report["windows"]) == 3
    assert engine.traces["step"] == traces  # no new compile for more windows
    fields = ("temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes")
    assert [getattr(memory_one, f) for f in fields] == [getattr(memory_three, f) for f in fields]
    assert len(set(live)) == 1, live  # device memory after each window does not grow
    assert three.report["seam_ratio"] is not None and np.isfinite(three.report["colour_drift"])


def test_tunnel_crop_swaps_a_small_subject_and_pastes_back(engine):
    video = clip(5, 64, 64, seed=5)
    mask = np.zeros((5, 64, 64), np.uint8)
    mask[:, 40:46, 20:26] = 1  # 36 of 4096 pixels: under the 5 % tunnel threshold
    inputs = dataclasses.replace(swap_inputs(5, seed=5), video=video, mask=mask, condition=clip(5, 64, 64))
    result = swap_video(engine, inputs, SAMPLE, CONFIG.data.mask)
    report = result.report
    assert report["tunnel"] and report["model_hw"] == [32, 32] and report["crop_box_yxyx"] == [37, 17, 49, 29]
    outside = result.alpha == 0
    assert np.array_equal(result.frames[outside], video[outside])
    assert not np.array_equal(result.frames[:, 40:46, 20:26], video[:, 40:46, 20:26])
