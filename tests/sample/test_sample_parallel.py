"""Sequence-parallel sampling: the same window sampled on 8 fake CPU devices (video tokens sharded over
`sequence`, keys/values gathered; parameters sharded by the rules) equals one device within 1e-5."""

from __future__ import annotations

import jax
import numpy as np

from sample_fixtures import CONFIG, SAMPLE, box_track, clip, random_models
from swapjax.flow import SamplerConfig
from swapjax.parallel import MeshConfig, make_mesh
from swapjax.sample.composite import to_unit
from swapjax.sample.engine import Engine, WindowInputs


def _window(engine: Engine, anchor: np.ndarray | None) -> WindowInputs:
    reference = engine.encode_image(to_unit(clip(1, seed=9)[0]))
    return WindowInputs(pixels=to_unit(clip(5, seed=1)), mask=box_track(5).astype(np.float32), condition=None,
                        reference=reference, anchor=anchor, text=np.ones((3, CONFIG.dit.text_dim), np.float32),
                        conditions=None)


def test_sampling_on_8_devices_equals_one_device():
    mesh_cfg = MeshConfig(data=1, fsdp=2, sequence=4)  # the CLI default (sequence=-1) runs in test_sample_cli.py
    assert jax.device_count() == 8
    models = random_models()
    cfg = SAMPLE.replace(sampler=SamplerConfig(solver="unipc", num_steps=3))
    anchor = to_unit(clip(1, seed=4)[0])
    scales = np.array([4.0, 1.0], np.float32)
    single = Engine(models, cfg)
    expected = single.generate(_window(single, anchor), jax.random.key(0), scales)

    mesh = make_mesh(mesh_cfg)
    sharded = Engine(models, cfg, mesh=mesh)
    with jax.set_mesh(mesh):
        got = sharded.generate(_window(sharded, anchor), jax.random.key(0), scales)
    kernels = [leaf for leaf in jax.tree.leaves(sharded.dit_state) if leaf.ndim >= 2]
    assert any(not leaf.sharding.is_fully_replicated for leaf in kernels)  # parameters sharded over fsdp
    assert sharded.traces["step"] == 1
    print(f"\nmax |8 devices - 1 device| = {np.abs(got - expected).max():.2e}")
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert np.abs(expected).max() > 0.05
