"""The evaluation's files, each written atomically (`swapjax.atomic`):

    OUT/metrics.csv        one row per case, every column of `scores.COLUMNS` (empty when not measured)
    OUT/metrics.md         the same as a Markdown table (columns nobody measured left out) with a `mean` row
                           over the cases that ran (true/false columns as the share that is true), then one
                           `mean` row per set of cases when the cases carry a `set` label (`cases.SETS`, the
                           held-out families first), and the failed cases' errors listed under it
    OUT/contact_sheet.png  one row per case: source | swapped region | reference | result | truth, worst first
                           (failed cases, then `masked_psnr` ascending, then cases without it), each under a
                           strip naming the case, its set, mask style, reference framing and masked-region PSNR
    OUT/contact_sheet_SET.png   the same for the cases of one set (`heldout`, `infamily`), when labelled

Numbers are written with 6 significant digits in the CSV and 4 in the Markdown; PSNR of identical pixels is
`inf`.
"""

from __future__ import annotations

import csv
import io
import math
import pathlib
from typing import Any, Sequence

import cv2
import numpy as np

from swapjax.atomic import atomic_write
from swapjax.data import video_io
from swapjax.data.reference import NEUTRAL_GREY
from swapjax.evaluate.cases import LABELS, SET_TITLES, SETS
from swapjax.evaluate.scores import COLUMNS

CSV_NAME, MARKDOWN_NAME, SHEET_NAME = "metrics.csv", "metrics.md", "contact_sheet.png"
SHEET_TITLES = ("source", "region", "reference", "result", "truth")
SHEET_SCORE = "masked_psnr"  # the contact sheets put the lowest first
_LABEL = 16  # pixels of the name strip above each contact-sheet row
_NUMERIC = tuple(c for c in COLUMNS if c not in ("name", "status", *LABELS, "error"))


def set_sheet_name(set_name: str) -> str:
    """The contact sheet of one set of cases, e.g. `contact_sheet_heldout.png`."""
    return f"contact_sheet_{set_name}.png"


def output_names() -> tuple[str, ...]:
    """Every file name `write_report` may write (an evaluation refuses to replace them without --overwrite)."""
    return (CSV_NAME, MARKDOWN_NAME, SHEET_NAME, *map(set_sheet_name, SETS))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _cell(value: Any, digits: int) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if _number(value):
        value = float(value)
        return "nan" if math.isnan(value) else ("inf" if math.isinf(value) else f"{value:.{digits}g}")
    return str(value)


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The `mean` row over the rows whose status is ok: means of the numeric columns (NaN cells skipped; an
    inf makes the mean inf) and the share of true values of the true/false columns."""
    ok = [r for r in rows if r.get("status") == "ok"]
    out: dict[str, Any] = {"name": "mean", "status": f"{len(ok)}/{len(rows)} ok"}
    for col in _NUMERIC:
        values = [r[col] for r in ok if r.get(col) is not None]
        if values and all(isinstance(v, (bool, np.bool_)) for v in values):
            out[col] = float(np.mean(values))
        elif values and all(_number(v) for v in values):
            finite = [float(v) for v in values if not math.isnan(float(v))]
            out[col] = float(np.mean(finite)) if finite else math.nan
    return out


def set_names(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The sets the rows are labelled with: those of `cases.SETS` first, in its order, then any other."""
    present = {r["set"] for r in rows if r.get("set")}
    return [s for s in SETS if s in present] + sorted(present - set(SETS))


def set_summaries(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One `mean` row per set (`summary` of its rows, its `set` cell naming it); none for unlabelled rows."""
    return [{**summary([r for r in rows if r.get("set") == name]), "set": name} for name in set_names(rows)]


def csv_text(rows: Sequence[dict[str, Any]]) -> str:
    """The CSV table: a header of `COLUMNS`, then one line per row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_cell(row.get(col), 6) for col in COLUMNS])
    return buffer.getvalue()


def markdown_text(rows: Sequence[dict[str, Any]]) -> str:
    """The Markdown table (see the module docstring)."""
    means = [summary(rows), *set_summaries(rows)]
    used = [c for c in COLUMNS if c != "error" and any(r.get(c) is not None for r in rows)]
    lines = ["| " + " | ".join(used) + " |", "|" + "---|" * len(used)]
    for row in [*rows, *means]:
        lines.append("| " + " | ".join(_cell(row.get(c), 4) for c in used) + " |")
    failed = [r for r in rows if r.get("error")]
    if failed:
        lines += ["", "Failed cases:", ""] + [f"- `{r['name']}`: {r['error']}" for r in failed]
    return "\n".join(lines) + "\n"


