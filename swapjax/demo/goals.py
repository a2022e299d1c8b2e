"""The demo's headline figures, computed from the evaluation rows and checked against the goals it must reach.

    goals = check_goals(rows)      # rows: `swapjax.evaluate` table rows of the held-out cases
    print(goals_text(goals))        # one line per figure: value, goal, PASS / FAIL (or "reported")

Figures are means over the cases that ran (PSNRs are averaged in dB, as in the evaluation's mean row):
- background PSNR of the model's video *before* the paste-back composite (`bg_psnr_raw`): >= 28 dB;
- its gap to the VAE's own reconstruction of the same pixels (`bg_psnr_vae - bg_psnr_raw`): <= 1 dB, i.e. the
  DiT kept what it was told to keep about as well as the VAE can;
- share of cases whose swapped subject's mean colour is closer to the reference than to the original subject
  (`closer_to_reference`): >= 90 %;
- subject centroid error against the source mask track (`centroid_error`): <= 2 px;
- masked-region PSNR against the ground truth (`masked_psnr`) and the floor of the centroid measure on the
  ground truth (`centroid_error_truth`): reported;
- cases scored: at least `MIN_CASES`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

MIN_CASES = 20


@dataclasses.dataclass(frozen=True)
class Figure:
    """One headline figure; `passed` is None for figures that are reported without a goal."""

    name: str
    value: float
    unit: str
    goal: str
    passed: bool | None


def _mean(rows: Sequence[dict[str, Any]], key: str) -> float:
    values = [float(r[key]) for r in rows if r.get(key) is not None and not math.isnan(float(r[key]))]
    return float(sum(values) / len(values)) if values else math.nan


def check_goals(rows: Sequence[dict[str, Any]], min_cases: int = MIN_CASES) -> list[Figure]:
    """The headline figures of the evaluation `rows` (dicts with the `swapjax.evaluate` columns)."""
    ok = [r for r in rows if r.get("status") == "ok"]
    raw, vae = _mean(ok, "bg_psnr_raw"), _mean(ok, "bg_psnr_vae")
    closer = _mean([{"c": float(bool(r["closer_to_reference"]))} for r in ok if "closer_to_reference" in r], "c")
    centroid = _mean(ok, "centroid_error")
    at_least = lambda value, goal: not math.isnan(value) and value >= goal  # noqa: E731  (a missing figure fails)
    at_most = lambda value, goal: not math.isnan(value) and value <= goal  # noqa: E731
    return [
        Figure("held-out pairs scored", float(len(ok)), "", f">= {min_cases}", len(ok) >= min_cases),
        Figure("background PSNR before the composite", raw, "dB", ">= 28 dB", at_least(raw, 28.0)),
        Figure("VAE reconstruction PSNR, same pixels", vae, "dB", "baseline", None),
        Figure("gap to the VAE reconstruction", vae - raw, "dB", "<= 1 dB", at_most(vae - raw, 1.0)),
        Figure("subject colour closer to the reference", 100.0 * closer, "%", ">= 90 %", at_least(closer, 0.9)),
        Figure("subject centroid error", centroid, "px", "<= 2 px", at_most(centroid, 2.0)),
        Figure("centroid error of the ground truth", _mean(ok, "centroid_error_truth"), "px", "floor", None),
        Figure("masked-region PSNR vs ground truth", _mean(ok, "masked_psnr"), "dB", "reported", None),
    ]


def all_passed(figures: Sequence[Figure]) -> bool:
    """True when every figure with a goal passed."""
    return all(f.passed for f in figures if f.passed is not None)


def goals_text(figures: Sequence[Figure]) -> str:
    """A Markdown table of the figures: name | value | goal | result."""
    lines = ["| figure | value | goal | result |", "|---|---|---|---|"]
    for f in figures:
        value = "nan" if math.isnan(f.value) else (f"{f.value:.0f}" if not f.unit else f"{f.value:.2f} {f.unit}")
        result = "" if f.passed is None else ("PASS" if f.passed else "FAIL")
        lines.append(f"| {f.name} | {value} | {f.goal} | {result} |")
    return "\n".join(lines) + "\n"
