"""The swap DiT's training objective: one (micro-)batch of prepared inputs -> (loss, metrics).

The training forward is `SwapDiT.__call__`: the prefix stream (reference / anchor frames, t = 0) then the
video stream reading its keys and values, so gradients reach both. The losses are `swapjax.losses` composed
by `LossConfig`; the terms the prepared batch can feed are the velocity ones that need no extra model
(`flow_matching`, `region` with the subject mask on the latent grid). `check_loss_terms` refuses the others
before anything compiles.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
from flax import nnx

from swapjax.config_error import ConfigError
from swapjax.losses import LossConfig, LossInputs, total_loss
from swapjax.models.swap import SwapInputs

SUPPORTED_TERMS = ("flow_matching", "region")


def check_loss_terms(cfg: LossConfig) -> None:
    """Raises `ConfigError` if a loss term the training batch cannot feed is on."""
    off = [name for name in ("coherence", "mear", "identity") if cfg.weight(name) > 0]
    if off:
        raise ConfigError(f"LossConfig: {', '.join(f'{n}_weight' for n in off)} > 0, but the train loop feeds only "
                          f"{SUPPORTED_TERMS} (those terms need decoded frames, an image encoder or landmarks in the "
                          f"batch); set {', '.join(f'loss.{n}_weight=0' for n in off)}")


def swap_objective(graphdef: nnx.GraphDef, loss: LossConfig) -> Callable[[dict, dict, jax.Array, Any],
                                                                          tuple[jax.Array, dict]]:
    """`(model_params, batch, key, frozen) -> (loss, metrics)` for the swap DiT `graphdef`."""

    def objective(params: dict, batch: dict, key: jax.Array, frozen: Any) -> tuple[jax.Array, dict]:
        model = nnx.merge(graphdef, params)
        inputs = SwapInputs(fused=batch["fused"], t=batch["t"], context=batch["context"],
                            prefix=batch.get("prefix"))
        v_pred = model(inputs)  # [B, f, h, w, z]
        value, metrics = total_loss(loss, LossInputs(v_pred=v_pred, v_target=batch["target"],
                                                     subject_mask=batch["subject"]))
        metrics.pop("loss")
        return value, metrics

    return objective
