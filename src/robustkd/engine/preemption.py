"""Preemption: a cluster's signal before it stops a job becomes a checkpoint and a clean stop.

The loop runs under a :class:`PreemptionGuard`, which records the signal instead of dying; at
the next step every rank learns whether any rank saw one (:func:`preempted`), and all of them
write the checkpoint of that step and stop with :class:`Preempted`. A rerun resumes there.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import torch

from robustkd.engine.distributed import DistContext, all_reduce_sum
from robustkd.errors import RobustKDError

__all__ = ["PREEMPT_SIGNALS", "Preempted", "PreemptionGuard", "preempted"]

# Signals a cluster sends before it preempts or times out a job (SLURM: SIGTERM, or the
# signal given with `sbatch --signal`, conventionally SIGUSR1).
PREEMPT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(RobustKDError):
    """Training stopped on a preemption signal after writing a checkpoint; rerun to resume."""


class PreemptionGuard:
    """Record a preemption signal instead of dying, so the loop can checkpoint first."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> PreemptionGuard:
        if threading.current_thread() is threading.main_thread():
            for sig in PREEMPT_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.signum = signum

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def preempted(guard: PreemptionGuard, ctx: DistContext) -> bool:
    """Whether any rank received a preemption signal (all ranks then stop at this step)."""
    flag = torch.tensor([0.0 if guard.signum is None else 1.0])
    if ctx.world == 1:
        return bool(flag.item())
    return bool(all_reduce_sum(flag, ctx).item() > 0)
