"""The 14B swap model's real train step compiled for a v5p and a v6e slice with libtpu's compile-only devices,
its per-device memory checked against a hand count of parameters + optimizer state + EMA.

Slow (about a minute of CPU each on a 2-core machine, several minutes of wall time when the machine is
shared) and skipped without libtpu (pip install -e '.[tpu]'), so CI does not depend on it. A short clip keeps
activations small, so the arguments are the state; compile time hardly depends on the clip or the depth, and
the README's full-size plans ("Plans for the 14B swap model") record their timings.
"""

from __future__ import annotations

import pytest

from swapjax.aot.plan import plan_train_step
from swapjax.aot.topology import compile_only_devices, libtpu_available, parse_slice
from swapjax.config import load_config
from swapjax.parallel import make_mesh

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not libtpu_available(), reason="libtpu is not installed: pip install -e '.[tpu]' "
                                 "(the optional tpu extra) to compile for TPU slices")]

PARAMS = 16_395_206_464  # the swap 14B model (configs/swap_wan2_1_14b.py, checked in tests/models/test_swap.py)
D, LAYERS, PATCH_IN = 5120, 40, 1 * 2 * 2 * 52
# Stage 1 trains every block's self-attention (q, k, v, o kernels and biases; the q and k RMSNorm scales) and the
# widened patch embedding (kernel and bias); no optional condition is on.
TRAINED = LAYERS * (4 * (D * D + D) + 2 * D) + PATCH_IN * D + D


@pytest.mark.parametrize("topology, devices", [("v5p-8", 4), ("v6e-8", 8)])
def test_14b_train_step_compiles_and_holds_the_hand_counted_state(topology, devices):
    config = load_config("configs/swap_wan2_1_14b.py", ["mesh.data=1", "mesh.fsdp=-1", f"data.batch_size={devices}",
                                                        "data.num_frames=5", "data.height=128", "data.width=128"])
    sl = parse_slice(topology)
    mesh = make_mesh(config.mesh, compile_only_devices(sl))
    plan = plan_train_step(config, mesh)
    assert plan.memory is not None, plan.oom
    # float32 parameters, Adam's two moments and the EMA of the trained ones, all sharded over every device
    hand = 4 * (PARAMS + 3 * TRAINED) / devices
    assert abs(plan.memory.arguments - hand) <= 0.1 * hand, (plan.memory.arguments, hand)
    assert abs(sum(v for k, v in plan.state.items() if k != "batch") - hand) <= 0.01 * hand
    assert plan.memory.peak <= sl.hbm_bytes
    print(f"{topology}: compiled in {plan.compile_s:.0f} s, arguments {plan.memory.arguments / 2**30:.2f} GiB "
          f"(hand count {hand / 2**30:.2f} GiB), peak {plan.memory.peak / 2**30:.2f} GiB")
