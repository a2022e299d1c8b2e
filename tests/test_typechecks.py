"""The jaxtyping import hook (tests/conftest.py) is active: swapjax's annotations are checked on every call."""

import jax.numpy as jnp
import jaxtyping
import pytest

from swapjax.losses import flow_matching_loss


def test_a_call_that_matches_the_annotations_runs():
    loss = flow_matching_loss(jnp.ones((2, 1, 2, 2, 4)), jnp.zeros((2, 1, 2, 2, 4)))  # "b f h w c" twice -> "b"
    assert loss.shape == (2,)


@pytest.mark.parametrize("target", [jnp.zeros((2, 1, 2, 2, 3)),   # c disagrees with v_pred's
                                    jnp.zeros((2, 2, 2, 4)),      # a dimension short
                                    jnp.zeros((2, 1, 2, 2, 4), jnp.int32)])  # not a float array
def test_a_call_that_breaks_the_annotations_is_refused(target):
    with pytest.raises(jaxtyping.TypeCheckError, match="v_target"):
        flow_matching_loss(jnp.ones((2, 1, 2, 2, 4)), target)


def test_unchecked_lets_bad_input_reach_the_functions_own_validation(unchecked):
    with pytest.raises(ValueError, match="must both be"):
        flow_matching_loss(jnp.ones((2, 1, 2, 2, 4)), jnp.zeros((2, 1, 2, 2, 3)))
