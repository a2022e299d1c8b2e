"""`SweepConfig`: a grid of model widths and depths trained at given compute budgets (read by
`swapjax/scaling/`), and `load_sweep` for `configs/sweeps/*.py` files (`get_sweep()` returns one)."""

from __future__ import annotations

import dataclasses
import math
import pathlib

from swapjax.errors import ConfigError, SwapjaxError, require
from swapjax.python_file import call_factory


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Every (width, depth) of the grid is trained once per budget, for as many steps as the budget buys.

    Width is `heads x head_dim` (the FFN `ffn_mult` times wider); the rest of the model, the data and the
    optimizer come from the `base` run config (a path relative to the sweep file) with `overrides` applied.
    """

    name: str
    base: str  # a configs/*.py run config, relative to the sweep file
    head_dim: int
    heads: tuple[int, ...]
    depths: tuple[int, ...]
    budgets: tuple[float, ...]  # training FLOPs per run (analytic matmul FLOPs, swapjax.models.swap_flops)
    ffn_mult: float = 4.0
    overrides: tuple[str, ...] = ()  # applied to the base config of every run (key=value)
    min_steps: int = 4  # a (size, budget) pair that buys fewer steps is skipped
    max_steps: int = 100_000  # ... and one that needs more
    loss_tail: float = 0.25  # the final loss is the mean training loss of this share of the last steps

    def __post_init__(self):
        require(self.head_dim > 0 and self.head_dim % 2 == 0,
                f"SweepConfig.head_dim ({self.head_dim}) must be even and positive (3D rotary split)")
        for name in ("heads", "depths", "budgets"):
            values = getattr(self, name)
            require(len(values) >= 1 and all(v > 0 for v in values),
                    f"SweepConfig.{name} ({values}) must list at least one positive value")
        require(len(self.budgets) >= 2, f"SweepConfig.budgets ({self.budgets}) needs at least two budgets to fit a "
                "power law of loss against compute")
        require(self.ffn_mult > 0, f"SweepConfig.ffn_mult ({self.ffn_mult}) must be positive")
        require(1 <= self.min_steps <= self.max_steps,
                f"SweepConfig: min_steps ({self.min_steps}) must be >= 1 and <= max_steps ({self.max_steps})")
        require(0 < self.loss_tail <= 1 and math.isfinite(self.loss_tail),
                f"SweepConfig.loss_tail ({self.loss_tail}) must be in (0, 1]")


def load_sweep(path: str | pathlib.Path) -> tuple[SweepConfig, pathlib.Path]:
    """Imports a sweep file and calls its `get_sweep()` -> (the sweep, its base run config's path)."""
    path = pathlib.Path(path)
    try:
        sweep = call_factory(path, "get_sweep", SweepConfig, label="--sweep",
                             missing_hint="pass a file such as configs/sweeps/tiny.py")
    except SwapjaxError:
        raise
    except Exception as err:  # the user's code: what it raised, in one line
        said = " ".join(str(err).split())[:300]
        raise ConfigError(f"--sweep {str(path)!r} raised {type(err).__name__}{': ' + said if said else ''} while "
                          "building its SweepConfig: fix it") from None
    base = (path.parent / sweep.base).resolve()
    if not base.is_file():
        raise ConfigError(f"SweepConfig.base ({sweep.base!r}) is not a file next to {str(path)!r}: name a run config "
                          "relative to the sweep file, e.g. ../swap_tiny_train.py")
    return sweep, base
