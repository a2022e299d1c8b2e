"""The swap DiT's training objective: one (micro-)batch of prepared inputs -> (loss, metrics).

The training forward is `SwapDiT.__call__`: the prefix stream (reference / anchor frames, t = 0) then the
video stream reading its keys and values, so gradients reach both. The losses are `swapjax.losses` composed
by `LossConfig`: the velocity terms read the model's output and the batch's target (`region` the subject on
the latent grid); coherence, identity and MEAR also read pixels, decoded x̂0 and a frozen image encoder
(`pixel_terms.py`), whose parameters arrive as the step's `frozen` argument.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
from flax import nnx

from swapjax.losses import LossConfig, LossInputs, total_loss
from swapjax.models.swap import model_inputs
from swapjax.models.swap_config import SwapConfig
from swapjax.train.pixel_terms import FrozenModels, decodes, needs_pixels, pixel_loss_inputs


def swap_objective(graphdef: nnx.GraphDef, loss: LossConfig, swap: SwapConfig | None = None,
                   frozen_models: FrozenModels | None = None
                   ) -> Callable[[dict, dict, jax.Array, Any], tuple[jax.Array, dict]]:
    """`(model_params, batch, key, frozen) -> (loss, metrics)` for the swap DiT `graphdef`.

    `swap` (its latent factors) is needed by the MEAR, coherence and identity terms, `frozen_models` by the
    two that decode; `frozen` then holds `{"vae": ..., "encoder": ...}` parameters."""
    pixels = needs_pixels(loss)
    if pixels and swap is None:
        raise ValueError("loss.mear_weight, coherence_weight or identity_weight > 0: pass the SwapConfig (its latent "
                         "factors) to swap_objective")
    if decodes(loss) and frozen_models is None:
        raise ValueError("loss.coherence_weight or identity_weight > 0 decodes x̂0: pass the frozen VAE and image "
                         "encoder structure (FrozenModels) to swap_objective")

    def objective(params: dict, batch: dict, key: jax.Array, frozen: Any) -> tuple[jax.Array, dict]:
        model = nnx.merge(graphdef, params)
        v_pred = model(model_inputs(batch, model.swap))  # [B, f, h, w, z]; conditions and image tokens included
        extra = {}
        if pixels:
            extra = pixel_loss_inputs(loss, batch, v_pred, frozen, frozen_models,
                                      frames_per_latent=swap.frames_per_latent,
                                      pixels_per_latent=swap.pixels_per_latent)
        value, metrics = total_loss(loss, LossInputs(v_pred=v_pred, v_target=batch["target"],
                                                     subject_mask=batch["subject"], **extra))
        metrics.pop("loss")
        return value, metrics

    return objective
