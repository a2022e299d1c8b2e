"""The trainer's hooks: everything a training run does besides stepping (docs/design.md, "Training").

Each hook is a callable `hook(info: StepInfo) -> Outcome | None`, added to the `Trainer` with its own frequency
(`trainer.add_hook(hook, every=n)`); returning an `Outcome` stops the run after this step.

- `MetricsHook`: one JSONL / TensorBoard record (`writers.MetricsWriter`), every `train.log_every` steps.
- `ProgressHook`: the tqdm bar (process 0), every step.
- `CheckpointHook`: saves every `train.checkpoint_every` steps and at the last step; never a non-finite step
  (those changed nothing, and the last good checkpoint stays the latest); a step is saved once.
- `SigtermHook`: SIGTERM (agreed across processes) saves through the `CheckpointHook` and stops (`PREEMPTED`).
- `NonfiniteHook`: a non-finite step is logged; `train.max_nonfinite_steps` of them in a row stop the run
  (`NONFINITE`) with the step range and the last good checkpoint.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
from typing import Any

import jax
from tqdm import tqdm

from swapjax.entry import Outcome, Status
from swapjax.train.checkpoint import Checkpoints
from swapjax.train.hosts import any_process
from swapjax.train.state import TrainState
from swapjax.train.writers import MetricsWriter, log


@dataclasses.dataclass(frozen=True)
class StepInfo:
    """What the trainer hands a hook after step `step` of `total`: the new state and the step's host metrics."""

    step: int
    total: int
    state: TrainState
    metrics: dict[str, Any]
    steps_per_s: float

    @property
    def finite(self) -> bool:
        return bool(self.metrics["finite"])


class MetricsHook:
    def __init__(self, writer: MetricsWriter):
        self.writer = writer

    def __call__(self, info: StepInfo) -> None:
        self.writer.write(info.step, {**info.metrics, "steps_per_s": info.steps_per_s})


class ProgressHook:
    """A tqdm bar on stderr (process 0 when `enabled`); `close` it when the run ends."""

    def __init__(self, name: str, total: int, start: int, enabled: bool):
        self.bar = tqdm(total=total, initial=start, desc=name, disable=not enabled or jax.process_index() != 0,
                        dynamic_ncols=True, file=sys.stderr)

    def __call__(self, info: StepInfo) -> None:
        self.bar.update(info.step - self.bar.n)
        self.bar.set_postfix(loss=f"{info.metrics['loss']:.4g}", steps_per_s=f"{info.steps_per_s:.2f}")

    def close(self) -> None:
        self.bar.close()


class CheckpointHook:
    """Saves the state with the data iterator's position and the config (asynchronously; `Checkpoints`)."""

    def __init__(self, checkpoints: Checkpoints, data: Any, config: Any):
        self.checkpoints, self.data, self.config, self.saved = checkpoints, data, config, None

    def __call__(self, info: StepInfo) -> None:
        if info.finite and info.step != self.saved:
            self.checkpoints.save(info.step, info.state, self.data, self.config)
            self.saved = info.step


class SigtermHook:
    """Records SIGTERM instead of dying; at the next step every process saves and the run stops. `close`
    restores the previous handler."""

    def __init__(self, name: str, save: CheckpointHook):
        self.name, self.save, self.received = name, save, False
        self.previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        self.received = True

    def __call__(self, info: StepInfo) -> Outcome | None:
        if not any_process(self.received):
            return None
        self.save(info)
        where = self.save.checkpoints.directory
        latest = self.save.checkpoints.latest_step()
        said = (f"saved step {info.step}" if self.save.saved == info.step else
                f"step {info.step} was not finite and is not saved (the latest is {latest})")
        return Outcome(Status.PREEMPTED, f"{self.name}: SIGTERM: {said} in {where}; run the same command again to "
                       "resume", step=info.step)

    def close(self) -> None:
        signal.signal(signal.SIGTERM, self.previous)


class NonfiniteHook:
    """Logs non-finite steps (the step made no update) and stops after `limit` in a row."""

    def __init__(self, name: str, limit: int, checkpoints: Checkpoints):
        self.name, self.limit, self.checkpoints, self.bad_from = name, limit, checkpoints, None

    def __call__(self, info: StepInfo) -> Outcome | None:
        if info.finite:
            self.bad_from = None
            return None
        m, step = info.metrics, info.step
        self.bad_from = self.bad_from or step
        log(f"{self.name}: step {step}: non-finite loss or gradient, no update (streak {m['nonfinite_streak']}, "
            f"total {m['nonfinite_total']})")
        if m["nonfinite_streak"] < self.limit:
            return None
        last = self.checkpoints.latest_step()
        return Outcome(Status.NONFINITE, (
            f"{self.name}: steps {self.bad_from}-{step} had a non-finite loss or gradient ({self.limit} in a row): "
            f"stopped. No update was made on those steps; the last good checkpoint is "
            f"{'step ' + str(last) if last is not None else 'none'} in {self.checkpoints.directory}. Check the data "
            "of those steps, or lower optimizer.lr."), step=step)
