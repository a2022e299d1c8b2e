"""The power law of loss against compute, fitted on the compute-efficient frontier of a sweep.

For each budget the frontier keeps the run with the lowest final loss; `L(C) = a * C^(-b)` is fitted to those
points by least squares in log-log space (`log L = log a - b log C`). No irreducible-loss term: a small
sweep has too few points to pin one down, so the exponent describes the range swept, not an asymptote.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class PowerLaw:
    """`loss = a * compute ** (-b)` and how well it fits (R² in log space)."""

    a: float
    b: float
    r2: float
    points: int

    def __call__(self, compute: np.ndarray) -> np.ndarray:
        return self.a * np.asarray(compute, np.float64) ** (-self.b)

    def describe(self) -> str:
        return (f"loss = {self.a:.4g} * C^(-{self.b:.4f}) (R^2 {self.r2:.3f} in log space, {self.points} frontier "
                "points)")


def frontier(flops: Sequence[float], budgets: Sequence[float], losses: Sequence[float]
             ) -> tuple[np.ndarray, np.ndarray]:
    """(compute, loss) of the best run per budget, in increasing compute (`flops` is what each run spent)."""
    best: dict[float, tuple[float, float]] = {}
    for c, budget, loss in zip(flops, budgets, losses):
        if budget not in best or loss < best[budget][1]:
            best[budget] = (c, loss)
    pairs = sorted(best.values())
    return np.array([p[0] for p in pairs], np.float64), np.array([p[1] for p in pairs], np.float64)


def fit_power_law(compute: np.ndarray, loss: np.ndarray) -> PowerLaw:
    """Least-squares fit of `log loss = log a - b log compute` on two or more points with positive values."""
    compute, loss = np.asarray(compute, np.float64), np.asarray(loss, np.float64)
    if len(compute) < 2 or len(np.unique(compute)) < 2:
        raise ValueError(f"a power law needs at least two distinct compute values, got {compute.tolist()}: sweep more "
                         "budgets")
    if np.any(compute <= 0) or np.any(loss <= 0) or not np.all(np.isfinite(loss)):
        raise ValueError(f"a power law needs positive, finite compute and loss; got losses {loss.tolist()}")
    x, y = np.log(compute), np.log(loss)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    spread = np.sum((y - y.mean()) ** 2)
    r2 = 1.0 - np.sum(residual ** 2) / spread if spread > 0 else 1.0
    return PowerLaw(a=float(np.exp(intercept)), b=float(-slope), r2=float(r2), points=len(x))
