"""Provenance records as the audit reads them, and what it reports: problems and a result.

A record is a job's ``provenance.json`` (or a table's ``<table>.provenance.json``): ``rule``,
``inputs`` and ``outputs`` (path -> sha256), ``config``, ``code`` and more (DESIGN.md,
"Provenance contract"). Reading one that is missing or malformed raises :class:`AuditError`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustkd.errors import RobustKDError

__all__ = [
    "PROVENANCE",
    "RESULTS",
    "AuditError",
    "AuditResult",
    "Problem",
    "check_record",
    "config_strings",
    "flatten",
    "is_data",
    "load_json",
    "metric_value",
    "norm",
]

PROVENANCE = "provenance.json"
# Pipeline outputs live here; a file here must have a provenance record.
RESULTS = "results"


class AuditError(RobustKDError):
    """The audit cannot start or read a record: unknown table, missing or malformed file."""


@dataclass(frozen=True)
class Problem:
    """A break in the chain.

    Attributes:
        kind: ``missing`` (file gone), ``changed`` (hash differs), ``overwritten`` (the
            record of its folder was written by a job that did not produce it),
            ``unrecorded`` (an output no provenance lists), ``no-provenance`` (a pipeline
            output without any record), ``malformed`` (an unreadable record), ``value`` (a
            table value the metrics file no longer holds), ``code`` (a record claims a clean
            commit, but the package source it imported differs from that commit's files).
        path: The file concerned.
        detail: What was expected and found.
    """

    kind: str
    path: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.path} ({self.detail})"


@dataclass
class AuditResult:
    """The outcome of an audit.

    Attributes:
        problems: Every break, in the order the walk met them (the first is the one to fix).
        warnings: Weak links that do not fail the audit (e.g. a file used but not hashed).
        cells: Cells audited.
        links: Distinct jobs (provenance records) audited.
        files: Distinct files re-hashed.
        commits: Code version (commit, dirty) -> number of links that ran on it.
        summary: The closing lines (verdict, problems, first failing file, warnings).
    """

    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    cells: int = 0
    links: int = 0
    files: int = 0
    commits: dict[tuple[str | None, bool | None], int] = field(default_factory=dict)
    summary: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing in the chain is missing or changed."""
        return not self.problems


def norm(path: str | os.PathLike[str]) -> str:
    """A path as records spell it: normalised (``a/./b/../c`` -> ``a/c``), as a string."""
    return os.path.normpath(os.fspath(path))


def load_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object read from ``path``.

    Raises:
        AuditError: The file is missing, unreadable or not a JSON object (``what`` names it).
    """
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise AuditError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AuditError(f"{path}: malformed {what} ({exc})") from None
    if not isinstance(data, dict):
        raise AuditError(f"{path}: malformed {what} (not a JSON object)")
    return data


def check_record(rec: Mapping[str, Any], path: Path) -> None:
    """Check that a record has a rule and its inputs and outputs as path -> sha256.

    Raises:
        AuditError: A key is missing or of the wrong form (the message names ``path``).
    """
    for key in ("rule", "inputs", "outputs"):
        if key not in rec:
            raise AuditError(f"{path}: malformed provenance (no {key!r})")
    for key in ("inputs", "outputs"):
        files = rec[key]
        if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
            raise AuditError(f"{path}: malformed provenance ({key!r} is not path -> sha256)")


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf of a nested config, with its dotted key, keys sorted at each level."""
    if isinstance(value, Mapping) and value:
        for k in sorted(value, key=str):
            yield from flatten(value[k], f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, value


def config_strings(value: Any) -> Iterator[tuple[str, str]]:
    """Every string in a config, with its dotted key."""
    for key, v in flatten(value):
        if isinstance(v, str):
            yield key, v


def is_data(path: str) -> bool:
    """A prepared or raw dataset file (walked after the models that used it)."""
    parts = Path(path).parts
    return Path(path).name == "manifest.csv" or parts[:2] in (
        (RESULTS, "data"),
        (RESULTS, "raw_demo"),
    )


def metric_value(path: Path, metric: str) -> float | None:
    """``metric`` of a metrics file; None if absent.

    A dotted key reads a nested value, a number in it indexes a list (``results.3.top1``).
    """
    try:
        value: Any = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    keys = [metric] if isinstance(value, dict) and metric in value else metric.split(".")
    for key in keys:
        if isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]  # a list item: ``results.3.top1`` (Fig 2's ladder files)
            continue
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
