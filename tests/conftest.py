"""Shared fixtures: the repository root and small helpers for data tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def class_list() -> Path:
    return ROOT / "config" / "imagenet100.txt"


def copy_workflow(work: Path) -> Path:
    """Copy the workflow into ``work`` (the package's source linked, not copied); return it."""
    import shutil

    for name in ("Snakefile", "config", "workflow", "envs", "tests"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    (work / "src").symlink_to(ROOT / "src")
    return work


def write_top1_metrics(
    folder: Path, name: str, values: list[float], seeds: list[int] | None = None
) -> tuple[str, ...]:
    """One ``{name}/seed{s}/metrics.json`` per value, holding only its ``top1``.

    The files hold no ``seed`` field, so a table reads each seed from the path. Seeds default
    to 0, 1, ...
    """
    out = []
    for i, v in enumerate(values):
        s = seeds[i] if seeds else i
        p = folder / name / f"seed{s}" / "metrics.json"
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps({"top1": v}))
        out.append(str(p))
    return tuple(out)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real DAG (`snakemake all`) on the tiny overlay, run once per session.

    Runs in a scratch copy of the workflow (the package's source linked, not copied) and
    returns that working directory. Tests that change files in it must restore them.
    """
    import sys

    from tests import bounded

    work = copy_workflow(tmp_path_factory.mktemp("tiny_run"))
    cmd = [sys.executable, "-m", "snakemake", "all", "--cores", "2"]
    cmd += ["--configfile", "config/demo.yaml", "config/tiny.yaml"]
    proc = bounded.run(cmd, what="Snakemake run of the tiny DAG", timeout=bounded.DAG, cwd=work)
    if proc.returncode != 0:
        pytest.fail(f"tiny DAG run failed ({' '.join(cmd)}):\n{proc.stderr[-4000:]}")
    return work


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Name the CPU and the kernel levels this run used (numbers and faults depend on them)."""
    import os
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    limits = {
        k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if k in os.environ
    }
    return [
        f"cpu: {cpu}; torch {torch.__version__} kernels: {torch.backends.cpu.get_cpu_capability()}"
        f"; limits: {limits or 'none'}"
    ]
