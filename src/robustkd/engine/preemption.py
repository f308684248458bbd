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
import torch.distributed as dist

from robustkd.engine.distributed import DistContext
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


# The host-side process group of the flag, per job group (made by every rank at its first check).
_HOST_GROUP: dict[int, Any] = {}


def _host_group() -> Any:
    """A gloo group beside the job's (NCCL on GPUs): its all-reduce never touches a GPU."""
    key = id(dist.group.WORLD)
    if key not in _HOST_GROUP:
        gloo = dist.get_backend() == "gloo"
        _HOST_GROUP.clear()
        _HOST_GROUP[key] = None if gloo else dist.new_group(backend="gloo")
    return _HOST_GROUP[key]


def preempted(guard: PreemptionGuard, ctx: DistContext) -> bool:
    """Whether any rank received a preemption signal (all ranks then stop at this step).

    Under torchrun every rank must call it at the same step: the flag is all-reduced (summed)
    across ranks, so a signal seen by one rank stops them all at that step.

    The check runs every step and is step-exact, yet never synchronises a GPU with the host:
    one process reads its own flag (a Python attribute, no tensor); several all-reduce a CPU
    tensor in a gloo group (the job's own group when it is gloo, a gloo group beside NCCL
    otherwise), a host-only exchange of 4 bytes that leaves the GPU's queue running. (Through
    NCCL the flag would cross to the GPU and back each step: a device synchronisation.)
    """
    if ctx.world == 1:
        return guard.signum is not None
    flag = torch.tensor([0 if guard.signum is None else 1], dtype=torch.int32)
    dist.all_reduce(flag, group=_host_group())
    return bool(flag.numpy()[0] > 0)
