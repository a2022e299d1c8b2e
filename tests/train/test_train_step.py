"""The train step on one device: stage 1 freezes (bit for bit, no optimizer state) and a NaN batch changes
nothing."""

from __future__ import annotations

import jax
import numpy as np

from train_fixtures import compiled_step, model_batch, on_mesh, randomized, tiny_config
from swapjax.train.loop import build_dit
from swapjax.train.state import FROZEN, TRAIN, path_name


def _flat(tree) -> dict[str, np.ndarray]:
    return {path_name(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_stage1_freezes_bit_for_bit_and_keeps_no_optimizer_state_for_frozen():
    config = tiny_config("train.stage=1")
    with on_mesh() as mesh:
        setup = build_dit(config, mesh)
        state = randomized(setup, setup.plan.create(0))
        before = _flat(jax.device_get(state.params))
        batches = [model_batch(config, 2, s) for s in range(3)]
        step, sh = compiled_step(setup, mesh, batches[0])
        for b in batches:
            state, metrics = step(state, {k: jax.device_put(v, sh[k]) for k, v in b.items()}, None)
            assert bool(metrics["finite"])
        after = _flat(jax.device_get(state.params))
        labels = {path_name(p): v for p, v in jax.tree_util.tree_flatten_with_path(setup.labels)[0]}
        frozen = [n for n, v in labels.items() if v == FROZEN]
        trained = [n for n, v in labels.items() if v == TRAIN]
        assert any(n.startswith("model/blocks/cross_attn") for n in frozen)  # cross-attention is frozen in stage 1
        assert any(n.startswith("model/blocks/self_attn") for n in trained)
        assert any(n.startswith("model/patch_embed") for n in trained)
        for n in frozen:
            assert before[n].tobytes() == after[n].tobytes(), n
        assert any(not np.array_equal(before[n], after[n]) for n in trained)
        # Adam's moments exist for the trained leaves only: no optimizer leaf's path ends in a frozen parameter.
        opt_names = list(_flat(state.opt_state))
        for n in frozen:
            assert not any(o.endswith(n) for o in opt_names), n
        moments = sum(int(np.size(x)) for x in jax.tree.leaves(state.opt_state))
        n_trained = sum(before[n].size for n in trained)
        assert 2 * n_trained <= moments < 2 * n_trained + 64  # mu + nu + a few counters


def test_nan_batch_changes_no_parameter():
    config = tiny_config("train.stage=2")
    with on_mesh() as mesh:
        setup = build_dit(config, mesh)
        state = randomized(setup, setup.plan.create(0))
        good, bad = model_batch(config, 2, 0), model_batch(config, 2, 1)
        bad["target"][0, 0, 0, 0, 0] = np.nan
        step, sh = compiled_step(setup, mesh, good)
        put = lambda b: {k: jax.device_put(v, sh[k]) for k, v in b.items()}
        state, _ = step(state, put(good), None)
        snapshot = _flat(jax.device_get((state.params, state.ema, state.opt_state.inner_state)))
        state, metrics = step(state, put(bad), None)
        assert not bool(metrics["finite"]) and not np.isfinite(float(metrics["loss"]))
        assert int(metrics["nonfinite_streak"]) == 1 and int(state.step) == 2
        after = _flat(jax.device_get((state.params, state.ema, state.opt_state.inner_state)))
        for name, value in snapshot.items():
            assert value.tobytes() == after[name].tobytes(), name
        state, metrics = step(state, put(good), None)
        assert bool(metrics["finite"]) and int(metrics["nonfinite_streak"]) == 0
        assert int(metrics["nonfinite_total"]) == 1
