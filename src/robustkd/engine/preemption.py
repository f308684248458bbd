"""Preemption: a cluster's signal before it stops a job becomes a checkpoint and a clean stop.

The loop runs under a :class:`PreemptionGuard`, which records the signal instead of dying; at
the next step every rank learns whether any rank saw one (:func:`preempted`), and all of them
write the checkpoint of that step and stop with :class:`Preempted`. A rerun resumes there.

The signal reaches every process of a job (SLURM signals them all), so the other processes must
survive it: data-loader workers ignore it and a torchrun launcher relays it to the ranks (see
:mod:`robustkd.engine.signals`).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import torch

from robustkd.engine.distributed import DistContext, all_reduce_sum
from robustkd.engine.signals import PREEMPT_SIGNALS, Preempted

__all__ = ["PREEMPT_SIGNALS", "Preempted", "PreemptionGuard", "preempted"]


class PreemptionGuard:
    """Record a preemption signal instead of dying, so the loop can checkpoint first.

    A ``with`` block; it installs its handler only in the main thread (signals are delivered
    there). On leaving the block the previous handlers come back, unless a signal was recorded:
    then the process is stopping with :class:`Preempted`, and further copies of the signal (SLURM
    signals every process, and a torchrun launcher forwards its own copy to the ranks) are still
    only recorded, so that none kills the process before it has stopped.

    Attributes:
        signum: The last preemption signal received, or None.
    """

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
        if self.signum is None:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)


def preempted(guard: PreemptionGuard, ctx: DistContext) -> bool:
    """Whether any rank received a preemption signal (all ranks then stop at this step).

    Under torchrun every rank must call it at the same step: the flag is all-reduced (summed)
    across ranks, so a signal seen by one rank stops them all at that step.
    """
    flag = torch.tensor([0.0 if guard.signum is None else 1.0])
    if ctx.world == 1:
        return bool(flag.item())
    return bool(all_reduce_sum(flag, ctx).item() > 0)
