"""Where jobs compute (robustkd.engine.devices), shown on CPU with torch.cuda monkeypatched.

- A job that asked for a GPU (resources, SLURM's CUDA_VISIBLE_DEVICES) and cannot use one stops
  at once, naming why; a job that asked for none computes on the CPU here.
- torchrun ranks map to devices explicitly: NCCL needs a GPU per rank (refused before launch),
  gloo runs on the CPU even where CUDA is visible.
- CUDA determinism: the cuDNN and deterministic-algorithm flags around training,
  CUBLAS_WORKSPACE_CONFIG in the job's (and its ranks') environment, and a resume with fewer
  GPUs than the checkpoint saw.
"""

from __future__ import annotations

import logging
import os
import warnings

import pytest
import torch

from robustkd.engine import distributed
from robustkd.engine.checkpoint import InexactResumeError, capture_rng, restore_rng
from robustkd.engine.devices import (
    CUBLAS_WORKSPACE,
    DEVICE_ENV,
    GPUS_ENV,
    DeviceError,
    deterministic,
    launch_backend,
    rank_device,
    resolve_device,
)
from robustkd.engine.distributed import run_job
from robustkd.engine.optim import TrainConfig

JOB = "tests.test_devices:device_job"
OLD_DRIVER = (
    "CUDA initialization: The NVIDIA driver on your system is too old (found version 11040)."
)


def device_job() -> dict[str, str]:
    """A job run by run_job: where it would compute, and the cuBLAS setting it sees."""
    return {
        "device": str(resolve_device("auto")),
        "cublas": os.environ.get("CUBLAS_WORKSPACE_CONFIG", ""),
    }


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    """No device preference, GPU request or SLURM allocation from the calling shell."""
    for name in (DEVICE_ENV, GPUS_ENV, "CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", "SLURM_JOBID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)


def _cuda(monkeypatch, *, built="13.0", available=False, count=0, warning=None, error=None):
    """Make torch see a CUDA build with ``count`` devices, or CUDA failing as told."""

    def is_available() -> bool:
        if warning:
            warnings.warn(warning, UserWarning, stacklevel=2)
        return available

    def device_count_c() -> int:
        if error:
            raise RuntimeError(error)
        if warning:
            warnings.warn(warning, UserWarning, stacklevel=2)
        return count

    monkeypatch.setattr(torch.version, "cuda", built)
    monkeypatch.setattr(torch.cuda, "is_available", is_available)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count if available else 0)
    monkeypatch.setattr(torch._C, "_cuda_getDeviceCount", device_count_c, raising=False)


# --- 1. no silent CPU fallback ------------------------------------------------------------------


def test_a_job_that_asked_for_no_gpu_computes_on_the_cpu_here(monkeypatch):
    _cuda(monkeypatch, built=None)
    assert run_job(JOB, {}, resources={"mem_mb": 1000})["device"] == "cpu"
    assert run_job(JOB, {}, processes=1)["device"] == "cpu"


@pytest.mark.parametrize(
    ("cuda", "reason"),
    [
        ({"built": None}, "was built without CUDA"),
        ({"warning": OLD_DRIVER}, "driver on your system is too old"),
        ({"error": "cudaGetDeviceCount failed: error 804"}, "error 804"),
        ({"count": 0}, "no GPU visible"),
    ],
)
def test_a_job_that_asked_for_a_gpu_stops_naming_why_it_has_none(monkeypatch, cuda, reason):
    _cuda(monkeypatch, **cuda)
    for resources in ({"gpu": 1}, {"gres": "gpu:a100:1"}):
        with pytest.raises(DeviceError, match=reason) as err:
            run_job(JOB, {}, resources=resources)
        assert "ask for 1 GPU(s)" in str(err.value) and f"{DEVICE_ENV}=cpu" in str(err.value)
    assert GPUS_ENV not in os.environ  # the request lasts the job's call only


@pytest.mark.filterwarnings("ignore:CUDA initialization")
def test_slurm_gpus_are_a_request_too(monkeypatch):
    _cuda(monkeypatch, warning=OLD_DRIVER)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert resolve_device() == torch.device("cpu")  # set outside SLURM: not a request
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    with pytest.raises(DeviceError, match=r"SLURM gave it GPUs \(CUDA_VISIBLE_DEVICES=0\)"):
        resolve_device()


