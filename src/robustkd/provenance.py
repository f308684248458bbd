"""Provenance records: what produced an output, from which inputs, with which code and config.

Every job writes a ``provenance.json`` beside its outputs (see DESIGN.md, "Provenance
contract"). This module builds those records.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from robustkd.atomic import write_json_atomic
from robustkd.codesource import compare_with_commit, imported_source

__all__ = [
    "RECORD",
    "code_digest",
    "code_record",
    "code_version",
    "hardware",
    "now_iso",
    "record_beside",
    "run_record",
    "run_wildcards",
    "sha256_file",
    "software_versions",
    "write_provenance",
]

# A job's provenance record (DESIGN.md, "Provenance contract"): one path per job, declared as
# an output of its rule, so that no two jobs can write the same record (tests/test_dag_paths.py).
RECORD = "provenance.json"


def run_record(output: str | os.PathLike[str]) -> str:
    """The record of the run folder that holds ``output`` (a training or preparation job's).

    ``results/distill/ours/mask-0.90/seed0/student.pth`` -> ``.../seed0/provenance.json``.
    """
    return str(Path(output).parent / RECORD)


def record_beside(output: str | os.PathLike[str]) -> str:
    """The record of a job whose output shares its folder with other jobs' outputs.

    ``.../mask-0.90/ladder.json`` -> ``.../mask-0.90/ladder.provenance.json``: the evaluation
    jobs of one (method, distortion) write into one folder, each its own record.
    """
    p = Path(output)
    return str(p.with_name(f"{p.stem}.{RECORD}"))


_PACKAGES = ("torch", "torchvision", "timm", "snakemake", "numpy", "pandas", "pillow")


def now_iso() -> str:
    """Return the current UTC time in ISO 8601 with seconds."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of a file (symlinks are followed).

    Args:
        path: The file to hash.

    Returns:
        The 64-character lowercase hex digest.
    """
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def code_version(repo: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Return the git commit and dirty flag of the code, or ``None`` values outside git.

    Args:
        repo: A folder inside the repository; defaults to this package's folder.

    Returns:
        ``{"commit": str | None, "dirty": bool | None}``.
    """
    where = str(repo or Path(__file__).resolve().parent)
    try:
        commit = subprocess.run(
            ["git", "-C", where, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", where, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status.strip())}


@functools.cache
def code_digest() -> str:
    """sha256 over the source of the imported ``robustkd`` package (every ``.py`` file).

    Unlike the git commit it changes with uncommitted edits, and it ignores everything outside
    the package (tests, docs, the workflow's adapters). It names the package as a whole (the
    training loop's resume identity); :func:`code_record` names the files a job imported.
    """
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def code_record() -> dict[str, Any]:
    """Return the code of this process: git commit, dirty flag, and the source it imported.

    The commit is that of the repository holding the *imported* package (None for a copy outside
    git, e.g. one installed in site-packages). ``source`` is
    :func:`robustkd.codesource.imported_source`: the package's folder and the sha256 of every
    module file it compiled. The record is dirty when git reports changed tracked files or when
    an imported file differs from (or is absent in) the commit, such as a new module not yet
    committed: a clean record means the commit's files are exactly what ran.

    Returns:
        ``{"commit", "dirty", "source": {"package", "files", "sha256", "installed_on_purpose"}}``.
    """
    source = imported_source()
    record: dict[str, Any] = {**code_version(source["package"]), "source": source}
    if record["commit"] is not None and compare_with_commit(record, source["package"]):
        record["dirty"] = True
    return record


def software_versions() -> dict[str, str | None]:
    """Return the versions of Python and the packages that shape results."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict[str, Any]:
    """Return what the computer adds to a result: CPU, torch's CPU kernels, threads, GPUs.

    Float rounding, and so the trained weights, depends on the kernels a CPU selects
    (``torch_cpu_capability``: AVX2, AVX512, ...) and on the thread count: the same seed and code
    give bit-identical results on one kind of machine, not across kinds. The torch fields are
    ``None`` in a job that did not import torch (the table jobs; the report environment has no
    torch at all): importing it here would cost such a job a second or two for nothing.
    """
    info: dict[str, Any] = {
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "torch_cpu_capability": None,
        "torch_threads": None,
        "cuda_devices": None,
    }
    torch = sys.modules.get("torch")
    if torch is None:
        return info
    info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    info["torch_threads"] = torch.get_num_threads()
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(count)]
    return info


def run_wildcards(wildcards: Mapping[str, Any] | None, seed: int) -> dict[str, Any]:
    """The wildcards one seed's run records: the job's, with ``seed`` set to that run's seed.

    A training job trains one seed (its ``seed`` wildcard) or every seed (no ``seed``
    wildcard), as ``jobs.seeds_per_job`` says; either way a run's provenance names the same
    wildcards, those of its output paths (``.../seed<s>/...``), as a string like Snakemake's.
    """
    return {**dict(wildcards or {}), "seed": str(seed)}


def _hash_paths(paths: Iterable[str | os.PathLike[str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for f in sorted(q for q in p.rglob("*") if q.is_file() and q.name != RECORD):
                out[str(f)] = sha256_file(f)
        elif p.is_file():
            out[str(p)] = sha256_file(p)
    return out


def write_provenance(
    path: str | os.PathLike[str],
    *,
    rule: str,
    inputs: Iterable[str | os.PathLike[str]] = (),
    outputs: Iterable[str | os.PathLike[str]] = (),
    wildcards: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    seed: int | None = None,
    started: str | None = None,
    device: str = "cpu",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write a provenance record for one job and return it.

    Args:
        path: Where to write ``provenance.json``.
        rule: The Snakemake rule (or command) that ran.
        inputs: Input files or folders; every file is hashed (folders recursively).
        outputs: Output files or folders; hashed likewise (``provenance.json`` itself excluded).
        wildcards: The job's wildcards.
        config: The resolved config values the job used.
        seed: The job's random seed, if any.
        started: Start time (ISO 8601); defaults to now.
        device: The device the job computed on.
        extra: Further job-specific fields.

    Returns:
        The record as written.
    """
    record: dict[str, Any] = {
        "rule": rule,
        "wildcards": dict(wildcards or {}),
        "config": dict(config or {}),
        "seed": seed,
        "inputs": _hash_paths(inputs),
        "outputs": _hash_paths(outputs),
        "code": code_record(),
        "software": software_versions(),
        "device": device,
        "hardware": hardware(),
        "argv": list(sys.argv),
        # Where the job ran: its relative paths start here (the audit reads them from another
        # run's directory against it).
        "workdir": str(Path.cwd()),
        "started": started or now_iso(),
        "finished": now_iso(),
    }
    if extra:
        record.update(extra)
    write_json_atomic(path, record)
    return record
