"""Faults the training loop injects at a given step, for the tests of resume and preemption.

Each is an environment variable (unset: nothing happens); all but the last hold a global step:

- ``ROBUSTKD_SIGKILL_AT_STEP`` (:data:`KILL_ENV`): SIGKILL to the training process right
  before that step (exact resume after a hard kill).
- ``ROBUSTKD_SIGTERM_AT_STEP`` (:data:`TERM_ENV`): SIGTERM to the training process alone
  right before that step (the preemption path of :mod:`robustkd.engine.preemption`).
- ``ROBUSTKD_SIGSTOP_AT_STEP`` (:data:`STOP_ENV`): SIGSTOP to the training process right
  before that step (holds a run mid-way while a test starts a second writer of its folder;
  SIGCONT goes on).
- ``ROBUSTKD_SIGTERM_GROUP_AT_STEP`` (:data:`GROUP_TERM_ENV`): SIGTERM to every process of the
  job once that many steps are done, as SLURM signals every process of a job step: the process
  group of the training process (itself and its data-loader workers; under torchrun each rank
  leads a group of its own) and, under torchrun, the launcher's (the launcher, and torchrun
  unless it runs in a session of its own), which
  :func:`~robustkd.engine.distributed.run_job` names in ``ROBUSTKD_LAUNCHER_PGID``
  (:data:`LAUNCHER_PGID_ENV`). The signal is sent while the loader's workers still have
  batches in flight.

- ``ROBUSTKD_ABORT_AFTER_JOB`` (:data:`ABORT_AFTER_JOB_ENV`): the torchrun rank of that number
  aborts (SIGABRT) once every rank has finished the job, as gloo's teardown has made a rank
  abort while leaving the process group (:func:`robustkd.engine.ranks.rank`).

The group signal comes from a helper process, as a cluster's signal comes from outside the job
(torch's loader workers treat a SIGTERM from their own parent differently: they exit quietly),
and the helper returns only once every process it signalled has taken the signal (Linux: none
has it pending in ``/proc``; a process that ignores it never has), so the run is deterministic.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ABORT_AFTER_JOB_ENV",
    "GROUP_TERM_ENV",
    "KILL_ENV",
    "LAUNCHER_PGID_ENV",
    "STOP_ENV",
    "TERM_ENV",
    "StepFaults",
]

KILL_ENV = "ROBUSTKD_SIGKILL_AT_STEP"
TERM_ENV = "ROBUSTKD_SIGTERM_AT_STEP"
STOP_ENV = "ROBUSTKD_SIGSTOP_AT_STEP"
GROUP_TERM_ENV = "ROBUSTKD_SIGTERM_GROUP_AT_STEP"
LAUNCHER_PGID_ENV = "ROBUSTKD_LAUNCHER_PGID"
ABORT_AFTER_JOB_ENV = "ROBUSTKD_ABORT_AFTER_JOB"
# How long the helper waits at most for the signalled processes to take the signal (seconds;
# a process that blocks it would otherwise hold the helper forever).
_DELIVERY_WAIT_S = 30.0


@dataclass(frozen=True)
class StepFaults:
    """The faults set in the environment (``-1``: none).

    Attributes:
        kill_at: Step before which the process SIGKILLs itself.
        term_at: Step before which the process SIGTERMs itself.
        group_term_at: Steps done after which every process of the job gets SIGTERM.
        stop_at: Step before which the process SIGSTOPs itself.
    """

    kill_at: int = -1
    term_at: int = -1
    group_term_at: int = -1
    stop_at: int = -1

    @classmethod
    def from_env(cls) -> StepFaults:
        """Read :data:`KILL_ENV`, :data:`TERM_ENV`, :data:`GROUP_TERM_ENV`, :data:`STOP_ENV`."""
        env = os.environ
        return cls(
            int(env.get(KILL_ENV, "-1")),
            int(env.get(TERM_ENV, "-1")),
            int(env.get(GROUP_TERM_ENV, "-1")),
            int(env.get(STOP_ENV, "-1")),
        )

    def before_step(self, step: int, flush: Callable[[], None]) -> None:
        """Inject the faults due before global step ``step``.

        ``flush`` runs before a SIGKILL or SIGSTOP: the loop passes one that flushes the step log
        and waits for the checkpoint write in flight (``checkpoint_async``), so what is on disk
        when the fault strikes depends on the step alone, not on how fast the disk was.
        """
        if step == self.kill_at:
            flush()
            os.kill(os.getpid(), signal.SIGKILL)
        if step == self.term_at:
            os.kill(os.getpid(), signal.SIGTERM)
        if step == self.stop_at:
            flush()
            os.kill(os.getpid(), signal.SIGSTOP)

    def after_step(self, done: int) -> None:
        """Inject the faults due once ``done`` steps are done."""
        if done == self.group_term_at:
            groups = {os.getpgrp()}
            if os.environ.get(LAUNCHER_PGID_ENV):
                groups.add(int(os.environ[LAUNCHER_PGID_ENV]))
            signal_groups(signal.SIGTERM, sorted(groups))


def signal_groups(signum: int, groups: list[int]) -> None:
    """Send ``signum`` to process groups from a helper process outside them; wait for delivery.

    Args:
        signum: The signal.
        groups: Process group ids.

    Raises:
        CalledProcessError: The helper failed (e.g. no such group).
    """
    src = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", __name__, str(signum), *map(str, groups)]
    subprocess.run(cmd, env=env, check=True, start_new_session=True)


def _members(groups: set[int]) -> list[int]:
    """Ids of the processes in ``groups`` (Linux ``/proc``; none elsewhere)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()  # after "pid (comm)"
        except OSError:
            continue  # gone meanwhile
        if int(fields[2]) in groups:  # state, ppid, pgrp, ...
            found.append(int(stat.parent.name))
    return found


def _pending(pid: int, signum: int) -> bool:
    """Whether ``signum`` waits to be taken by live process ``pid`` (its ``/proc`` status)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return False  # gone
    status = dict(line.split(":", 1) for line in lines if ":" in line)
    if status.get("State", "").strip().startswith(("Z", "X")):
        return False  # dead
    mask = int(status.get("ShdPnd", "0"), 16) | int(status.get("SigPnd", "0"), 16)
    return bool(mask >> (signum - 1) & 1)


def _send_and_wait(signum: int, groups: set[int]) -> None:
    members = _members(groups)
    for group in sorted(groups):
        os.killpg(group, signum)
    deadline = time.monotonic() + _DELIVERY_WAIT_S
    while any(_pending(pid, signum) for pid in members) and time.monotonic() < deadline:
        time.sleep(0.001)


if __name__ == "__main__":
    _send_and_wait(int(sys.argv[1]), {int(g) for g in sys.argv[2:]})
