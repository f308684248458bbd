"""Where a job computes: its device, each torchrun rank's device, and CUDA determinism.

A job asks for GPUs through its Snakemake resources (``gpu`` or a ``gpu`` gres,
:mod:`robustkd.gpus`); :func:`~robustkd.engine.distributed.run_job` passes that request to the
job (and its ranks) as ``ROBUSTKD_GPUS``. SLURM's ``CUDA_VISIBLE_DEVICES`` in a SLURM job is a
request too. A job that asked for a GPU and cannot use one stops at once, naming why (torch
built without CUDA, a driver too old for it, no device visible): it never trains for days on the
CPU. A job that asked for none computes on a GPU if one is usable, else on the CPU.

``ROBUSTKD_DEVICE`` overrides this: ``cpu`` computes on the CPU whatever was asked (a machine
without a GPU running the local profile, whose training jobs ask for one; the tests, whose
reference numbers are the CPU's and whose torchrun jobs use gloo), ``cuda`` requires a GPU.

Under torchrun, rank ``r`` of ``P`` on a node takes ``cuda:r`` with NCCL, after
:func:`rank_device` checked that the node shows at least ``P`` GPUs, or the CPU with gloo.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from robustkd.errors import RobustKDError

__all__ = [
    "CUBLAS_WORKSPACE",
    "DEVICE_ENV",
    "GPUS_ENV",
    "DeviceError",
    "cuda_problem",
    "deterministic",
    "gpu_request",
    "job_environment",
    "launch_backend",
    "rank_device",
    "resolve_device",
]

log = logging.getLogger(__name__)

DEVICE_ENV = "ROBUSTKD_DEVICE"  # cpu | cuda | cuda:N | auto (unset)
GPUS_ENV = "ROBUSTKD_GPUS"  # GPUs the job's resources ask for (set by run_job)
# cuBLAS's deterministic workspace (8 buffers of 4 MiB per stream; the cuBLAS documentation's
# setting for reproducible results), read when cuBLAS starts: set before CUDA initialises.
CUBLAS_WORKSPACE = ":4096:8"


class DeviceError(RobustKDError):
    """A job cannot compute where it must (no usable GPU, fewer GPUs than processes)."""


def cuda_problem() -> str | None:
    """Why CUDA cannot be used in this process, or None when it can.

    Returns:
        The reason: torch built without CUDA; CUDA's initialisation error (a driver too old for
        this torch, reported by torch as a warning or an error); no device visible.
    """
    build = f"torch {torch.__version__}"
    if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
        return f"{build} was built without CUDA"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if torch.cuda.is_available():
            return None
        try:
            count = torch._C._cuda_getDeviceCount()
        except Exception as e:  # noqa: BLE001 - the driver's own error is the reason
            return f"CUDA cannot start ({build}, CUDA {torch.version.cuda}): {e}"
    said = "; ".join(dict.fromkeys(str(w.message).strip() for w in caught))
    if said:
        return f"CUDA cannot start ({build}, CUDA {torch.version.cuda}): {said}"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    shown = "unset" if visible is None else repr(visible)
    return f"no GPU visible ({count} devices; CUDA_VISIBLE_DEVICES {shown})"


def gpu_request() -> str | None:
    """Why this job must compute on a GPU, or None when it asked for none.

    Returns:
        The request: ``ROBUSTKD_DEVICE=cuda``, the job's resources (``ROBUSTKD_GPUS``), or the
        GPUs SLURM gave the job (``CUDA_VISIBLE_DEVICES`` in a SLURM job).
    """
    pref = os.environ.get(DEVICE_ENV, "auto")
    if pref.startswith("cuda"):
        return f"{DEVICE_ENV}={pref}"
    gpus = os.environ.get(GPUS_ENV, "")
    if gpus.isdigit() and int(gpus) > 0:
        return f"its resources ask for {gpus} GPU(s)"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    slurm = "SLURM_JOB_ID" in os.environ or "SLURM_JOBID" in os.environ
    if slurm and visible.strip() and visible not in ("NoDevFiles", "-1"):
        return f"SLURM gave it GPUs (CUDA_VISIBLE_DEVICES={visible})"
    return None


def _require_cuda(why: str) -> None:
    problem = cuda_problem()
    if problem is not None:
        raise DeviceError(
            f"the job must compute on a GPU ({why}) but cannot use one: {problem}. Fix the "
            f"node or the torch build, or set {DEVICE_ENV}=cpu to train on the CPU on purpose"
        )


def resolve_device(name: str = "auto") -> torch.device:
    """The device a job computes on.

    ``"auto"`` follows ``ROBUSTKD_DEVICE`` where set (a torchrun rank's own device, set by
    :mod:`robustkd.engine.ranks`); else a job that asked for a GPU (:func:`gpu_request`) gets
    ``cuda:$LOCAL_RANK`` or fails; a job that asked for none gets ``cuda`` when usable, else
    ``mps``, else ``cpu``. Any other name is taken as given (``cuda`` must be usable).

    Args:
        name: ``"auto"`` or a torch device name.

    Returns:
        The device.

    Raises:
        DeviceError: A GPU is required and none is usable (the message says why).
    """
    pref = os.environ.get(DEVICE_ENV, "auto") if name == "auto" else name
    if pref == "cpu" or pref == "mps":
        return torch.device(pref)
    if pref.startswith("cuda"):
        _require_cuda(f"device {pref}")
        dev = torch.device(pref)
        return dev if dev.index is not None else torch.device("cuda", _local_rank())
    if pref != "auto":
        return torch.device(pref)
    why = gpu_request()
    if why is not None:
        _require_cuda(why)
        return torch.device("cuda", _local_rank())
    if torch.cuda.is_available():
        return torch.device("cuda", _local_rank())
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def launch_backend(processes: int) -> str:
    """The process group backend of a torchrun launch, checked before the launch.

    Args:
        processes: Ranks on this node.

    Returns:
        ``nccl`` (one GPU per rank) or ``gloo`` (ranks on the CPU: ``ROBUSTKD_DEVICE=cpu``, or
        no usable GPU and none asked for).

    Raises:
        DeviceError: GPUs are required and unusable, or fewer are visible than ``processes``.
    """
    if os.environ.get(DEVICE_ENV) == "cpu":
        return "gloo"
    why = gpu_request()
    if why is not None:
        _require_cuda(why)
    elif cuda_problem() is not None:
        return "gloo"
    rank_device(processes - 1, processes, torch.cuda.device_count(), "nccl")  # raises if short
    return "nccl"


def rank_device(local_rank: int, local_world: int, visible: int, backend: str) -> torch.device:
    """The device of a torchrun rank: a pure function of its place and the node's GPUs.

    Args:
        local_rank: The rank on this node (``LOCAL_RANK``).
        local_world: Ranks on this node (``LOCAL_WORLD_SIZE``).
        visible: GPUs visible to the ranks (``torch.cuda.device_count()``).
        backend: ``gloo`` (the ranks compute on the CPU) or ``nccl`` (one GPU per rank).

    Returns:
        ``cpu`` for gloo; ``cuda:<local_rank>`` for nccl.

    Raises:
        DeviceError: NCCL with fewer visible GPUs than ranks (it never indexes past them).
        ValueError: Another backend, or a rank outside ``[0, local_world)``.
    """
    if not 0 <= local_rank < local_world:
        raise ValueError(f"local rank {local_rank} outside 0..{local_world - 1}")
    if backend == "gloo":
        return torch.device("cpu")
    if backend != "nccl":
        raise ValueError(f"unknown process group backend {backend!r} (gloo or nccl)")
    if local_world > visible:
        raise DeviceError(
            f"{local_world} processes on this node need one GPU each, but {visible} GPU(s) are "
            f"visible (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}): "
            f"ask for as many GPUs as processes, or set {DEVICE_ENV}=cpu for gloo on the CPU"
        )
    return torch.device("cuda", local_rank)


@contextmanager
def job_environment(gpus: int) -> Iterator[dict[str, str]]:
    """The environment of a job's training processes, set in this one meanwhile.

    ``ROBUSTKD_GPUS`` (the request, for :func:`resolve_device`) and ``CUBLAS_WORKSPACE_CONFIG``
    (unless set already), which cuBLAS reads when CUDA starts; restored afterwards.

    Args:
        gpus: GPUs the job's resources ask for (0: none).

    Yields:
        The variables set, for the torchrun ranks' environment too.
    """
    added = {GPUS_ENV: str(gpus), "CUBLAS_WORKSPACE_CONFIG": CUBLAS_WORKSPACE}
    added = {k: v for k, v in added.items() if k == GPUS_ENV or k not in os.environ}
    before = {k: os.environ.get(k) for k in added}
    os.environ.update(added)
    try:
        yield added
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def deterministic(enabled: bool, device: torch.device) -> Iterator[None]:
    """Deterministic CUDA kernels meanwhile (``training.<kind>.deterministic``); restored after.

    On a CUDA device: ``cudnn.deterministic = True``, ``cudnn.benchmark = False`` and
    ``torch.use_deterministic_algorithms(True, warn_only=True)``: an operation without a
    deterministic CUDA kernel (e.g. ``bincount``) warns once instead of stopping a run.
    ``CUBLAS_WORKSPACE_CONFIG`` is set by :func:`job_environment` before CUDA starts; a
    process that started CUDA without it gets a warning. On other devices nothing is set.

    Args:
        enabled: The training setting.
        device: Where the training computes.
    """
    if not enabled or device.type != "cuda":
        yield
        return
    if "CUBLAS_WORKSPACE_CONFIG" not in os.environ:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
        if torch.cuda.is_initialized():
            log.warning("CUDA started before CUBLAS_WORKSPACE_CONFIG was set: cuBLAS may vary")
    cudnn = torch.backends.cudnn
    saved = (cudnn.deterministic, cudnn.benchmark)
    algorithms = torch.are_deterministic_algorithms_enabled()
    only_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn.deterministic, cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = saved
        torch.use_deterministic_algorithms(algorithms, warn_only=only_warn)
