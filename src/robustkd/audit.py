"""Audit a reported number: walk back from a table cell to the raw data, re-hashing every file.

    robustkd audit results/tables/table1.csv [--cell ROW COL]

The walk (DESIGN.md, "Provenance contract"):

1. the table's ``<table>.provenance.json`` maps each cell to its metrics files, one per seed,
   with their sha256 and the values read; the table's own files are re-hashed;
2. each metrics file leads to the ``provenance.json`` of the job that wrote it (the nearest
   one in its folder or above that lists it among its outputs): the job's outputs and inputs
   are re-hashed against the hashes it recorded;
3. each input (a student, a teacher, a prepared ``manifest.csv``, a raw archive) leads to the
   job that wrote it, recursively, down to the raw data; a prepared dataset's images are
   re-hashed against the sha256 column of its manifest. Files outside ``results/`` (the class
   list, real raw data) are sources: checked against the hash their consumer recorded.

Every link prints its rule, wildcards, seed, code version and the config values it used.
Any file that is missing or whose hash changed is a failure; the audit goes on to show the
whole chain and then names the first failure. Bad input (an unknown table, a missing or
malformed table provenance) raises :class:`AuditError` instead.
"""

from __future__ import annotations

import csv
import json
import os
import textwrap
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustkd.codesource import compare_with_commit
from robustkd.errors import RobustKDError
from robustkd.provenance import sha256_file

__all__ = [
    "AuditError",
    "AuditResult",
    "Auditor",
    "Problem",
    "audit",
    "find_table_provenance",
]

PROVENANCE = "provenance.json"
# Where tables live, for a table given by name (``table1``, ``craft_table``).
TABLE_DIRS = ("results/tables", "results/craft/tables")
_TABLE_SUFFIXES = (".provenance.json", ".csv", ".md", ".tex", ".html")
_FIGURE_SUFFIXES = (".provenance.json", ".png", ".pdf", ".csv")
# Pipeline outputs live here; a file here must have a provenance record.
_RESULTS = "results"


class AuditError(RobustKDError):
    """The audit cannot start or read a record: unknown table, missing or malformed file."""


