"""Sampling geometry, windows and composite on plain arrays: valid model sizes with the aspect ratio kept, exact
crop -> paste, frame counts padded and cut back, windows covering each frame once, a pixel-exact background."""

from __future__ import annotations

import numpy as np
import pytest

from swapjax import metrics
from swapjax.config import load_config
from swapjax.errors import ConfigError
from swapjax.flow import SamplerConfig
from swapjax.sample import windows
from swapjax.sample.composite import composite, composite_alpha
from swapjax.sample.config import SampleConfig
from sample_fixtures import CONFIG_PATH
from swapjax.sample.geometry import pad_frames, plan_geometry, vae_frame_count


def _mask(num_frames, height, width, box):
    m = np.zeros((num_frames, height, width), np.uint8)
    y0, x0, y1, x1 = box
    m[:, y0:y1, x0:x1] = 1
    return m


@pytest.mark.parametrize("hw, area, scaled, model", [
    ((48, 80), 10_000, (48, 80), (48, 80)),  # small enough: no resize, already valid
    ((50, 70), 10_000, (50, 70), (64, 80)),  # padded up to multiples of 16
    ((480, 854), 832 * 480, (474, 843), (480, 848)),  # scaled down to ~area, aspect kept, then padded
    ((1080, 1920), 832 * 480, (474, 843), (480, 848)),
])
def test_model_size_keeps_aspect_and_is_valid(hw, area, scaled, model):
    geo = plan_geometry(hw, _mask(1, *hw, (0, 0, hw[0] // 2, hw[1] // 2)), SampleConfig(area=area))
    assert not geo.tunnel and geo.box == (0, 0, *hw)
    assert geo.scaled_hw == scaled and geo.model_hw == model
    assert abs(scaled[0] / scaled[1] - hw[0] / hw[1]) < 0.01
    assert model[0] % 16 == 0 and model[1] % 16 == 0


def test_crop_to_model_and_back_is_exact_without_scaling():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 50, 70, 3), dtype=np.uint8)
    geo = plan_geometry((50, 70), _mask(3, 50, 70, (5, 5, 30, 40)), SampleConfig(area=10_000))
    model = geo.to_model(frames)
    assert model.shape == (3, 64, 80, 3)
    assert np.array_equal(model[:, 50:, :70], np.repeat(frames[:, -1:], 14, axis=1))  # edge padding
    assert np.array_equal(geo.paste(frames, geo.from_model(model)), frames)


def test_tunnel_box_covers_the_track_and_pastes_back_exactly():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (4, 120, 200, 3), dtype=np.uint8)
    mask = np.zeros((4, 120, 200), np.uint8)
    for t in range(4):
        mask[t, 60:70, 100 + 3 * t:108 + 3 * t] = 1  # moving subject, union 10 x 17 (0.7 % of the frame)
    cfg = SampleConfig(area=64 * 64, tunnel_context=0.5)
    geo = plan_geometry((120, 200), mask, cfg)
    assert geo.tunnel and geo.box == (55, 91, 75, 126)  # union (60, 100, 70, 117) grown by 5 and 9 pixels
    assert geo.model_hw[0] % 16 == 0 and geo.model_hw[1] % 16 == 0
    assert geo.scaled_hw[0] * geo.scaled_hw[1] >= 0.9 * cfg.area  # swapped at the working resolution
    # a crop that comes back as itself leaves the frame unchanged; a new crop changes the box only
    y0, x0, y1, x1 = geo.box
    assert np.array_equal(geo.paste(frames, frames[:, y0:y1, x0:x1]), frames)
    crop = geo.from_model(geo.to_model(frames))
    assert crop.shape == (4, y1 - y0, x1 - x0, 3)
    pasted = geo.paste(frames, np.zeros_like(crop))
    outside = np.ones((120, 200), bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(pasted[:, outside], frames[:, outside]) and not pasted[:, y0:y1, x0:x1].any()
    # the model mask maps back onto the source mask
    back = geo.mask_from_model(geo.mask_to_model(mask))
    assert (back >= mask).all() and not back[:, outside].any()
    assert not plan_geometry((120, 200), mask, SampleConfig(area=64 * 64, tunnel_threshold=0.0)).tunnel


@pytest.mark.parametrize("frames, padded", [(1, 1), (2, 5), (5, 5), (7, 9), (10, 13), (81, 81), (82, 85)])
def test_frame_count_is_padded_to_the_vae_rule(frames, padded):
    assert vae_frame_count(frames) == padded
    x = np.arange(frames)[:, None]
    out = pad_frames(x, padded)
    assert out.shape[0] == padded and np.array_equal(out[:frames], x) and (out[frames:] == frames - 1).all()


@pytest.mark.parametrize("num_frames, window, overlap", [(5, 5, 1), (7, 5, 1), (10, 5, 1), (13, 5, 1), (81, 81, 8),
                                                          (200, 81, 8), (30, 9, 0), (12, 5, 3)])
def test_windows_cover_every_frame_exactly_once(num_frames, window, overlap):
    plan = windows.plan_windows(num_frames, window, overlap)
    assert plan[0].start == 0 and plan[-1].stop == num_frames
    assert len({w.length for w in plan}) == 1  # one shape: one compiled step
    assert all(w.length % 4 == 1 and w.stop - w.start <= w.length for w in plan)
    weights = windows.blend_weights(plan, num_frames)  # [n, F]
    np.testing.assert_allclose(weights.sum(axis=0), 1.0, atol=1e-6)
    for i, w in enumerate(plan):
        assert not weights[i, :w.start].any() and not weights[i, w.stop:].any()
    # windows that all return the frame indices blend back to the indices: nothing dropped or doubled
    blended = np.zeros(num_frames)
    for i, w in enumerate(plan):
        blended[w.start:w.stop] += weights[i, w.start:w.stop] * np.arange(w.start, w.stop)
    np.testing.assert_allclose(blended, np.arange(num_frames), atol=1e-4)


def test_seam_and_colour_metrics():
    plan = windows.plan_windows(13, 5, 1)  # [0, 5), [4, 9), [8, 13)
    assert metrics.join_transitions(plan) == [3, 4, 7, 8]
    ramp = np.broadcast_to(np.arange(13, dtype=np.uint8)[:, None, None, None] * 4, (13, 8, 8, 3))
    mask = np.ones((13, 8, 8), np.uint8)
    assert metrics.seam_ratio(ramp, mask, plan) == pytest.approx(1.0)  # steady motion: no seam
    jump = ramp.copy()
    jump[5:] += 40  # a jump at a join
    assert metrics.seam_ratio(jump, mask, plan) > 3
    colours = metrics.window_colours(jump, mask, plan)
    assert colours.shape == (3, 3) and metrics.colour_drift(colours) > 40


def test_composite_keeps_every_source_pixel_outside_the_dilated_mask():
    rng = np.random.default_rng(2)
    source = rng.integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)
    generated = rng.integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)
    mask = _mask(2, 40, 40, (10, 12, 20, 25))
    alpha = composite_alpha(mask, 3, 3)
    out = composite(source, generated, alpha)
    assert np.array_equal(out[alpha == 0], source[alpha == 0])
    assert np.array_equal(out[mask != 0], generated[mask != 0])  # feather(dilate(m, r), r) is 1 over m
    ring = (alpha > 0) & (alpha < 1)
    assert ring.any() and not (alpha[:, :6] > 0).any()


