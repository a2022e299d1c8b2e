"""What a checkpoint *is* versus how it is *run*.

A model config (`DiTConfig`, `VAEConfig`) mixes two kinds of fields: architecture fields fix the parameter tree
and the function it computes (widths, depths, eps, ...), so a checkpoint carries them; execution fields choose
how that function is evaluated (parameter and compute dtype, attention backend, remat policy, scanning) and may
differ between a TPU training run and a CPU test of the same checkpoint. Execution fields are declared with
`execution_field`; `architecture(cfg)` derives the rest, so converters and checkpoint checks never list fields
by hand (see docs/design.md, "Configs").
"""

from __future__ import annotations

import dataclasses
from typing import Any

_EXECUTION = "execution"


def execution_field(default: Any) -> Any:
    """A dataclass field that says how the model runs, not what it is."""
    return dataclasses.field(default=default, metadata={_EXECUTION: True})


def is_execution_field(field: dataclasses.Field) -> bool:
    return bool(field.metadata.get(_EXECUTION, False))


def architecture(cfg: Any) -> dict[str, Any]:
    """The architecture fields of a model config as `{name: value}` (execution fields left out)."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if not is_execution_field(f)}


def execution(cfg: Any) -> dict[str, Any]:
    """The execution fields of a model config as `{name: value}`."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if is_execution_field(f)}
