"""Data-parallel training under ``torchrun``: rank bookkeeping, reductions and the launcher.

A training job with more than one GPU runs as ``torchrun --standalone --nproc-per-node N``:
every process (rank) builds the same model, takes its contiguous slice of each *global* batch,
and DDP averages the gradients, so N processes at global batch B step like one process at B.
Rank 0 alone writes checkpoints, logs, weights, metrics and provenance.

The launcher (:func:`run_job`) is handed what to run as an importable ``"module:function"``
reference (``"robustkd.engine.jobs:distill_job"``, ``"robustkd.craft.student_job:student_job"``),
which each rank imports itself: the engine knows no study's jobs.

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

import importlib
import logging
import os
import pickle
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from robustkd.engine.faults import LAUNCHER_PGID_ENV
from robustkd.errors import RobustKDError
from robustkd.gpus import gpu_processes

__all__ = [
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
        LaunchError: torchrun exited non-zero (the ranks' errors are in the job's log), or ran
            past ``timeout``.
    """
    fn = resolve_job(job, name)
    name = name or job.partition(":")[2]
    if processes is not None and resources is not None:
        raise ValueError("give processes or resources, not both")
    if processes is None:
        rule = str(kwargs.get("rule") or name)
        processes = 1 if resources is None else gpu_processes(resources, rule)
    if processes <= 1:
        return fn(**kwargs)
    args = dict(kwargs)
    args["threads"] = max(1, int(args.get("threads", 1)) // processes)
    with tempfile.TemporaryDirectory(prefix="robustkd-launch-") as tmp:
        spec = Path(tmp) / "job.pkl"
        log_path = None if log_file is None else str(log_file)
        spec.write_bytes(pickle.dumps({"job": job, "name": name, "kwargs": args, "log": log_path}))
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={processes}",
            "-m",
            "robustkd.engine.distributed",
            str(spec),
        ]
        log.info("launching %s job on %d processes: %s", name, processes, " ".join(cmd))
        sys.stdout.flush()
        sys.stderr.flush()
        # The ranks import this very copy of the package (a workflow script puts src/ on
        # sys.path, which a child process does not inherit).
        src = str(Path(__file__).resolve().parents[2])
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
            LAUNCHER_PGID_ENV: str(os.getpgrp()),
        }
        # With a time limit, torchrun gets its own session so that a time-out kills it and every
        # rank it started; without one it stays in the job's process group, which is where a
        # scheduler's or Snakemake's signals (preemption, cancel) reach it.
        proc = subprocess.Popen(cmd, env=env, start_new_session=timeout is not None)
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise LaunchError(
                f"{name} job under torchrun ({processes} processes) hung: still running after "
                f"{timeout:.0f} s, killed with its ranks"
            ) from None
    if returncode != 0:
        raise LaunchError(
            f"{name} job under torchrun ({processes} processes) exited with code "
            f"{returncode}; the ranks' errors and tracebacks are logged above"
        )
    return None


def _worker(spec_path: str) -> None:
    """Entry point of one torchrun rank: join the group, run the job, leave the group."""
    from robustkd.joblog import configure_job_logging

    spec = pickle.loads(Path(spec_path).read_bytes())
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=GROUP_TIMEOUT)
    ctx = context()
    configure_job_logging(spec["log"], append=True, tag=f"[rank {ctx.rank}/{ctx.world}] ")
    try:
        resolve_job(spec["job"], spec["name"])(**spec["kwargs"])
        # Rank 0 evaluates and writes after the last step while the others are done: they wait
        # for it here, so no rank closes its connections while another still holds the group
        # (gloo may then fail the still-running rank with "Connection closed by peer").
        dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    _worker(sys.argv[1])