@pytest.mark.parametrize("field, value, match", [
    ("window_frames", 8, "window_frames"), ("overlap_frames", 4, "overlap_frames"),
    ("tunnel_threshold", 1.5, "tunnel_threshold"), ("area", 10, "area"),
    ("composite_dilate", -1, "composite_dilate"), ("encode_chunk_frames", 6, "encode_chunk_frames"),
    ("sampler", "unipc", "SampleConfig.sampler"),
])
def test_sample_config_names_the_bad_field(field, value, match, unchecked):
    with pytest.raises(ConfigError, match=match):
        SampleConfig(**{"window_frames": 5, "overlap_frames": 1, field: value})


@pytest.mark.parametrize("field, value", [("solver", "ddim"), ("num_steps", 0), ("guidance_scale", float("nan"))])
def test_the_sampler_section_validates_itself(field, value):
    with pytest.raises(ConfigError, match=f"SamplerConfig.{field}"):
        SampleConfig(sampler=SamplerConfig(**{field: value}))


def test_sampler_overrides_reach_the_composed_section():
    config = load_config(CONFIG_PATH, ["sample.sampler.num_steps=3", "sample.sampler.guidance_scale=2.5",
                                       "sample.area=1024"])
    assert config.sample.sampler == SamplerConfig(num_steps=3, guidance_scale=2.5) and config.sample.area == 1024
    assert config.sample.num_branches == 2
    with pytest.raises(ConfigError, match=r"sample.num_steps=.*SampleConfig has no field 'num_steps'.*sampler"):
        load_config(CONFIG_PATH, ["sample.num_steps=3"])  # the sampler's fields live in its own section
