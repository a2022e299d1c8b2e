"""Loss terms as plug-ins: what the train step feeds (`pixel_terms.decodes / pixel_keys / check_pixel_terms /
pixel_loss_inputs`) is read from each term's `LossTerm` declaration in `LOSS_TERMS`, not from its name."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from swapjax.errors import ConfigError
from swapjax.data.config import DataConfig
from swapjax.losses import LOSS_TERMS, LossConfig, LossInputs
from swapjax.train import pixel_terms
from swapjax.train.pixel_terms import check_pixel_terms, decodes, pixel_keys, pixel_loss_inputs


@pytest.mark.parametrize("weights, keys, decoded, encoder", [
    (dict(), (), False, False),
    (dict(region_weight=1.0), (), False, False),
    (dict(coherence_weight=1.0), ("reference", "subject_mask"), True, True),
    (dict(identity_weight=1.0), ("reference", "subject_mask", "video"), True, True),
    (dict(mear_weight=1.0), ("keypoints", "video"), False, False),
    (dict(mear_weight=1.0, mear_beta=0.0), ("video",), False, False),
    (dict(mear_weight=1.0, mear_beta=0.0, coherence_weight=1.0), ("reference", "subject_mask", "video"), True, True),
])
def test_what_a_run_feeds_follows_the_enabled_terms(weights, keys, decoded, encoder):
    loss = LossConfig(**weights)
    assert pixel_keys(loss) == keys
    assert decodes(loss) is decoded and loss.needs_encoder is encoder


def test_the_step_reads_the_table_not_the_term_names(monkeypatch):
    # the same weight, a different declaration: coherence now reads only the reference and decodes nothing
    plain = dataclasses.replace(LOSS_TERMS["coherence"], batch_keys=lambda cfg: ("reference",), decodes=False,
                                encoder=False, data_problem=lambda cfg, data: "no clips for this term")
    monkeypatch.setitem(LOSS_TERMS, "coherence", plain)
    loss = LossConfig(coherence_weight=1.0)
    assert pixel_keys(loss) == ("reference",) and not decodes(loss) and not loss.needs_encoder
    with pytest.raises(ConfigError, match="no clips for this term"):
        check_pixel_terms(loss, DataConfig())


def test_pixel_loss_inputs_builds_exactly_the_fields_the_enabled_terms_read(monkeypatch):
    video = jnp.zeros((1, 5, 16, 16, 3))
    batch = {"video": video, "subject_mask": jnp.ones((1, 5, 16, 16))}
    kwargs = dict(frames_per_latent=4, pixels_per_latent=8)
    v = jnp.zeros((1, 2, 2, 2, 4))
    # MEAR without landmarks: only its weights, from the target video (no decode, no frozen models needed)
    out = pixel_loss_inputs(LossConfig(mear_weight=1.0, mear_beta=0.0), batch, v, None, None, **kwargs)
    assert set(out) == {"mear_weights"} and out["mear_weights"].shape == (1, 2, 2, 2)
    np.testing.assert_allclose(out["mear_weights"], 1.0)  # a still clip: w = 1 + α·0
    assert pixel_loss_inputs(LossConfig(region_weight=1.0), batch, v, None, None, **kwargs) == {}
    # a term declaring other fields gets those, built by FIELD_BUILDERS
    monkeypatch.setitem(LOSS_TERMS, "region", dataclasses.replace(LOSS_TERMS["region"], reads=("subject_mask",
                                                                                               "x0_px")))
    out = pixel_loss_inputs(LossConfig(region_weight=1.0), batch, v, None, None, **kwargs)
    assert set(out) == {"x0_px"} and out["x0_px"] is video
    # a decoding term without the frozen models says what is missing
    with pytest.raises(ValueError, match=r"loss terms \['coherence'\] decode x̂0: build the objective with the "
                                         r"frozen models"):
        pixel_loss_inputs(LossConfig(coherence_weight=1.0), {**batch, "noisy": v, "t": jnp.ones(1)}, v, None, None,
                          **kwargs)


def test_every_registered_term_reads_only_buildable_loss_inputs():
    for name, term in LOSS_TERMS.items():
        assert set(term.reads) <= set(LossInputs._fields), name
        assert set(term.reads) <= set(pixel_terms.FIELD_BUILDERS) | set(pixel_terms.STEP_FIELDS), name