@dataclass(frozen=True)
class Problem:
    """A break in the chain.

    Attributes:
        kind: ``missing`` (file gone), ``changed`` (hash differs), ``unrecorded`` (an output
            no provenance lists), ``no-provenance`` (a pipeline output without any record),
            ``malformed`` (an unreadable record), ``value`` (a table value the metrics file
            no longer holds), ``code`` (a record claims a clean commit, but the package source
            it imported differs from that commit's files).
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


def _norm(path: str | os.PathLike[str]) -> str:
    return os.path.normpath(os.fspath(path))


def _load_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise AuditError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AuditError(f"{path}: malformed {what} ({exc})") from None
    if not isinstance(data, dict):
        raise AuditError(f"{path}: malformed {what} (not a JSON object)")
    return data


def _check_record(rec: Mapping[str, Any], path: Path) -> None:
    for key in ("rule", "inputs", "outputs"):
        if key not in rec:
            raise AuditError(f"{path}: malformed provenance (no {key!r})")
    for key in ("inputs", "outputs"):
        files = rec[key]
        if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
            raise AuditError(f"{path}: malformed provenance ({key!r} is not path -> sha256)")


def _machine(rec: Mapping[str, Any]) -> str:
    """Where a job computed: its device and, if recorded, torch's CPU kernels and threads."""
    device = str(rec.get("device", "?"))
    hw = rec.get("hardware")
    if not isinstance(hw, Mapping) or hw.get("torch_cpu_capability") is None:
        return device
    threads = hw.get("torch_threads")
    return f"{device} ({hw['torch_cpu_capability']}, {threads} thread{'' if threads == 1 else 's'})"


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping) and value:
        for k in sorted(value, key=str):
            yield from _flatten(value[k], f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, value


def _strings(value: Any) -> Iterator[tuple[str, str]]:
    """Every string in a config, with its dotted key."""
    for key, v in _flatten(value):
        if isinstance(v, str):
            yield key, v


def _is_data(path: str) -> bool:
    """A prepared or raw dataset file (walked after the models that used it)."""
    parts = Path(path).parts
    return Path(path).name == "manifest.csv" or parts[:2] in (
        (_RESULTS, "data"),
        (_RESULTS, "raw_demo"),
    )


def _metric_value(path: Path, metric: str) -> float | None:
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


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _short(sha: str | None) -> str:
    return (sha or "?")[:12]


def find_table_provenance(target: str | os.PathLike[str], root: str | os.PathLike[str]) -> Path:
    """The ``<table>.provenance.json`` of a table given by name or by any of its files.

    Args:
        target: ``table1``, ``results/tables/table1.csv`` (or ``.md``, ``.tex``, ``.html``,
            ``.provenance.json``).
        root: The project root (where ``results/`` is).

    Returns:
        The path of the table's provenance (relative to ``root`` if ``target`` was).

    Raises:
        AuditError: No such table.
    """
    root = Path(root)
    text = os.fspath(target)
    cand = _table_candidate(text)
    if cand is not None:
        prov = Path(cand)
        if not (root / prov).is_file():
            what = "table file" if (root / text).exists() else "table"
            raise AuditError(
                f"{prov}: no table provenance for {what} {text} "
                "(was the table built by this version of the pipeline?)"
            )
        return prov
    if "/" not in text:
        for folder in TABLE_DIRS:
            prov = Path(folder) / f"{text}.provenance.json"
            if (root / prov).is_file():
                return prov
        known = sorted(
            p.name[: -len(".provenance.json")]
            for folder in TABLE_DIRS
            if (root / folder).is_dir()
            for p in (root / folder).glob("*.provenance.json")
        )
        raise AuditError(
            f"unknown table {text!r}: no {TABLE_DIRS[0]}/{text}.provenance.json "
            f"(tables here: {', '.join(known) or 'none'})"
        )
    raise AuditError(f"{text}: not a table (expected <table>.csv, .md, .tex, .html or a name)")


class Auditor:
    """Walks provenance records from a table or a file down to the raw data.

    Args:
        root: The project root; relative paths in records are relative to it.
        echo: Receives each line of the printed chain.
    """

    def __init__(
        self, root: str | os.PathLike[str] = ".", echo: Callable[[str], None] = print
    ) -> None:
        self.root = Path(root)
        self.echo = echo
        self.result = AuditResult()
        self._hashes: dict[Path, str | None] = {}
        self._records: dict[str, dict[str, Any] | None] = {}
        self._outputs: dict[str, set[str]] = {}
        self._audited: dict[str, bool] = {}
        self._reported: set[tuple[str, str]] = set()
        # (file, config key, its producer) -> jobs that use the file without hashing it.
        self._unhashed: dict[tuple[str, str, str], list[str]] = {}
        # (commit, source digest) -> files that differ from the commit (None: not checkable).
        self._code: dict[tuple[str, str], list[str] | None] = {}

    # ------------------------------------------------------------------------------------------
    # Files and records
    # ------------------------------------------------------------------------------------------

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
                f"sha256 {_short(recorded)}... recorded by {where}, now {_short(actual)}...",
            )
            return False
        return True

    def _record(self, prov: str) -> dict[str, Any] | None:
        """A provenance record, read once; None (and a problem) when unreadable."""
        if prov not in self._records:
            try:
                rec = _load_json(self._abs(prov), "provenance record")
                _check_record(rec, Path(prov))
            except AuditError as exc:
                kind = "missing" if not self._abs(prov).exists() else "malformed"
                self._problem(kind, prov, str(exc))
                rec = None
            self._records[prov] = rec
            self._outputs[prov] = {_norm(k) for k in rec["outputs"]} if rec else set()
        return self._records[prov]

    def producer(self, path: str) -> str | None:
        """The provenance record that lists ``path`` among its outputs, or None.

        Looks in the file's folder and each folder above it (within the project for relative
        paths). A pipeline output (under ``results/``) that no record lists is a problem.
        """
        target = _norm(path)
        p = Path(target)
        first_seen = unreadable = None
        for folder in p.parents:
            cand = folder / PROVENANCE
            if not self._abs(cand).is_file():
                continue
            prov = _norm(cand)
            if self._record(prov) is None:
                unreadable = unreadable or prov
            elif target in self._outputs[prov]:
                return prov
            first_seen = first_seen or prov
        if p.parts[:1] == (_RESULTS,):
            if unreadable:
                self._problem("no-provenance", target, f"its record {unreadable} is unreadable")
            elif first_seen:
                self._problem("unrecorded", target, f"{first_seen} does not list it as an output")
            else:
                self._problem(
                    "no-provenance",
                    target,
                    f"no {_norm(p.parent / PROVENANCE)} (nor any above) records how it was made",
                )
        return None

    # ------------------------------------------------------------------------------------------
    # Printing
    # ------------------------------------------------------------------------------------------

    def _say(self, depth: int, text: str) -> None:
        self.echo("  " * depth + text)

    def _say_wrapped(self, depth: int, label: str, items: list[str]) -> None:
        if not items:
            return
        indent = "  " * depth
        lines = textwrap.wrap(
            "  ".join(items),
            width=max(60, 100 - len(indent)),
            initial_indent=f"{label} ",
            subsequent_indent=" " * (len(label) + 1),
            break_on_hyphens=False,
        )
        for line in lines:
            self.echo(indent + line)

    def _status(self, depth: int, checked: dict[str, int], failed: list[str]) -> None:
        parts = [_plural(n, what) for what, n in checked.items() if n]
        if failed:
            for path in failed:
                self._say(depth, f"FAILED {path}")
        self._say(depth, ("ok     " if not failed else "broken ") + ", ".join(parts) + " re-hashed")

    # ------------------------------------------------------------------------------------------
    # The walk
    # ------------------------------------------------------------------------------------------

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
            path = _norm(folder / rel)
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

    def _references(self, rec: Mapping[str, Any], hashed: set[str]) -> list[tuple[str, str]]:
        """Files and prepared folders the job's config names but whose hash it did not record."""
        found: dict[str, str] = {}
        values = list(_strings(rec.get("config", {})))
        if isinstance(rec.get("source"), str):
            values.append(("source", rec["source"]))
        for key, value in values:
            if not value or "\n" in value or len(value) > 4096:
                continue
            p = self._abs(value)
            try:
                if p.is_file() and _norm(value) not in hashed:
                    found.setdefault(_norm(value), key)
                elif p.is_dir() and (p / PROVENANCE).is_file():
                    found.setdefault(_norm(Path(value) / PROVENANCE), key)
            except OSError:
                continue
        return [(key, ref) for ref, key in found.items()]

    def audit_link(self, prov: str, depth: int = 0, via: str = "") -> bool:
        """Audit one job's record and, recursively, the jobs that made its inputs.

        Args:
            prov: The ``provenance.json`` of the job.
            depth: Indentation of the printed chain.
            via: How the walk got here (printed).

        Returns:
            True when this link and everything below it are intact.
        """
        prov = _norm(prov)
        if prov in self._audited:
            state = "ok" if self._audited[prov] else "BROKEN"
            rule = (self._records.get(prov) or {}).get("rule", "?")
            self._say(depth, f"<- {rule}  {prov}  (audited above: {state})")
            return self._audited[prov]
        self._audited[prov] = False
        rec = self._record(prov)
        if rec is None:
            self._say(depth, f"<- ?  {prov}  UNREADABLE")
            return False
        self.result.links += 1
        code = rec.get("code") or {}
        version = (code.get("commit"), code.get("dirty"))
        self.result.commits[version] = self.result.commits.get(version, 0) + 1
        commit = (version[0] or "unknown")[:12] + (" (dirty)" if version[1] else "")
        self._check_code(prov, code)
        wildcards = " ".join(f"{k}={v}" for k, v in (rec.get("wildcards") or {}).items())
        self._say(depth, f"<- {rec['rule']}  {prov}{f'  [{via}]' if via else ''}")
        d = depth + 2
        seed = rec.get("seed")
        self._say(
            d,
            f"seed {seed if seed is not None else '-'} | commit {commit} | {_machine(rec)} | "
            f"{wildcards or 'no wildcards'} | {rec.get('finished', '?')}",
        )
        self._say_wrapped(
            d,
            "config:",
            [
                f"{k}={json.dumps(v, separators=(',', ':'))}"
                for k, v in _flatten(rec.get("config") or {})
            ],
        )

        failed: list[str] = []
        checked = {"output": 0, "input": 0, "manifest image": 0}
        outputs = {_norm(k): v for k, v in rec["outputs"].items()}
        inputs = {_norm(k): v for k, v in rec["inputs"].items()}
        for path, sha in outputs.items():
            checked["output"] += 1
            if not self.check(path, sha, prov):
                failed.append(path)
        for path in outputs:
            if Path(path).name == "manifest.csv" and path not in failed:
                n, bad = self._manifest_images(path, set(outputs))
                checked["manifest image"] += n
                failed += bad
        for path, sha in inputs.items():
            checked["input"] += 1
            if not self.check(path, sha, prov):
                failed.append(path)
        self._status(d, checked, failed)

        intact = not failed
        followed: set[str] = {prov}
        # Checkpoints before data, so the chain reads model -> student -> teacher -> data.
        for path in sorted(inputs, key=_is_data):
            parent = self.producer(path)
            if parent is not None:
                if parent not in followed:
                    followed.add(parent)
                    intact &= self.audit_link(parent, depth + 1)
            elif Path(path).parts[:1] == (_RESULTS,):
                intact = False
            else:
                self._say(depth + 1, f"<- source  {path}  (not made by the pipeline)")
        for key, ref in self._references(rec, set(inputs) | set(outputs)):
            if Path(ref).name == PROVENANCE:
                if ref not in followed:
                    followed.add(ref)
                    intact &= self.audit_link(ref, depth + 1, via=f"config {key}")
                continue
            parent = self.producer(ref)
            if parent is None:
                continue
            self._unhashed.setdefault((ref, key, parent), []).append(prov)
            if parent not in followed:
                followed.add(parent)
                intact &= self.audit_link(parent, depth + 1, via=f"config {key}, hash not recorded")
        self._audited[prov] = intact
        return intact

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

    def audit_file(self, path: str, depth: int = 0) -> bool:
        """Audit one pipeline output: the job that made it and everything below."""
        if self._hash(path) is None:
            self._problem("missing", _norm(path), "no such file")
            return False
        prov = self.producer(path)
        if prov is None:
            self._say(depth, f"{path}: no provenance record lists it")
            return False
        return self.audit_link(prov, depth)

    # ------------------------------------------------------------------------------------------
    # Tables
    # ------------------------------------------------------------------------------------------

    def audit_table(
        self, prov: str | os.PathLike[str], cell: tuple[str, str] | None = None
    ) -> None:
        """Audit a table's cells (all, or one given by row and column key or label).

        Raises:
            AuditError: The table's provenance is missing or malformed, or the cell unknown.
        """
        prov = _norm(prov)
        rec = _load_json(self._abs(prov), "table provenance")
        _check_record(rec, Path(prov))
        table = rec.get("table")
        if not isinstance(table, dict) or not isinstance(table.get("cells"), list):
            raise AuditError(f"{prov}: malformed table provenance (no 'table.cells')")
        cells = table["cells"]
        for i, c in enumerate(cells):
            if not isinstance(c, dict) or not {"row", "column", "seeds"} <= set(c):
                raise AuditError(f"{prov}: malformed table provenance (cell {i})")
        if cell is not None:
            cells = self._select(prov, cells, cell)
        self._records[prov] = rec
        self._outputs[prov] = {_norm(k) for k in rec["outputs"]}
        self._audited[prov] = True
        code = rec.get("code") or {}
        commit = (code.get("commit") or "unknown")[:12] + (" (dirty)" if code.get("dirty") else "")
        self.echo(
            f"Table {table.get('name', '?')}: {table.get('title', '')}\n"
            f"  {prov}  [{rec['rule']} | commit {commit} | {rec.get('finished', '?')}]"
        )
        failed = [p for p, sha in rec["outputs"].items() if not self.check(_norm(p), sha, prov)]
        self._status(1, {"table file": len(rec["outputs"])}, failed)
        metric = table.get("metric", "top1")
        for c in cells:
            self.result.cells += 1
            label = f"{c.get('row_label', c['row'])} | {c.get('column_label', c['column'])}"
            self.echo(
                f"\nCell [{label}]  ({c['row']} / {c['column']}): "
                f"{metric} {c.get('mean', float('nan')):.2f} ± {c.get('std', 0.0):.2f}, "
                f"n = {c.get('n', len(c['seeds']))}"
            )
            for s in c["seeds"]:
                # A seed may name its own key (the claims table reads Fig 2's ladder files).
                self._audit_seed(prov, str(s.get("metric", c.get("metric", metric))), s)

    def _select(
        self, prov: str, cells: list[dict[str, Any]], cell: tuple[str, str]
    ) -> list[dict[str, Any]]:
        row, col = (x.casefold() for x in cell)
        hits = [
            c
            for c in cells
            if row in (str(c["row"]).casefold(), str(c.get("row_label", "")).casefold())
            and col in (str(c["column"]).casefold(), str(c.get("column_label", "")).casefold())
        ]
        if not hits:
            rows = sorted({str(c["row"]) for c in cells})
            cols = sorted({str(c["column"]) for c in cells})
            raise AuditError(
                f"{prov}: no cell with data at row {cell[0]!r}, column {cell[1]!r} "
                f"(rows: {', '.join(rows)}; columns: {', '.join(cols)})"
            )
        return hits

    def _audit_seed(self, prov: str, metric: str, s: Mapping[str, Any]) -> None:
        path = _norm(str(s.get("metrics", "")))
        value = s.get("value")
        shown = f"{value:.6g}" if isinstance(value, int | float) else value
        self._say(1, f"seed {s.get('seed', '?')}  {path}  {metric} = {shown}")
        if not self.check(path, str(s.get("sha256", "")), prov):
            self._say(2, f"FAILED {path}")
        else:
            got = _metric_value(self._abs(path), metric)
            if got is None or not isinstance(value, int | float) or got != float(value):
                self._problem("value", path, f"{metric} {got} in the file, {value} in {prov}")
        parent = self.producer(path)
        if parent is not None:
            self.audit_link(parent, 2)

    # ------------------------------------------------------------------------------------------
    # Summary
    # ------------------------------------------------------------------------------------------

    def summary(self) -> list[str]:
        """The closing lines: verdict, first failure, code versions, warnings."""
        r = self.result
        r.warnings = [
            f"{_plural(len(jobs), 'job')} (e.g. {jobs[0]}) {'uses' if len(jobs) == 1 else 'use'} "
            f"{ref} (config {key}) without "
            f"recording its hash; it was checked against {parent} only"
            for (ref, key, parent), jobs in self._unhashed.items()
        ]
        lines = [""]
        versions = ", ".join(
            f"{(c or 'unknown')[:12]}{' (dirty)' if d else ''} x{n}"
            for (c, d), n in sorted(r.commits.items(), key=lambda kv: -kv[1])
        )
        for w in r.warnings:
            lines.append(f"warning: {w}")
        dirty = sum(n for (_, d), n in r.commits.items() if d)
        if dirty:
            lines.append(
                f"note: {dirty} of {r.links} jobs ran on uncommitted changes (dirty): "
                "their commit alone does not pin the code."
            )
        counts = (
            f"{_plural(r.cells, 'cell')}, {_plural(r.links, 'job')}, "
            f"{_plural(r.files, 'file')} re-hashed; code: {versions or 'none'}"
        )
        if r.ok:
            lines.append(f"AUDIT PASSED: {counts}")
        else:
            first = r.problems[0]
            lines.append(f"AUDIT FAILED: {_plural(len(r.problems), 'problem')}; {counts}")
            lines += [f"  {p}" for p in r.problems]
            lines.append(f"first failing file: {first.path} ({first.kind})")
        return lines


