"""The audit's checks: re-hash a file against a recorded sha256, find the job that made it.

:class:`Checker` holds what one audit has learnt so far (each file is hashed once, each record
read once) and the problems it found, in the order it met them.

A record's relative paths start in the working directory of the run that wrote it. That is
the audit's root for every record found under it (results moved or copied together keep
their relative paths). A record reached by an absolute path outside the root (a config
pointing at another run's data: ``root: /scratch/run1/results/raw_demo/imagenet100``) was
written by another run: its relative paths start in that run's directory, the ``workdir`` the
record names when the record lies under it, else the folder holding the record's ``results/``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from robustkd.audit.records import (
    PROVENANCE,
    RESULTS,
    AuditError,
    AuditResult,
    Problem,
    check_record,
    load_json,
    norm,
)
from robustkd.codesource import compare_with_commit
from robustkd.provenance import sha256_file

__all__ = ["Checker", "short"]


def short(sha: str | None) -> str:
    """The first 12 hex digits of a sha256 (``?`` when unknown)."""
    return (sha or "?")[:12]


class Checker:
    """Re-hashes files and reads provenance records for one audit, each once.

    Args:
        root: The project root; relative paths in records are relative to it.
    """

    def __init__(self, root: str | os.PathLike[str] = ".") -> None:
        self.root = Path(root)
        self.result = AuditResult()
        self._hashes: dict[Path, str | None] = {}
        self._records: dict[str, dict[str, Any] | None] = {}
        self._outputs: dict[str, set[str]] = {}
        # Folder -> its records (``provenance.json``, ``<name>.provenance.json``), listed once.
        self._folders: dict[Path, list[str]] = {}
        self._reported: set[tuple[str, str]] = set()
        # (commit, source digest) -> files that differ from the commit (None: not checkable).
        self._code: dict[tuple[str, str], list[str] | None] = {}
        # Record -> the other run's directory its relative paths start in (not the root).
        self._bases: dict[str, Path] = {}

    def _abs(self, path: str | os.PathLike[str]) -> Path:
        p = Path(path)
        return p if p.is_absolute() else self.root / p

    def _problem(self, kind: str, path: str, detail: str) -> None:
        if (kind, path) not in self._reported:
            self._reported.add((kind, path))
            self.result.problems.append(Problem(kind, path, detail))

    def _hash(self, path: str) -> str | None:
        """sha256 of a file (links followed), once per audit; None when missing."""
        p = self._abs(path)
        key = p.resolve() if p.exists() else p
        if key not in self._hashes:
            self._hashes[key] = sha256_file(p) if p.is_file() else None
            self.result.files += p.is_file()
        return self._hashes[key]

    def check(self, path: str, recorded: str, where: str) -> bool:
        """Re-hash ``path`` and compare with the sha256 that ``where`` recorded for it."""
        actual = self._hash(path)
        if actual is None:
            self._problem("missing", path, f"recorded by {where}")
            return False
        if actual != recorded:
            self._problem(
                "changed",
                path,
                f"sha256 {short(recorded)}... recorded by {where}, now {short(actual)}...",
            )
            return False
        return True

    def run_root(self, prov: str, rec: Mapping[str, Any]) -> Path | None:
        """The directory of the run that wrote ``prov``, when it is not the audit's root.

        None for a record found under the root (a relative path): its relative paths start at
        the root. For one outside it (an absolute path, or one leaving the root with ``..``):
        the ``workdir`` it names, if the record lies under that folder's ``results/``; else
        the folder above the last ``results`` of its path.
        """
        p = Path(prov)
        if not p.is_absolute():
            if p.parts[:1] != ("..",):
                return None
            p = Path(norm(self.root.absolute() / p))
        root = self.root.resolve()
        candidates = []
        if isinstance(rec.get("workdir"), str) and Path(rec["workdir"]).is_absolute():
            candidates.append(Path(rec["workdir"]))
        parts = p.parent.parts
        if RESULTS in parts:
            last = len(parts) - 1 - parts[::-1].index(RESULTS)
            candidates.append(Path(*parts[:last]))
        for base in candidates:
            if p.is_relative_to(base / RESULTS):
                return None if base.resolve() == root else base
        return None

    def _rebased(self, prov: str, rec: dict[str, Any]) -> dict[str, Any]:
        """``rec`` with its relative inputs and outputs made absolute at its run's directory.

        Only for a record of another run (:meth:`run_root`); others are returned as they are.
        """
        base = self.run_root(prov, rec)
        if base is None:
            return rec
        self._bases[prov] = base
        for key in ("inputs", "outputs"):
            rec[key] = {self.at(prov, path): sha for path, sha in rec[key].items()}
        return rec

    def at(self, prov: str, path: str) -> str:
        """A path that record ``prov`` names, as the audit names it.

        Relative paths of another run's record start in that run's directory.
        """
        base = self._bases.get(prov)
        if base is None or Path(path).is_absolute():
            return norm(path)
        return norm(base / path)

    def in_results(self, path: str) -> bool:
        """A pipeline output: under ``results/`` of the root or of another run's directory."""
        p = Path(path)
        if not p.is_absolute():
            return p.parts[:1] == (RESULTS,)
        return any(p.is_relative_to(base / RESULTS) for base in {*self._bases.values()})

    def _record(self, prov: str) -> dict[str, Any] | None:
        """A provenance record, read once; None (and a problem) when unreadable."""
        if prov not in self._records:
            try:
                rec = load_json(self._abs(prov), "provenance record")
                check_record(rec, Path(prov))
                rec = self._rebased(prov, rec)
            except AuditError as exc:
                kind = "missing" if not self._abs(prov).exists() else "malformed"
                self._problem(kind, prov, str(exc))
                rec = None
            self._records[prov] = rec
            self._outputs[prov] = {norm(k) for k in rec["outputs"]} if rec else set()
        return self._records[prov]

    def _records_in(self, folder: Path) -> list[str]:
        """The records of one folder: ``provenance.json`` first, then ``*.provenance.json``."""
        if folder not in self._folders:
            where = self._abs(folder)
            named = sorted(where.glob(f"*.{PROVENANCE}")) if where.is_dir() else []
            found = [where / PROVENANCE] if (where / PROVENANCE).is_file() else []
            self._folders[folder] = [norm(folder / p.name) for p in found + named if p.is_file()]
        return self._folders[folder]

    def producer(self, path: str) -> str | None:
        """The provenance record that lists ``path`` among its outputs, or None.

        Looks at the records (``provenance.json`` and ``<name>.provenance.json``: each job has
        its own) of the file's folder and of each folder above it (within the project for
        relative paths). A pipeline output (under ``results/``) that no record lists is a
        problem: ``overwritten`` when a record in its own folder was written by a job that did
        not produce it (runs made before every job had a record of its own: ``evaluate_ladder``
        and ``evaluate_corruptions`` shared one), ``unrecorded`` when only a folder above
        has a record.
        """
        target = norm(path)
        p = Path(target)
        first_seen = unreadable = None
        for folder in p.parents:
            for prov in self._records_in(folder):
                if self._record(prov) is None:
                    unreadable = unreadable or prov
                elif target in self._outputs[prov]:
                    return prov
                first_seen = first_seen or prov
        if self.in_results(target):
            if unreadable:
                self._problem("no-provenance", target, f"its record {unreadable} is unreadable")
            elif first_seen:
                self._unlisted(target, first_seen)
            else:
                self._problem(
                    "no-provenance",
                    target,
                    f"no {norm(p.parent / PROVENANCE)} (nor any above) records how it was made",
                )
        return None

    def _unlisted(self, target: str, prov: str) -> None:
        """Report a pipeline output that the nearest record (``prov``) does not list."""
        rec = self._records.get(prov) or {}
        wildcards = ", ".join(f"{k}={v}" for k, v in (rec.get("wildcards") or {}).items())
        by = f"rule {rec.get('rule', '?')}" + (f" [{wildcards}]" if wildcards else "")
        name = Path(target).name
        if Path(prov).parent == Path(target).parent:
            self._problem(
                "overwritten",
                target,
                f"{prov} was written by {by}, which did not produce {name}: the record of the "
                f"job that made {name} is gone (a run of the old layout, where two jobs shared "
                f"one provenance.json). Regenerate it: snakemake --force {target} (with your "
                "--configfile/--profile)",
            )
        else:
            self._problem(
                "unrecorded",
                target,
                f"{prov} (written by {by}) does not list it as an output; no record in its "
                "own folder",
            )

    def _manifest_images(self, manifest: str, outputs: set[str]) -> tuple[int, list[str]]:
        """Re-hash a prepared dataset's images against its manifest's sha256 column."""
        folder = Path(manifest).parent
        n, failed = 0, []
        try:
            with open(self._abs(manifest), newline="") as fh:
                rows = list(csv.DictReader(fh))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            self._problem("malformed", manifest, f"unreadable manifest ({exc})")
            return 0, [manifest]
        arrays = set()
        for row in rows:
            rel = row.get("path") or ""
            sha = (row.get("sha256") or "").strip()
            path = norm(folder / rel)
            if sha:
                n += 1
                if not self.check(path, sha, manifest):
                    failed.append(path)
            elif rel and path not in arrays:
                arrays.add(path)
                if path not in outputs:
                    self._problem(
                        "unrecorded", path, f"rows of {manifest} point to it; no hash recorded"
                    )
                    failed.append(path)
        return n, failed

    def _check_code(self, prov: str, code: Mapping[str, Any]) -> None:
        """A record claiming a clean commit must have imported exactly that commit's files.

        Checked against the commit in the project's git repository (``root``); a record
        without per-file digests (written before they existed), dirty, or whose commit the
        repository lacks is not checked.
        """
        source = code.get("source") or {}
        if code.get("dirty") is not False or not code.get("commit") or not source.get("files"):
            return
        key = (str(code["commit"]), str(source.get("sha256")))
        if key not in self._code:
            # The project's repository, else the one the package was imported from.
            differ = compare_with_commit(code, self.root)
            package = Path(str(source.get("package", "")))
            if differ is None and package.is_absolute() and package.is_dir():
                differ = compare_with_commit(code, package)
            self._code[key] = differ
        differ = self._code[key]
        if differ:
            self._problem(
                "code",
                prov,
                f"claims clean commit {key[0][:12]}, but the robustkd it imported from "
                f"{source.get('package', '?')} differs from that commit in "
                f"{', '.join(differ[:5])}{' ...' if len(differ) > 5 else ''}",
            )
