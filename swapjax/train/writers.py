"""Where training output goes: one JSON line per logged step and TensorBoard event files (tensorboardX, no
TensorFlow needed), written by process 0 only; `log` prints a line to stderr from process 0.

`WORKDIR/metrics.jsonl` is appended to across restarts: a resumed run repeats the steps after its checkpoint,
so a step may appear more than once and the last line for a step is the one that counts. A line cut short by a
crash is removed when the file is opened again.
"""

from __future__ import annotations

import json
import math
import pathlib
import sys
from typing import Any, Mapping

import jax


def log(message: str) -> None:
    """One line to stderr from process 0."""
    if jax.process_index() == 0:
        print(message, file=sys.stderr, flush=True)


def _number(value: Any) -> Any:
    value = float(value) if not isinstance(value, (bool, int)) else value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/Inf: "nan", "inf", "-inf"
    return value


def read_metrics(path: str | pathlib.Path) -> dict[int, dict]:
    """`metrics.jsonl` -> {step: the last record logged for it}."""
    out = {}
    for line in pathlib.Path(path).read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            out[record["step"]] = record
    return out


class MetricsWriter:
    """JSONL + TensorBoard writer (a no-op where `enabled` is False)."""

    def __init__(self, workdir: str | pathlib.Path, *, enabled: bool = True, prefix: str = ""):
        self.enabled, self.prefix = enabled, prefix
        if not enabled:
            return
        workdir = pathlib.Path(workdir)
        self.path = workdir / f"{prefix}metrics.jsonl"
        if self.path.exists():
            text = self.path.read_bytes()
            if text and not text.endswith(b"\n"):  # a crash cut the last line short: drop it
                self.path.write_bytes(text[:text.rfind(b"\n") + 1])
        self.file = open(self.path, "a")
        from tensorboardX import SummaryWriter

        self.tb = SummaryWriter(str(workdir / "tensorboard" / (prefix.rstrip("_") or "dit")))

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), **{k: _number(v) for k, v in metrics.items()}}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.tb.add_scalar(key, value, step)

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            self.tb.close()
