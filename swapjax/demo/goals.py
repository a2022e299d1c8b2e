"""The demo's headline figures, per set of cases, checked against the goals each set must reach.

    sets = check_sets(rows)      # rows: `swapjax.evaluate` table rows; {"heldout": [Figure, ...], "infamily": ...}
    print(goals_text(sets))      # a table per set, held-out families first: value, goal, PASS / FAIL / reported

A row's set is its `set` column (`swapjax.evaluate.cases.SETS`; a row without one counts as in family). Figures
are means over the set's cases that ran (PSNRs are averaged in dB, as in the evaluation's mean row):
- pairs scored: at least `Goals.min_cases`;
- background PSNR of the model's video *before* the paste-back composite (`bg_psnr_raw`) and the VAE's own
  reconstruction of the same pixels (`bg_psnr_vae`), and the gap between them (`bg_psnr_vae - bg_psnr_raw`): how
  much worse than the VAE itself the DiT kept what it was told to keep;
- share of cases whose swapped subject's mean colour is closer to the reference than to the original subject
  (`closer_to_reference`);
- subject centroid error against the source's exact subject track (`centroid_error`), and the floor of that
  measure on the ground truth (`centroid_error_truth`, reported);
- masked-region PSNR against the ground truth (`masked_psnr`): reported.

Goals (`GOALS`): held-out families (`heldout`, the issue's): >= 20 pairs, colour closer >= 90 %, centroid
<= 2 px, gap to the VAE <= 3 dB, background PSNR reported; in family (`infamily`): >= 20 pairs, background
PSNR >= 28 dB, gap <= 1 dB, colour closer >= 90 %, centroid <= 2 px.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

from swapjax.evaluate.cases import SET_TITLES, SETS


@dataclasses.dataclass(frozen=True)
class Goals:
    """The goals of one set of cases; a `None` goal makes its figure reported only."""

    min_cases: int = 20
    bg_psnr_min: float | None = 28.0  # dB, background before the composite
    vae_gap_max: float | None = 1.0  # dB, VAE reconstruction minus the model's background
    closer_min: float | None = 0.9  # share of cases
    centroid_max: float | None = 2.0  # px


GOALS = {"heldout": Goals(bg_psnr_min=None, vae_gap_max=3.0), "infamily": Goals()}
DEFAULT_SET = "infamily"  # the set of a row without a `set` column


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


def _figure(name: str, value: float, unit: str, bound: float | None, at_least: bool) -> Figure:
    """A figure against `bound` (>= it when `at_least`, else <=; a NaN value fails), reported when None."""
    if bound is None:
        return Figure(name, value, unit, "reported", None)
    shown = f"{100 * bound:.0f} %" if unit == "%" else f"{bound:g} {unit}".strip()
    limit = 100 * bound if unit == "%" else bound
    ok = not math.isnan(value) and (value >= limit if at_least else value <= limit)
    return Figure(name, value, unit, f"{'>=' if at_least else '<='} {shown}", ok)


def check_goals(rows: Sequence[dict[str, Any]], goals: Goals = GOALS[DEFAULT_SET]) -> list[Figure]:
    """The headline figures of one set's evaluation `rows` (dicts with the `swapjax.evaluate` columns)."""
    ok = [r for r in rows if r.get("status") == "ok"]
    raw, vae = _mean(ok, "bg_psnr_raw"), _mean(ok, "bg_psnr_vae")
    closer = _mean([{"c": float(bool(r["closer_to_reference"]))} for r in ok if "closer_to_reference" in r], "c")
    return [
        Figure("pairs scored", float(len(ok)), "", f">= {goals.min_cases}", len(ok) >= goals.min_cases),
        _figure("background PSNR before the composite", raw, "dB", goals.bg_psnr_min, True),
        Figure("VAE reconstruction PSNR, same pixels", vae, "dB", "baseline", None),
        _figure("gap to the VAE reconstruction", vae - raw, "dB", goals.vae_gap_max, False),
        _figure("subject colour closer to the reference", 100.0 * closer, "%", goals.closer_min, True),
        _figure("subject centroid error", _mean(ok, "centroid_error"), "px", goals.centroid_max, False),
        Figure("centroid error of the ground truth", _mean(ok, "centroid_error_truth"), "px", "floor", None),
        Figure("masked-region PSNR vs ground truth", _mean(ok, "masked_psnr"), "dB", "reported", None),
    ]


def check_sets(rows: Sequence[dict[str, Any]], goals: dict[str, Goals] | None = None) -> dict[str, list[Figure]]:
    """`check_goals` per set present in `rows` (held-out families first), each against its goals (`GOALS`)."""
    goals = GOALS if goals is None else goals
    by_set: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_set.setdefault(row.get("set") or DEFAULT_SET, []).append(row)
    order = [s for s in SETS if s in by_set] + sorted(set(by_set) - set(SETS))
    return {s: check_goals(by_set[s], goals.get(s, goals[DEFAULT_SET])) for s in order}


def all_passed(sets: dict[str, Sequence[Figure]]) -> bool:
    """True when every figure with a goal passed, in every set."""
    return all(f.passed for figures in sets.values() for f in figures if f.passed is not None)


def table_text(figures: Sequence[Figure]) -> str:
    """A Markdown table of the figures: name | value | goal | result."""
    lines = ["| figure | value | goal | result |", "|---|---|---|---|"]
    for f in figures:
        value = "nan" if math.isnan(f.value) else (f"{f.value:.0f}" if not f.unit else f"{f.value:.2f} {f.unit}")
        result = "" if f.passed is None else ("PASS" if f.passed else "FAIL")
        lines.append(f"| {f.name} | {value} | {f.goal} | {result} |")
    return "\n".join(lines) + "\n"


def goals_text(sets: dict[str, Sequence[Figure]]) -> str:
    """A titled table per set, in the order of `sets` (`check_sets`: held-out families first)."""
    titles = {"heldout": "Held-out families", "infamily": "In family"}
    parts = []
    for name, figures in sets.items():
        title = titles.get(name, SET_TITLES.get(name, name))
        parts.append(f"### {title} ({figures[0].value:.0f} pairs scored)\n\n{table_text(figures)}")
    return "\n".join(parts)