def _table_candidate(text: str) -> str | None:
    for suffix in _TABLE_SUFFIXES:
        if text.endswith(suffix):
            return text[: -len(suffix)] + ".provenance.json"
    return None


def _is_table(text: str, root: Path) -> bool:
    """A table name, a file of a table with provenance, or any file in a tables folder."""
    if "/" not in text and not (root / text).exists():
        return True
    cand = _table_candidate(text)
    if cand is None:
        return False
    in_tables = _norm(Path(text).parent) in {_norm(d) for d in TABLE_DIRS}
    return in_tables or (root / cand).is_file()


def _figure_record(text: str, root: Path) -> str | None:
    """The job record of a figure given by any of its files, or None if ``text`` is none.

    A figure's record (``results/figures/fig4.provenance.json`` for ``fig4.png``, ``.pdf``,
    ``.csv``) is an ordinary job record, no ``table`` in it, walked like any other link.
    """
    stem = next((text[: -len(s)] for s in _FIGURE_SUFFIXES if text.endswith(s)), None)
    if stem is None or _norm(Path(text).parent) in {_norm(d) for d in TABLE_DIRS}:
        return None
    cand = f"{stem}.provenance.json"
    try:
        rec = json.loads((root / cand).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return _norm(cand) if isinstance(rec, dict) and "table" not in rec else None


def _folder_records(folder: str, root: Path) -> list[str]:
    """A folder's own ``provenance.json``, else every record below it (tables' too), sorted."""
    if (root / folder / PROVENANCE).is_file():
        return [_norm(Path(folder) / PROVENANCE)]
    found = (
        p.relative_to(root)
        for p in (root / folder).rglob("*provenance.json")
        if p.is_file() and (p.name == PROVENANCE or p.name.endswith(".provenance.json"))
    )
    return sorted(_norm(p) for p in found)


def _audit_folder(auditor: Auditor, folder: str, root: Path) -> None:
    """Audit a folder the pipeline wrote: the job that made it, or every job and table below."""
    records = _folder_records(folder, root)
    if not records:
        raise AuditError(
            f"{folder}: no {PROVENANCE} in this folder or below it, so the pipeline did not "
            "write it; give a table, or a file or folder under results/"
        )
    for prov in records:
        rec = _load_json(root / prov, "provenance record")
        if isinstance(rec.get("table"), dict):
            auditor.audit_table(prov)
        else:
            _check_record(rec, Path(prov))
            auditor.audit_link(prov)


def audit(
    target: str | os.PathLike[str],
    *,
    cell: tuple[str, str] | None = None,
    root: str | os.PathLike[str] = ".",
    echo: Callable[[str], None] = print,
) -> AuditResult:
    """Audit a table (every cell, or one), a figure or any output file of the pipeline.

    Args:
        target: A table (name or any of its files), a figure (any of its files: the job that
            drew it, then the jobs that made its data), a file under ``results/``, a job's
            ``provenance.json``, or a folder the pipeline wrote (a prepared dataset, a run
            folder: the job whose ``provenance.json`` it holds; a folder above several runs or
            tables: each of them).
        cell: ``(row, column)`` key or label of one cell of a table.
        root: The project root.
        echo: Receives the printed chain, line by line (the closing lines are in
            ``result.summary``).

    Returns:
        The result; ``result.ok`` is False when any file is missing or changed.

    Raises:
        AuditError: Unknown table, file or folder, a folder without any provenance record,
            unreadable table provenance, unknown cell.
    """
    root = Path(root)
    auditor = Auditor(root, echo)
    text = os.fspath(target)
    figure = _figure_record(text, root)
    if figure is not None:
        if cell is not None:
            raise AuditError(f"{text}: --cell applies to tables only")
        _check_record(_load_json(root / figure, "provenance record"), Path(figure))
        auditor.audit_link(figure)
    elif _is_table(text, root):
        auditor.audit_table(find_table_provenance(text, root), cell)
    else:
        if cell is not None:
            raise AuditError(f"{text}: --cell applies to tables only")
        if (root / text).is_dir():
            _audit_folder(auditor, _norm(text), root)
        elif not (root / text).is_file():
            raise AuditError(f"{text}: no such file or folder")
        elif Path(text).name == PROVENANCE:
            _check_record(_load_json(root / text, "provenance record"), Path(text))
            auditor.audit_link(text)
        else:
            auditor.audit_file(text)
    auditor.result.summary = auditor.summary()
    return auditor.result