def sheet_order(rows: Sequence[dict[str, Any]]) -> list[int]:
    """Indices of `rows`, worst first: failed cases, then `SHEET_SCORE` ascending, then rows without it (NaN or
    not measured); ties keep the rows' order."""
    def key(i: int) -> tuple[int, float]:
        row = rows[i]
        if row.get("status") != "ok":
            return 0, 0.0
        value = row.get(SHEET_SCORE)
        if not _number(value) or math.isnan(float(value)):
            return 2, 0.0
        return 1, float(value)

    return sorted(range(len(rows)), key=key)


def sheet_label(row: dict[str, Any]) -> str:
    """A case's strip on the sheet: its name, set title, mask style, reference framing and score (or FAILED)."""
    parts = [str(row.get("name", "?"))]
    if row.get("set"):
        parts.append(SET_TITLES.get(row["set"], row["set"]))
    parts += [row[k] for k in LABELS[1:] if row.get(k)]
    value = row.get(SHEET_SCORE)
    if row.get("status") != "ok":
        parts.append("FAILED")
    elif _number(value):
        parts.append(f"masked {_cell(value, 3)} dB")
    return " | ".join(parts)


def sheet_entries(rows: Sequence[dict[str, Any]], named_rows: Sequence[tuple[str, np.ndarray]], tile: int
                  ) -> list[tuple[str, np.ndarray]]:
    """(label, uint8 `[tile, 5 * tile, 3]`) per case in `sheet_order`: a case that ran shows its row of
    `named_rows` (name, `scores.contact_row`), a failed one a grey row with its error."""
    images = dict(named_rows)
    entries = []
    for i in sheet_order(rows):
        row = rows[i]
        if row.get("status") == "ok" and row.get("name") in images:
            entries.append((sheet_label(row), images[row["name"]]))
        elif row.get("status") != "ok":
            entries.append((sheet_label(row), _failed_tile(str(row.get("error", "")), tile)))
    return entries


def _failed_tile(error: str, tile: int) -> np.ndarray:
    """uint8 `[tile, 5 * tile, 3]`: dark grey with the start of the error written on it."""
    image = np.full((tile, len(SHEET_TITLES) * tile, 3), NEUTRAL_GREY // 3, np.uint8)
    width = len(SHEET_TITLES) * tile // 7  # characters per line at this font
    for k in range(min(3, math.ceil(len(error) / width))):
        cv2.putText(image, error[k * width:(k + 1) * width], (4, 16 + 14 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return image


def contact_sheet(named_rows: Sequence[tuple[str, np.ndarray]], tile: int) -> np.ndarray:
    """uint8 `[_LABEL + n * (_LABEL + tile), 5 * tile, 3]`: a title strip, then each case's label over its row
    (`scores.contact_row`, `[tile, 5 * tile, 3]`), in the order given (`sheet_entries` orders and labels)."""
    width = len(SHEET_TITLES) * tile
    strips = [_label_strip([(title, i * tile) for i, title in enumerate(SHEET_TITLES)], width)]
    for name, row in named_rows:
        strips += [_label_strip([(name, 0)], width), row]
    return np.concatenate(strips, axis=0)


def _label_strip(labels: list[tuple[str, int]], width: int) -> np.ndarray:
    strip = np.full((_LABEL, width, 3), NEUTRAL_GREY // 2, np.uint8)
    for text, x in labels:
        cv2.putText(strip, text, (x + 3, _LABEL - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return strip


def write_report(out_dir: str | pathlib.Path, rows: Sequence[dict[str, Any]],
                 named_rows: Sequence[tuple[str, np.ndarray]], tile: int) -> list[pathlib.Path]:
    """Writes the CSV, the Markdown and (when a case has a sheet row) the contact sheets into `out_dir`: all
    cases, then one per set (see the module docstring); returns their paths. `named_rows`: (case name, uint8
    `[tile, 5 * tile, 3]`) of the cases that ran."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in ((CSV_NAME, csv_text(rows)), (MARKDOWN_NAME, markdown_text(rows))):
        with atomic_write(out_dir / name) as tmp:
            tmp.write_text(text, encoding="utf-8")
        written.append(out_dir / name)
    sheets = [(SHEET_NAME, rows)] + [(set_sheet_name(s), [r for r in rows if r.get("set") == s])
                                     for s in set_names(rows)]
    for name, chosen in sheets:
        entries = sheet_entries(chosen, named_rows, tile)
        if entries and named_rows:
            video_io.write_image(out_dir / name, contact_sheet(entries, tile))
            written.append(out_dir / name)
    return written
