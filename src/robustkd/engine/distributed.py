"""Data-parallel training under ``torchrun``: rank bookkeeping, reductions and the launcher.

A training job with more than one GPU runs as ``torchrun --standalone --nproc-per-node N``:
every process (rank) builds the same model, takes its contiguous slice of each *global* batch,
and DDP averages the gradients, so N processes at global batch B step like one process at B.
Rank 0 alone writes checkpoints, logs, weights, metrics and provenance.

The launcher (:func:`run_job`) is handed what to run as an importable ``"module:function"``
reference (``"robustkd.engine.jobs:distill_job"``, ``"robustkd.craft.student_job:student_job"``),
which each rank imports itself: the engine knows no study's jobs. torchrun and the ranks run
through :mod:`robustkd.engine.ranks`.

Preemption: SLURM signals every process of a job (SIGTERM, or SIGUSR1 with ``sbatch --signal``).
The launcher does not die of it: it relays the signal to the ranks and waits for them
(:class:`~robustkd.engine.signals.SignalForwarder`); torchrun ignores it; each rank's training
loop writes the checkpoint of its current step (rank 0 writes, every rank stops at the same
step, see :mod:`robustkd.engine.preemption`); and the launcher then raises
:class:`~robustkd.engine.signals.Preempted` with rank 0's message, so the job exits non-zero
and its rerun resumes from that checkpoint.

Exactness across world sizes (what ``tests/test_distributed.py`` checks):

- The batches of an epoch are drawn for the global batch (:func:`~robustkd.engine.data.
  epoch_batches`) and split by rank, so the images of a step do not depend on N (torch's
  ``DistributedSampler`` instead deals each rank its own permutation stride, so a step's images
  would depend on N).
- Distortions draw their randomness for the whole global batch and keep the rank's slice
  (:func:`robustkd.distortions.batch_shard`), so every image gets the mask or noise it gets
  in a single process.
- Losses that average over samples are exact; Contrastive Inversion gathers the teacher
  embeddings of all ranks, so its softmax runs over the global batch as in one process.
- Not exact, as in any DDP code: BatchNorm statistics are per rank (the CNNs of CRAFT and the
  CLIP stand-in), and CRAFT's per-batch corruption choices and CRD's negatives are drawn per
  rank.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from robustkd.engine.devices import job_environment, launch_backend
from robustkd.engine.faults import LAUNCHER_PGID_ENV
from robustkd.engine.signals import Preempted, SignalForwarder
from robustkd.errors import RobustKDError
from robustkd.gpus import gpu_processes, requested_gpus

__all__ = [
    "AGENT",
    "FINISHED_DIR",
    "GROUP_TIMEOUT",
    "PREEMPTED_NOTE",
    "RANKS_MODULE",
    "DistContext",
    "JobReferenceError",
    "LaunchError",
    "all_gather_no_grad",
    "barrier",
    "all_reduce_sum",
    "context",
    "gpu_processes",
    "is_main",
    "reduce_mean",
    "resolve_job",
    "run_job",
]

log = logging.getLogger(__name__)

# How long a rank waits in a collective. Rank 0 evaluates and writes alone after each seed's
# training (the full CIFAR-10-C suite, or five transfer test sets) while the other ranks wait for
# it, in the next seed's first collective or before leaving the group; torch's defaults (10 min
# for NCCL, 30 min for gloo) could cut that wait short. A hung job still ends at its SLURM
# runtime limit.
GROUP_TIMEOUT = timedelta(hours=2)


# Where torchrun and its ranks run (robustkd.engine.ranks: named, not imported, so that it may
# import this module); its first argument that runs torchrun; and, beside the job's spec, rank
# 0's message when the job stopped on a preemption signal.
RANKS_MODULE = "robustkd.engine.ranks"
AGENT = "--agent"
PREEMPTED_NOTE = "preempted.txt"
# Beside the spec: a file per rank that left the barrier after the job, so every rank had
# finished it (robustkd.engine.ranks.rank).
FINISHED_DIR = "finished"
# Seconds between the launcher's looks at torchrun (exit, time limit, ranks to signal).
_POLL_S = 1.0


class LaunchError(RobustKDError):
    """A multi-process (torchrun) job failed; the message names the job and exit code."""


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a data-parallel run.

    Attributes:
        rank: This process's rank, 0 .. world - 1.
        world: Number of processes (1 when not distributed).
        local_rank: Rank on this node (selects the GPU).
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes files (rank 0)."""
        return self.rank == 0


