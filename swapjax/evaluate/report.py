"""The evaluation's files, each written atomically (`swapjax.atomic`):

    OUT/metrics.csv        one row per case, every column of `scores.COLUMNS` (empty when not measured)
    OUT/metrics.md         the same as a Markdown table (columns nobody measured left out) with a `mean` row
                           over the cases that ran (true/false columns as the share that is true), and the
                           failed cases' errors listed under it
    OUT/contact_sheet.png  one row per case that ran: source | swapped region | reference | result | truth

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
from swapjax.evaluate.scores import COLUMNS

CSV_NAME, MARKDOWN_NAME, SHEET_NAME = "metrics.csv", "metrics.md", "contact_sheet.png"
SHEET_TITLES = ("source", "region", "reference", "result", "truth")
_LABEL = 16  # pixels of the name strip above each contact-sheet row


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
    for col in COLUMNS[2:]:
        values = [r[col] for r in ok if r.get(col) is not None]
        if values and all(isinstance(v, (bool, np.bool_)) for v in values):
            out[col] = float(np.mean(values))
        elif values and all(_number(v) for v in values):
            finite = [float(v) for v in values if not math.isnan(float(v))]
            out[col] = float(np.mean(finite)) if finite else math.nan
    return out


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
    mean = summary(rows)
    used = [c for c in COLUMNS if c != "error" and any(r.get(c) is not None for r in rows)]
    lines = ["| " + " | ".join(used) + " |", "|" + "---|" * len(used)]
    for row in [*rows, mean]:
        lines.append("| " + " | ".join(_cell(row.get(c), 4) for c in used) + " |")
    failed = [r for r in rows if r.get("error")]
    if failed:
        lines += ["", "Failed cases:", ""] + [f"- `{r['name']}`: {r['error']}" for r in failed]
    return "\n".join(lines) + "\n"


def contact_sheet(named_rows: Sequence[tuple[str, np.ndarray]], tile: int) -> np.ndarray:
    """uint8 `[_LABEL + n * (_LABEL + tile), 5 * tile, 3]`: a title strip, then each case's name over its row
    (`scores.contact_row`, `[tile, 5 * tile, 3]`)."""
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
    """Writes the CSV, the Markdown and (when a case ran) the contact sheet into `out_dir`; returns their paths."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in ((CSV_NAME, csv_text(rows)), (MARKDOWN_NAME, markdown_text(rows))):
        with atomic_write(out_dir / name) as tmp:
            tmp.write_text(text, encoding="utf-8")
        written.append(out_dir / name)
    if named_rows:
        video_io.write_image(out_dir / SHEET_NAME, contact_sheet(named_rows, tile))
        written.append(out_dir / SHEET_NAME)
    return written
