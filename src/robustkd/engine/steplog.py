"""The per-step loss log of a training run, kept on the device between boundaries.

Copying each step's loss components to the host (``.cpu()``, ``.item()``) synchronises the
host with the GPU: the CPU then cannot queue step n + 1 while the GPU still runs step n. The
loop therefore adds each step's components to a :class:`StepLog` as a device tensor and flushes
it only at boundaries (a progress line, a checkpoint, a preemption, the run's end): one host copy
(and, data-parallel, one all-reduce) for all steps since the last flush. The guarantees of a
per-step check hold at the boundaries: a non-finite component stops the run naming the first
such step and component, before any checkpoint of later weights is written, and the log file's
lines are the same as if they had been written step by step.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch

from robustkd.atomic import atomic_write_text, writing
from robustkd.engine.checkpoint import NonFiniteError

__all__ = ["StepLog", "truncate_log"]

log = logging.getLogger(__name__)


@dataclass
class _Step:
    step: int  # steps done before this one (0-based index of the step)
    epoch: int  # 0-based
    lr: float
    names: tuple[str, ...]
    values: torch.Tensor  # (C,) float32 on the device, detached


class StepLog:
    """Loss components of the steps since the last flush; written as JSON lines on flush.

    Each line is ``{"step": n, "epoch": e, "lr": lr, <component>: value, ...}`` with ``n`` the
    1-based number of the step, as the loop wrote it before.
    """

    def __init__(
        self,
        file: TextIO,
        reduce: Callable[[torch.Tensor], torch.Tensor] = lambda v: v,
        checkpoint_path: object = None,
        checkpoint_step: int | None = None,
    ) -> None:
        """Start an empty log.

        Args:
            file: Where lines go (rank 0's ``log.jsonl``; ``os.devnull`` on other ranks).
            reduce: Averages a (steps, C) tensor over data-parallel ranks (identity for one
                process); every rank must flush at the same steps.
            checkpoint_path: Named in the error of a non-finite loss.
            checkpoint_step: The step of the checkpoint at ``checkpoint_path`` this run resumed
                from, or None when the run has none yet. The loop sets
                :attr:`checkpoint_step` after each checkpoint it writes, so the error of a
                non-finite loss says whether a checkpoint of finite weights exists.
        """
        self.file, self.reduce, self.checkpoint_path = file, reduce, checkpoint_path
        self.checkpoint_step = checkpoint_step
        self.pending: list[_Step] = []
        self.last: dict[str, float] = {}

    def add(self, step: int, epoch: int, lr: float, losses: Mapping[str, torch.Tensor]) -> None:
        """Keep one step's components on their device (no host synchronisation).

        Args:
            step: Steps done before this one.
            epoch: The step's epoch (0-based).
            lr: The learning rate the step used.
            losses: Scalar tensors by component name (``loss`` first).
        """
        values = torch.stack([v.detach().float() for v in losses.values()])  # (C,)
        self.pending.append(_Step(step, epoch, lr, tuple(losses), values))

    def flush(self) -> dict[str, float]:
        """Copy the pending components to the host at once, check and write them.

        Returns:
            The last step's components (empty if nothing was ever logged).

        Raises:
            NonFiniteError: A component is NaN or infinite; names the first such step (0-based
                index, as the run's checkpoints count steps), its epoch and components. Lines
                of the steps before it are written, none after.
            OutputError: The log file cannot be written (a full disk: named with the file).
        """
        if not self.pending:
            return self.last
        pending, self.pending = self.pending, []
        widths = {len(p.names) for p in pending}
        if len(widths) == 1:
            rows = self.reduce(torch.stack([p.values for p in pending])).cpu().tolist()  # (S, C)
        else:  # components changed between steps (not seen in practice): one reduce per step
            rows = [self.reduce(p.values[None]).cpu()[0].tolist() for p in pending]
        lines = []
        for p, row in zip(pending, rows, strict=True):
            bad = [k for k, v in zip(p.names, row, strict=True) if not math.isfinite(v)]
            if bad:
                self._write(lines)
                values = [v for k, v in zip(p.names, row, strict=True) if k in bad]
                raise NonFiniteError(
                    f"non-finite loss at step {p.step} (epoch {p.epoch}): component(s) {bad} = "
                    f"{values}; training stopped: {self._checkpoint_state()}. Lower the "
                    "learning rate or set clip_grad in the training config, then rerun"
                )
            self.last = dict(zip(p.names, row, strict=True))
            line = {"step": p.step + 1, "epoch": p.epoch, "lr": p.lr, **self.last}
            lines.append(json.dumps(line) + "\n")
        self._write(lines)
        return self.last

    def _write(self, lines: list[str]) -> None:
        """Append ``lines`` to the log file; a full disk is named with the file."""
        with writing(str(getattr(self.file, "name", "the step log"))):
            self.file.write("".join(lines))
            self.file.flush()

    def _checkpoint_state(self) -> str:
        """What the run's checkpoint holds now, for the error of a non-finite loss."""
        if self.checkpoint_step is not None:
            where = f" ({self.checkpoint_path})" if self.checkpoint_path else ""
            return (
                f"the last checkpoint{where}, of step {self.checkpoint_step}, holds finite "
                "weights (a rerun with the same config resumes there)"
            )
        where = f" (it would be {self.checkpoint_path})" if self.checkpoint_path else ""
        return f"no checkpoint was written before it{where}, so a rerun starts afresh"


def truncate_log(path: Path, step: int) -> None:
    """Keep only the log lines of steps already done (a resumed run redoes the rest).

    A line that is not a JSON record with a step (the half-written last line of a killed job)
    is dropped with a warning naming the file.
    """
    if not path.exists():
        return
    kept, dropped = [], 0
    for ln in path.read_text(errors="replace").splitlines():
        try:
            done = int(json.loads(ln)["step"]) <= step
        except (ValueError, KeyError, TypeError):
            dropped += bool(ln)
            continue
        if done:
            kept.append(ln)
    if dropped:
        log.warning("%s: dropped %d unreadable line(s) (a killed job's last write?)", path, dropped)
    atomic_write_text(path, "".join(f"{ln}\n" for ln in kept))
