"""LoRA: only the adapters train, `merge_lora` is W + (alpha / r) A @ B, and the merged inference export runs
exactly like the adapted model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax import traverse_util

from train_fixtures import compiled_step, model_batch, on_mesh, randomized, tiny_config
from test_train_step import _flat
from swapjax.convert.saved import load_converted
from swapjax.models.swap import SwapInputs
from swapjax.train.export import export_inference, inference_params
from swapjax.train.lora import merge_lora
from swapjax.train.loop import build_dit


def test_lora_trains_only_adapters_and_the_merged_export_is_the_adapted_model(tmp_path):
    # three distinct text tokens: with one, cross-attention's softmax is constant and its q/k get no gradient
    config = tiny_config("train.stage=lora", "train.lora_rank=2", "optimizer.lr=0.05", "train.text_len=3")
    with on_mesh() as mesh:
        setup = build_dit(config, mesh)
        state = randomized(setup, setup.plan.create(0))
        base = _flat(jax.device_get(state.params["model"]))
        adapters0 = _flat(jax.device_get(state.params["lora"]))
        batches = [model_batch(config, 2, s) for s in range(3)]
        step, sh = compiled_step(setup, mesh, batches[0])
        for b in batches:
            state, _ = step(state, {k: jax.device_put(v, sh[k]) for k, v in b.items()}, None)
        assert all(v.tobytes() == base[n].tobytes() for n, v in _flat(jax.device_get(state.params["model"])).items())
        adapters = _flat(jax.device_get(state.params["lora"]))
        assert all(not np.array_equal(adapters[n], adapters0[n]) for n in adapters)  # every A and B moved
        assert any(n.endswith("ffn/fc1/a") for n in adapters) and any("cross_attn/q" in n for n in adapters)

        # merge_lora is W + (alpha / r) A @ B on every adapted kernel
        lora = jax.device_get(state.params["lora"])
        merged = jax.device_get(merge_lora(state.params["model"], lora, setup.lora_scale))
        flat_l = traverse_util.flatten_dict(lora)
        kernel = ("blocks", "self_attn", "q")
        want = base["blocks/self_attn/q/kernel"] + setup.lora_scale * np.einsum(
            "lir,lro->lio", flat_l[(*kernel, "a")], flat_l[(*kernel, "b")])
        np.testing.assert_allclose(traverse_util.flatten_dict(merged)[(*kernel, "kernel")], want, rtol=1e-6, atol=1e-7)

        # the float32 inference export, loaded back, runs exactly like the adapted model
        params = inference_params(state.replace(ema={}), setup.lora_scale)  # the adapted weights, not their EMA
        export_inference(tmp_path / "export", params, config.dit, config.swap, "float32")
        _, _, loaded = load_converted(tmp_path / "export")
        b = batches[0]
        b = {k: jnp.asarray(v) for k, v in b.items()}  # the model's inputs are jax arrays (checked annotations)
        inputs = SwapInputs(fused=b["fused"], t=b["t"], context=b["context"], prefix=b["prefix"])
        forward = jax.jit(lambda p: nnx.merge(setup.graphdef, p)(inputs))
        adapted = np.asarray(forward(merge_lora(state.params["model"], state.params["lora"], setup.lora_scale)))
        exported = np.asarray(forward(nnx.to_pure_dict(loaded)))
        plain = np.asarray(forward(state.params["model"]))
        err = np.abs(exported - adapted).max() / np.abs(adapted).max()
        assert err <= 1e-5, err
        assert np.abs(plain - adapted).max() > 1e3 * np.abs(exported - adapted).max()  # the adapters matter