def test_cpu_on_purpose_and_a_usable_gpu(monkeypatch):
    _cuda(monkeypatch, built=None)
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert run_job(JOB, {}, resources={"gpu": 1})["device"] == "cpu"
    monkeypatch.delenv(DEVICE_ENV)
    _cuda(monkeypatch, available=True, count=2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert run_job(JOB, {}, resources={"gpu": 1})["device"] == "cuda:1"
    assert resolve_device("cpu") == torch.device("cpu")  # an explicit device wins


# --- 3. ranks to devices --------------------------------------------------------------------------


def test_rank_device_mapping():
    assert [rank_device(r, 2, 2, "nccl") for r in range(2)] == [
        torch.device("cuda", 0),
        torch.device("cuda", 1),
    ]
    assert rank_device(3, 4, 8, "nccl") == torch.device("cuda", 3)
    for visible in (0, 1, 4):
        assert rank_device(1, 2, visible, "gloo") == torch.device("cpu")
    with pytest.raises(DeviceError, match=r"2 processes on this node need one GPU each, but 1"):
        rank_device(0, 2, 1, "nccl")
    with pytest.raises(DeviceError, match=r"but 0 GPU"):
        rank_device(0, 2, 0, "nccl")
    with pytest.raises(ValueError, match="outside"):
        rank_device(2, 2, 4, "nccl")
    with pytest.raises(ValueError, match="backend"):
        rank_device(0, 1, 1, "mpi")


def test_more_processes_than_gpus_is_refused_before_launch(monkeypatch):
    launched = []
    monkeypatch.setattr(distributed, "_torchrun", lambda *a, **k: launched.append(a))
    _cuda(monkeypatch, available=True, count=1)
    with pytest.raises(DeviceError, match="2 processes on this node need one GPU each, but 1"):
        run_job(JOB, {}, processes=2)
    with pytest.raises(DeviceError, match="2 processes"):
        run_job(JOB, {}, resources={"gpu": 2})
    assert launched == []
    # gloo on the CPU, chosen explicitly (the tests' choice), even with CUDA visible.
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert launch_backend(2) == "gloo"
    run_job(JOB, {}, processes=2)
    assert launched[0][0]["backend"] == "gloo"
    monkeypatch.delenv(DEVICE_ENV)
    _cuda(monkeypatch, available=True, count=2)
    assert launch_backend(2) == "nccl"
    _cuda(monkeypatch, built=None)
    assert launch_backend(2) == "gloo"  # nothing asked for, no CUDA: the CPU


# --- 4. determinism -------------------------------------------------------------------------------


def test_cublas_workspace_in_the_job_and_its_ranks_environment(monkeypatch):
    _cuda(monkeypatch, built=None)
    assert run_job(JOB, {})["cublas"] == CUBLAS_WORKSPACE
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    envs = []
    monkeypatch.setattr(distributed, "_torchrun", lambda *a: envs.append(a[4]))
    run_job(JOB, {}, processes=2)
    assert envs[0]["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # a user's own value stays
    assert run_job(JOB, {})["cublas"] == ":16:8"


def test_deterministic_kernels_on_cuda_only_and_restored():
    cudnn = torch.backends.cudnn
    before = (cudnn.deterministic, cudnn.benchmark, torch.are_deterministic_algorithms_enabled())
    assert TrainConfig.from_config({"epochs": 1, "batch_size": 1, "lr": 0.1}).deterministic
    with deterministic(True, torch.device("cpu")):
        assert torch.are_deterministic_algorithms_enabled() == before[2]
    with deterministic(True, torch.device("cuda", 0)):
        assert cudnn.deterministic and not cudnn.benchmark
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE
    with deterministic(False, torch.device("cuda", 0)):
        assert torch.are_deterministic_algorithms_enabled() == before[2]
    after = (cudnn.deterministic, cudnn.benchmark, torch.are_deterministic_algorithms_enabled())
    assert after == before


def _gpus(monkeypatch, count):
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.extend)
    return restored


def test_resume_with_fewer_gpus_restores_those_present(monkeypatch, caplog):
    state = {**capture_rng(), "cuda": [torch.full((8,), i, dtype=torch.uint8) for i in range(4)]}
    restored = _gpus(monkeypatch, 2)
    with caplog.at_level(logging.WARNING, logger="robustkd.engine.checkpoint"):
        restore_rng(state, torch.device("cuda", 1))
    assert [int(s[0]) for s in restored] == [0, 1]
    assert "dropped cuda:2, cuda:3" in caplog.text and "4 GPUs, 2 are visible" in caplog.text
    restored.clear()
    restore_rng(state, torch.device("cpu"))  # as many as visible, whatever the run's device
    assert len(restored) == 2


def test_resume_is_refused_only_where_it_cannot_be_exact(monkeypatch, caplog):
    state = {**capture_rng(), "cuda": [torch.zeros(8, dtype=torch.uint8)]}
    restored = _gpus(monkeypatch, 2)
    with pytest.raises(InexactResumeError, match=r"on cuda:1: .* random states of 1 GPU"):
        restore_rng(state, torch.device("cuda", 1))
    with caplog.at_level(logging.WARNING):
        restore_rng(state, torch.device("cuda", 0))  # more GPUs than saved: nothing dropped
    assert len(restored) == 1 and "dropped" not in caplog.text
