"""The audit's checks: re-hash a file against a recorded sha256, find the job that made it.

:class:`Checker` holds what one audit has learnt so far (each file is hashed once, each record
read once) and the problems it found, in the order it met them.
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
        self._reported: set[tuple[str, str]] = set()
        # (commit, source digest) -> files that differ from the commit (None: not checkable).
        self._code: dict[tuple[str, str], list[str] | None] = {}

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

    def _record(self, prov: str) -> dict[str, Any] | None:
        """A provenance record, read once; None (and a problem) when unreadable."""
        if prov not in self._records:
            try:
                rec = load_json(self._abs(prov), "provenance record")
                check_record(rec, Path(prov))
            except AuditError as exc:
                kind = "missing" if not self._abs(prov).exists() else "malformed"
                self._problem(kind, prov, str(exc))
                rec = None
            self._records[prov] = rec
            self._outputs[prov] = {norm(k) for k in rec["outputs"]} if rec else set()
        return self._records[prov]

    def producer(self, path: str) -> str | None:
        """The provenance record that lists ``path`` among its outputs, or None.

        Looks in the file's folder and each folder above it (within the project for relative
        paths). A pipeline output (under ``results/``) that no record lists is a problem.
        """
        target = norm(path)
        p = Path(target)
        first_seen = unreadable = None
        for folder in p.parents:
            cand = folder / PROVENANCE
            if not self._abs(cand).is_file():
                continue
            prov = norm(cand)
            if self._record(prov) is None:
                unreadable = unreadable or prov
            elif target in self._outputs[prov]:
                return prov
            first_seen = first_seen or prov
        if p.parts[:1] == (RESULTS,):
            if unreadable:
                self._problem("no-provenance", target, f"its record {unreadable} is unreadable")
            elif first_seen:
                self._problem("unrecorded", target, f"{first_seen} does not list it as an output")
            else:
                self._problem(
                    "no-provenance",
                    target,
                    f"no {norm(p.parent / PROVENANCE)} (nor any above) records how it was made",
                )
        return None

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
