"""The files each job of a Snakemake DAG writes, and the rule that every file has one writer.

A job's provenance record is one of its declared outputs (``provenance.json`` in its run
folder, ``<name>.provenance.json`` beside its output, or inside a ``directory()`` output), so
Snakemake itself knows every file a job writes. Two jobs that write the same path, or one job
that writes inside another's output folder, overwrite each other's work without a word: the
later job silently replaces the earlier one's record, and the audit of every number resting on
it then fails. :func:`collisions` finds such pairs in the jobs of a dry run
(:func:`dry_run`), for every target at once, so that a collision between jobs of two targets
run one after the other (``all``, then ``beyond``) is found too.

The jobs come from Snakemake's own dry-run listing (``rule NAME:`` blocks with ``output:``,
``log:``, ``benchmark:`` and ``wildcards:`` lines), the same text :mod:`robustkd.plan` reads.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from robustkd.errors import RobustKDError

__all__ = [
    "RECORD_NAME",
    "Collision",
    "DagError",
    "DagJob",
    "collisions",
    "dry_run",
    "failure_reason",
    "parse_jobs",
    "target_rules",
]

# The name (or suffix: ``ladder.provenance.json``) of every provenance record.
RECORD_NAME = "provenance.json"


class DagError(RobustKDError):
    """Snakemake could not list the jobs of a DAG (its message is included).

    Attributes:
        output: Everything Snakemake printed (stdout, then stderr).
    """

    def __init__(self, message: str, output: str = "") -> None:
        """Create the error; ``output`` is what Snakemake printed."""
        super().__init__(message)
        self.output = output


# Snakemake's start-up lines before the DAG is built: not the reason it failed.
_BANNER = re.compile(
    r"^(Config file .* is extended by additional config specified via the command line\."
    r"|Assuming unrestricted shared filesystem usage\.|SNAKEMAKE|=+|  \w[\w ()]*: .*"
    r"|Building DAG of jobs\.\.\.|host: .*)$"
)


def failure_reason(output: str) -> str:
    """What Snakemake said about why it failed: its output without the start-up banner.

    Snakemake 9 writes the error to stdout after a banner (date, versions, paths, config
    files); the banner's lines and the blank lines around it are left out.
    """
    lines = [ln for ln in output.splitlines() if ln.strip() and not _BANNER.match(ln)]
    return "\n".join(lines).strip()


@dataclass(frozen=True)
class DagJob:
    """One job of a dry run.

    Attributes:
        rule: The rule's name.
        wildcards: The job's wildcards (name -> value, as Snakemake prints them).
        outputs: Declared output files and folders, records included.
        logs: Log files.
        benchmarks: Benchmark files.
    """

    rule: str
    wildcards: dict[str, str] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    logs: tuple[str, ...] = ()
    benchmarks: tuple[str, ...] = ()

    @property
    def written(self) -> tuple[str, ...]:
        """Every path the job writes: outputs, logs and benchmarks, normalised."""
        return tuple(os.path.normpath(p) for p in (*self.outputs, *self.logs, *self.benchmarks))

    @property
    def records(self) -> tuple[str, ...]:
        """The declared outputs that are provenance records (``*provenance.json``)."""
        return tuple(p for p in self.outputs if os.path.basename(p).endswith(RECORD_NAME))

    def __str__(self) -> str:
        wc = ", ".join(f"{k}={v}" for k, v in self.wildcards.items())
        return f"rule {self.rule}" + (f" [{wc}]" if wc else "")


def _paths(line: str, key: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in line.removeprefix(f"{key}:").split(",") if p.strip())


def parse_jobs(text: str) -> list[DagJob]:
    """Parse Snakemake's dry-run listing into jobs, in listing order.

    Args:
        text: What ``snakemake --dry-run`` printed (stdout and stderr together).

    Returns:
        One :class:`DagJob` per ``rule NAME:`` (or ``localrule NAME:``) block.
    """
    jobs: list[dict[str, object]] = []
    for line in text.splitlines():
        stripped = line.strip()
        m = re.match(r"^(?:local)?rule (\w+):$", stripped)
        if m:
            jobs.append({"rule": m.group(1), "wildcards": {}})
            continue
        if not jobs or not line.startswith("    "):
            continue
        job = jobs[-1]
        if stripped.startswith("wildcards:"):
            pairs = stripped.removeprefix("wildcards:").split(",")
            wc = job["wildcards"]
            assert isinstance(wc, dict)
            wc.update(p.strip().split("=", 1) for p in pairs if "=" in p)
        for key, attr in (("output", "outputs"), ("log", "logs"), ("benchmark", "benchmarks")):
            if stripped.startswith(f"{key}:"):
                job[attr] = _paths(stripped, key)
    return [DagJob(**j) for j in jobs]  # type: ignore[arg-type]


def _snakemake(args: Sequence[str], cwd: str | os.PathLike[str]) -> str:
    cmd = [sys.executable, "-m", "snakemake", *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        output = f"{proc.stdout}\n{proc.stderr}"
        said = failure_reason(output)[-3000:]
        raise DagError(f"snakemake failed ({' '.join(cmd)}):\n{said or '(no output)'}", output)
    return proc.stdout + proc.stderr


def _common(
    configfiles: Sequence[str | os.PathLike[str]], snakefile: str | os.PathLike[str] | None
) -> list[str]:
    args = ["--snakefile", str(snakefile)] if snakefile is not None else []
    return args + (["--configfile", *map(str, configfiles)] if configfiles else [])


def dry_run(
    targets: Sequence[str],
    configfiles: Sequence[str | os.PathLike[str]] = (),
    *,
    snakefile: str | os.PathLike[str] | None = None,
    workdir: str | os.PathLike[str] = ".",
    forceall: bool = True,
) -> list[DagJob]:
    """Every job of ``targets`` from a Snakemake dry run (forced: whatever exists already).

    Raises:
        DagError: Snakemake failed; the message holds what it said on stdout and stderr.
    """
    args = [*targets, "--dry-run", "--cores", "1", *_common(configfiles, snakefile)]
    return parse_jobs(_snakemake([*args, *(["--forceall"] if forceall else [])], workdir))


def target_rules(
    configfiles: Sequence[str | os.PathLike[str]] = (),
    *,
    snakefile: str | os.PathLike[str] | None = None,
    workdir: str | os.PathLike[str] = ".",
) -> list[str]:
    """The workflow's named targets (``snakemake --list-target-rules``), sorted.

    Raises:
        DagError: Snakemake failed.
    """
    text = _snakemake(["--list-target-rules", *_common(configfiles, snakefile)], workdir)
    return sorted({ln.strip() for ln in text.splitlines() if re.fullmatch(r"\s*\w+\s*", ln)})


@dataclass(frozen=True)
class Collision:
    """Two jobs that write the same path, or one inside the other's output folder.

    Attributes:
        path: The path both write (for ``inside``: the inner one).
        first: The job that declares ``path`` (for ``inside``: the folder's job).
        second: The other job.
        inside: True when ``path`` lies inside a folder that ``first`` writes.
    """

    path: str
    first: DagJob
    second: DagJob
    inside: bool = False

    def __str__(self) -> str:
        how = "writes inside the output folder of" if self.inside else "also writes"
        return f"{self.path}: {self.second} {how} {self.first}"


def collisions(jobs: Iterable[DagJob]) -> list[Collision]:
    """Every pair of jobs that write the same path or one inside the other's output folder.

    A job's own outputs may nest (a run folder and its files); only pairs of distinct jobs
    count. Jobs listed twice (the same rule and wildcards) are one job.

    Returns:
        The collisions, sorted by path.
    """
    owner: dict[str, DagJob] = {}
    found: list[Collision] = []
    unique = {(j.rule, tuple(sorted(j.wildcards.items()))): j for j in jobs}
    for job in unique.values():
        for path in job.written:
            other = owner.setdefault(path, job)
            if other is not job:
                found.append(Collision(path, other, job))
    # A path inside another job's output: compare each path with every ancestor folder.
    for path, job in owner.items():
        parent = os.path.dirname(path)
        while parent:
            other = owner.get(parent)
            if other is not None and other is not job:
                found.append(Collision(path, other, job, inside=True))
                break
            parent = os.path.dirname(parent)
    return sorted(found, key=lambda c: (c.path, c.first.rule, c.second.rule))
