"""What runs under torchrun: its agent (``python -m robustkd.engine.ranks --agent ...``) and a rank.

:func:`robustkd.engine.distributed.run_job` starts torchrun through :func:`agent`, which runs
``torch.distributed.run`` with the preemption signals ignored, and torchrun starts each rank as
``python -m robustkd.engine.ranks <folder>/job.pkl`` (:func:`rank`). The folder is the
launcher's: the pickled job spec (job reference, name, keyword arguments, log file), the ranks'
pid files (``pids/rank-<RANK>.pid``) the launcher relays preemption signals to, and rank 0's
message when the job stopped on one (:data:`~robustkd.engine.distributed.PREEMPTED_NOTE`).
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import signal
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from robustkd.engine.devices import DEVICE_ENV, rank_device
from robustkd.engine.distributed import (
    AGENT,
    FINISHED_DIR,
    GROUP_TIMEOUT,
    PREEMPTED_NOTE,
    context,
    resolve_job,
)
from robustkd.engine.faults import ABORT_AFTER_JOB_ENV
from robustkd.engine.signals import PREEMPT_SIGNALS, Preempted

__all__ = ["agent", "rank"]


def agent(argv: list[str]) -> None:
    """Run torchrun (``torch.distributed.run`` with ``argv``), ignoring the preemption signals.

    The launcher relays them to the ranks and waits for the ranks. torchrun's own handling would
    cut that short: on SIGTERM it stops the ranks and kills them (SIGKILL) 30 s later, whatever
    they are writing, and SIGUSR1 would end it at once, leaving the ranks behind. So SIGTERM
    and SIGUSR1 are ignored here and left out of torchrun's ``--signals-to-handle``; a torch
    without that option (older releases) still handles SIGTERM (its ranks then also get
    torchrun's SIGTERM, and its 30 s to checkpoint). The ranks inherit the ignored signals;
    :func:`rank` restores them first thing.

    Args:
        argv: torchrun's arguments (``--standalone --nproc-per-node N -m module ...``).
    """
    from torch.distributed import run as torchrun
    from torch.distributed.launcher.api import LaunchConfig

    for sig in PREEMPT_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if "signals_to_handle" in {f.name for f in dataclasses.fields(LaunchConfig)}:
        argv = ["--signals-to-handle=SIGINT,SIGHUP,SIGQUIT", *argv]
    torchrun.main(argv)


def rank(spec_path: str) -> None:
    """Run one torchrun rank: join the process group, run the job, leave the group.

    The rank first restores the preemption signals' default action (the agent ignored them) and
    lists its pid for the launcher's :class:`~robustkd.engine.signals.SignalForwarder`, and takes
    its device (:func:`~robustkd.engine.devices.rank_device`: the launcher's backend, gloo on
    the CPU or NCCL with ``cuda:$LOCAL_RANK``) as the job's ``auto`` device; inside
    the training loop, the loop's guard turns a signal into a checkpoint. When the job stops with
    :class:`~robustkd.engine.signals.Preempted`, rank 0 leaves its message for the launcher;
    when every rank has finished it (past the barrier after it), each rank leaves a file in
    ``finished/``.

    Args:
        spec_path: The launcher's ``job.pkl``; its folder holds the pid files and the note.

    Raises:
        Preempted: The job stopped on a preemption signal (every rank raises it).
    """
    from robustkd.joblog import configure_job_logging

    for sig in PREEMPT_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    folder = Path(spec_path).parent
    spec = pickle.loads(Path(spec_path).read_bytes())
    pid_file = folder / "pids" / f"rank-{os.environ.get('RANK', '0')}.pid"
    pid_file.parent.mkdir(exist_ok=True)
    pid_file.with_suffix(".tmp").write_text(str(os.getpid()))
    pid_file.with_suffix(".tmp").replace(pid_file)  # whole, or not there
    backend = spec.get("backend") or ("nccl" if torch.cuda.is_available() else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", 1)))
    visible = torch.cuda.device_count() if backend == "nccl" else 0
    device = rank_device(local_rank, local_world, visible, backend)
    os.environ[DEVICE_ENV] = str(device)  # what the job's resolve_device("auto") returns
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, timeout=GROUP_TIMEOUT)
    ctx = context()
    configure_job_logging(spec["log"], append=True, tag=f"[rank {ctx.rank}/{ctx.world}] ")
    try:
        resolve_job(spec["job"], spec["name"])(**spec["kwargs"])
        # Rank 0 evaluates and writes after the last step while the others are done: they wait
        # for it here, so no rank closes its connections while another still holds the group
        # (gloo may then fail the still-running rank with "Connection closed by peer").
        dist.barrier()
        # Past the barrier every rank has finished the job: the launcher accepts the job even if
        # a rank then fails leaving the group (robustkd.engine.distributed._torchrun).
        finished = folder / FINISHED_DIR / f"rank-{ctx.rank}"
        finished.parent.mkdir(exist_ok=True)
        finished.touch()
        if os.environ.get(ABORT_AFTER_JOB_ENV) == str(ctx.rank):  # tests only: such a failure
            os.abort()
    except Preempted as e:
        if ctx.main:
            (folder / PREEMPTED_NOTE).write_text(str(e))
        raise
    finally:
        dist.destroy_process_group()
        pid_file.unlink(missing_ok=True)


if __name__ == "__main__":
    if sys.argv[1] == AGENT:
        agent(sys.argv[2:])
    else:
        rank(sys.argv[1])