def context() -> DistContext:
    """Return the current process group's rank and size (rank 0 of 1 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return DistContext(
            dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
        )
    return DistContext()


def is_main() -> bool:
    """Whether this process is rank 0 (always true outside a process group)."""
    return context().main


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if context().world > 1:
        dist.barrier()


def all_gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (B, ...) of every rank along dim 0, in rank order, without gradient.

    Every rank must pass the same shape. Outside a process group, returns ``x`` detached.
    """
    ctx = context()
    x = x.detach().contiguous()
    if ctx.world == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(ctx.world)]
    dist.all_gather(parts, x)
    return torch.cat(parts)  # (world * B, ...)


def reduce_mean(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Average a CPU tensor over ranks (identity for a single process)."""
    if ctx.world == 1:
        return values
    return all_reduce_sum(values, ctx) / ctx.world


def all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum a CPU tensor over ranks (NCCL reduces on the rank's GPU)."""
    out = values.to(torch.device("cuda", ctx.local_rank)) if _nccl() else values.clone()
    dist.all_reduce(out)
    return out.cpu()


def _nccl() -> bool:
    return dist.is_initialized() and dist.get_backend() == "nccl"


# --- the launcher ------------------------------------------------------------------------------


class JobReferenceError(RobustKDError, ValueError):
    """A job reference that is not an importable ``"module:function"``; the message names it."""


def resolve_job(job: str, name: str | None = None) -> Callable[..., Any]:
    """Import the function a ``"module:function"`` reference names.

    Args:
        job: The reference, e.g. ``"robustkd.engine.jobs:distill_job"``.
        name: The job's name for the message (default: the reference).

    Returns:
        The function.

    Raises:
        JobReferenceError: ``job`` is not of the form ``module:function``, its module does not
            exist, or the module has no such callable.
    """
    label = repr(job) if name is None else f"{name!r} ({job})"
    module_name, colon, attr = job.partition(":")
    if not colon or not module_name or not attr.isidentifier():
        raise JobReferenceError(
            f"unknown training job {label}: not a 'module:function' reference "
            "(e.g. 'robustkd.engine.jobs:distill_job')"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is None or not f"{module_name}.".startswith(f"{e.name}."):
            raise  # the module exists but one of its own imports failed
        raise JobReferenceError(
            f"unknown training job {label}: no module {module_name!r}"
        ) from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise JobReferenceError(
            f"unknown training job {label}: module {module_name!r} has no function {attr!r}"
        )
    return fn


def run_job(
    job: str,
    kwargs: Mapping[str, Any],
    *,
    name: str | None = None,
    processes: int | None = None,
    resources: Any = None,
    log_file: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
) -> Any:
    """Run a training job in this process, or under ``torchrun`` with several processes.

    Args:
        job: What to run, as an importable ``"module:function"`` reference (e.g.
            ``"robustkd.engine.jobs:distill_job"``); every torchrun rank imports it itself.
        kwargs: The job function's keyword arguments (``threads`` is split between processes).
        name: The job's name in log lines and messages (default: the function's name).
        processes: Processes (GPUs) of the job; > 1 launches ``torchrun --standalone``.
        resources: Instead of ``processes``: the job's Snakemake resources, whose GPU request
            (``gpu`` or a ``gpu`` gres, see :func:`gpu_processes`) sets the processes.
        log_file: The job's log, which the ranks append to (tagged with their rank).
        timeout: Seconds after which a torchrun launch is killed with all its ranks (``None``:
            no limit; a cluster's own job time limit usually applies).

    Returns:
        The job's return value (``None`` when run under torchrun: rank 0 wrote the outputs).

    Raises:
        JobReferenceError: ``job`` names no importable function (a ``ValueError`` too).
        ValueError: Both ``processes`` and ``resources`` given.
        ConfigError: The resources ask for GPUs twice (see :func:`gpu_processes`).
        DeviceError: The job asked for GPUs and cannot use one (raised by the job itself when
            it runs in this process), or has fewer visible than processes (before launch).
        Preempted: The job stopped on a preemption signal, sent to the ranks or to this process
            (which relays it to them): the ranks wrote the checkpoint of the step they were at
            (the message names it) unless the signal came outside their training loop.
        LaunchError: torchrun exited non-zero otherwise (the ranks' errors are in the job's
            log), or ran past ``timeout``.
    """
    fn = resolve_job(job, name)
    name = name or job.partition(":")[2]
    if processes is not None and resources is not None:
        raise ValueError("give processes or resources, not both")
    gpus = 0 if resources is None else requested_gpus(resources, str(kwargs.get("rule") or name))
    if processes is None:
        processes = max(1, gpus)
    with job_environment(gpus) as job_env:
        if processes <= 1:
            return fn(**kwargs)
        backend = launch_backend(processes)  # checked here, before torchrun starts
        args = dict(kwargs)
        args["threads"] = max(1, int(args.get("threads", 1)) // processes)
        log_path = None if log_file is None else str(log_file)
        spec = {"job": job, "name": name, "kwargs": args, "log": log_path, "backend": backend}
        with tempfile.TemporaryDirectory(prefix="robustkd-launch-") as tmp:
            _torchrun(spec, processes, Path(tmp), timeout, job_env)
    return None


def _torchrun(
    spec: dict[str, Any],
    processes: int,
    tmp: Path,
    timeout: float | None,
    job_env: Mapping[str, str],
) -> None:
    """Run a job spec under torchrun; ``tmp`` holds the spec, the ranks' pid files and a note.

    Args:
        spec: ``job`` reference, ``name``, ``kwargs`` (threads already split), ``log`` file
            and process group ``backend``.
        processes: Ranks (> 1).
        tmp: The launch's own folder, removed by the caller afterwards.
        timeout: Seconds before torchrun and its ranks are killed (None: no limit).
        job_env: Variables of the ranks' environment
            (:func:`~robustkd.engine.devices.job_environment`).

    Raises:
        Preempted: The ranks stopped on a preemption signal (rank 0's note names the step of
            the checkpoint), or this launcher received one and relayed it.
        LaunchError: torchrun exited non-zero otherwise, or ran past ``timeout``.
    """
    (tmp / "job.pkl").write_bytes(pickle.dumps(spec))
    # torchrun runs through the ranks module's agent, which keeps preemption signals ignored.
    cmd = [sys.executable, "-m", RANKS_MODULE, AGENT, "--standalone"]
    cmd += [f"--nproc-per-node={processes}", "-m", RANKS_MODULE, str(tmp / "job.pkl")]
    what = f"{spec['name']} job under torchrun ({processes} processes)"
    log.info("launching %s job on %d processes: %s", spec["name"], processes, " ".join(cmd))
    sys.stdout.flush()
    sys.stderr.flush()
    # The ranks import this very copy of the package (a workflow script puts src/ on sys.path,
    # which a child process does not inherit).
    src = str(Path(__file__).resolve().parents[2])
    env = {
        **os.environ,
        **job_env,
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
        LAUNCHER_PGID_ENV: str(os.getpgrp()),
    }
    with SignalForwarder(tmp / "pids") as forwarder:
        # With a time limit, torchrun gets its own session so that a time-out kills it at once;
        # without one it stays in the job's process group (Ctrl-C reaches it).
        proc = subprocess.Popen(cmd, env=env, start_new_session=timeout is not None)
        deadline = None if timeout is None else time.monotonic() + timeout
        returncode, announced = None, False
        while returncode is None:
            try:
                returncode = proc.wait(timeout=_POLL_S)
            except subprocess.TimeoutExpired:
                forwarder.forward()  # to ranks that started after the signal came
                if deadline is not None and time.monotonic() > deadline:
                    _kill(proc, forwarder.pids())
                    raise LaunchError(
                        f"{what} hung: still running after {timeout:.0f} s, killed with its ranks"
                    ) from None
            if forwarder.signum is not None and not announced:
                announced = True
                log.warning(
                    "%s received: relayed to the ranks; waiting for them to checkpoint and stop",
                    signal.Signals(forwarder.signum).name,
                )
    note = tmp / PREEMPTED_NOTE
    if returncode != 0 and note.exists():
        raise Preempted(f"{what}: {note.read_text()}")
    if returncode != 0 and forwarder.signum is not None:
        raise Preempted(
            f"{what}: {signal.Signals(forwarder.signum).name} received and relayed to the ranks, "
            f"which stopped (exit code {returncode}) without a checkpoint of it (the signal came "
            "outside their training loop; see their log above); rerun the job to resume from its "
            "last checkpoint"
        )
    if returncode != 0 and any((tmp / FINISHED_DIR).glob("rank-*")):
        # A rank left the barrier after the job: every rank had finished it and rank 0 had
        # written every output. A rank that then dies leaving the process group (gloo's
        # teardown has aborted one, "terminate called without an active exception") has lost
        # nothing: the job stands, and the log says so.
        log.warning(
            "%s exited with code %d after every rank had finished the job (the failure came "
            "while the ranks left the process group; see their log above): its outputs are "
            "complete",
            what,
            returncode,
        )
        return
    if returncode != 0:
        raise LaunchError(
            f"{what} exited with code {returncode}; the ranks' errors and tracebacks are logged "
            "above"
        )


def _kill(proc: subprocess.Popen[bytes], ranks: list[int]) -> None:
    """SIGKILL torchrun's session and each rank (its loader workers then follow it)."""
    for pid in ranks:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
