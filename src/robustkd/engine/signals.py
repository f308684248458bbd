"""Who reacts to a cluster's preemption signal: the training process, not its helpers.

SLURM signals every process of a job step at once (time limit, preemption, ``scancel``): the
job's main process, torchrun and its ranks, and each one's data-loader workers. Only the process
that trains may decide what a preemption means (write the checkpoint of the current step, then
stop with :class:`Preempted`, see :mod:`robustkd.engine.preemption`); the others must not die of
it first:

- Data-loader workers ignore the signals (:func:`shielded_worker_init`, the ``worker_init_fn``
  of every loader the engine builds). Their main process stops them when it stops
  (:func:`robustkd.engine.data.closing_loader`); a worker killed by the signal instead would
  make the main process fail at its next batch (torch raises ``DataLoader worker (pid N) is
  killed by signal: Terminated``) before any checkpoint is written.
- The launcher of a torchrun job (:func:`robustkd.engine.distributed.run_job`) relays the
  signals to the ranks and waits for them (:class:`SignalForwarder`) instead of dying at once,
  and torchrun's agent ignores them (:func:`robustkd.engine.ranks.agent`).

Once a process has recorded a preemption signal it keeps recording further ones until it exits:
the same signal arrives more than once (SLURM's own, then the launcher's copy) and a late copy
must not kill a process that is already writing its checkpoint or stopping.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robustkd.errors import RobustKDError

__all__ = ["PREEMPT_SIGNALS", "Preempted", "SignalForwarder", "shielded_worker_init"]

# Signals a cluster sends before it preempts or times out a job (SLURM: SIGTERM, or the
# signal given with `sbatch --signal`, conventionally SIGUSR1).
PREEMPT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(RobustKDError):
    """Training stopped on a preemption signal after writing a checkpoint; rerun to resume."""


def _ignore_then(init: Callable[[int], None] | None, worker_id: int) -> None:
    for sig in PREEMPT_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if init is not None:
        init(worker_id)


def shielded_worker_init(
    init: Callable[[int], None] | None = None,
) -> Callable[[int], None]:
    """A DataLoader ``worker_init_fn`` that makes the worker ignore :data:`PREEMPT_SIGNALS`.

    torch runs it in each worker after installing its own handlers (its SIGTERM handler kills a
    worker signalled by anyone but its parent), so the worker then survives the job's signals
    and exits when its main process shuts the loader down, or dies with it (torch's workers
    watch their parent).

    Args:
        init: A ``worker_init_fn`` to run after it (called with the worker's id, 0 .. workers
            - 1), or None.

    Returns:
        The composed function; a picklable partial, so it also works with the ``spawn`` start
        method.
    """
    return functools.partial(_ignore_then, init)


class SignalForwarder:
    """Relay the preemption signals this process receives to child processes listed in files.

    A ``with`` block in the main thread (elsewhere it does nothing): while it is open, SIGTERM
    and SIGUSR1 no longer end this process; each is recorded (:attr:`signum`) and sent on to
    every process whose id is in a file ``<pid_dir>/*.pid`` (one decimal id each; the ranks of a
    torchrun job write theirs when they start). A process that writes its file after the signal
    gets it from :meth:`forward`, which the caller runs while it waits.

    Once a signal was received the handler stays installed after the block: this process is
    stopping, and later copies of the signal must not kill it before it reports why.

    Attributes:
        signum: The last preemption signal received, or None.
    """

    def __init__(self, pid_dir: str | os.PathLike[str]) -> None:
        """Watch ``pid_dir`` for the children to signal.

        Args:
            pid_dir: Folder of the children's ``*.pid`` files (it may not exist yet).
        """
        self.signum: int | None = None
        self._pid_dir = Path(pid_dir)
        self._sent: set[int] = set()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalForwarder:
        if threading.current_thread() is threading.main_thread():
            for sig in PREEMPT_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.signum = signum
        self._sent.clear()  # a new signal goes to every child again
        self.forward()

    def pids(self) -> list[int]:
        """The process ids listed in ``pid_dir`` now (unreadable or partial files skipped)."""
        pids = []
        for path in sorted(self._pid_dir.glob("*.pid")):
            try:
                pids.append(int(path.read_text()))
            except (OSError, ValueError):
                continue  # being written, or gone with its process
        return pids

    def forward(self) -> None:
        """Send the recorded signal to each listed process that has not been sent it yet.

        Does nothing before a signal was received. A process that has already exited is skipped.
        """
        if self.signum is None:
            return
        for pid in self.pids():
            if pid in self._sent:
                continue
            self._sent.add(pid)
            try:
                os.kill(pid, self.signum)
            except ProcessLookupError:
                pass

    def __exit__(self, *exc: object) -> None:
        if self.signum is None:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
