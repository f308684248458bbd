"""The walk: from a table's cells or a job's record down to the raw data, link by link.

Each link is a job's ``provenance.json``: its outputs and inputs are re-hashed
(:class:`~robustkd.audit.checks.Checker`), then the walk follows each input to the job that
wrote it (checkpoints before data), and each file or prepared folder the job's config names
without recording its hash (a warning). A job met twice is audited once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from robustkd.audit.checks import Checker
from robustkd.audit.printer import ChainPrinter, closing_lines, machine, plural
from robustkd.audit.records import (
    PROVENANCE,
    AuditError,
    check_record,
    config_strings,
    flatten,
    is_data,
    load_json,
    metric_value,
    norm,
)

__all__ = ["Auditor"]


class Auditor(Checker):
    """Walks provenance records from a table or a file down to the raw data.

    Args:
        root: The project root; relative paths in records are relative to it.
        echo: Receives each line of the printed chain.
    """

    def __init__(
        self, root: str | os.PathLike[str] = ".", echo: Callable[[str], None] = print
    ) -> None:
        super().__init__(root)
        self.echo = echo
        self.printer = ChainPrinter(echo)
        self._audited: dict[str, bool] = {}
        # (file, config key, its producer) -> jobs that use the file without hashing it.
        self._unhashed: dict[tuple[str, str, str], list[str]] = {}

    # ------------------------------------------------------------------------------------------
    # Jobs
    # ------------------------------------------------------------------------------------------

    def _references(
        self, prov: str, rec: Mapping[str, Any], hashed: set[str]
    ) -> list[tuple[str, str]]:
        """Files and prepared folders the job's config names but whose hash it did not record."""
        found: dict[str, str] = {}
        values = list(config_strings(rec.get("config", {})))
        if isinstance(rec.get("source"), str):
            values.append(("source", rec["source"]))
        for key, value in values:
            if not value or "\n" in value or len(value) > 4096:
                continue
            value = self.at(prov, value)
            p = self._abs(value)
            try:
                if p.is_file() and norm(value) not in hashed:
                    found.setdefault(norm(value), key)
                elif p.is_dir() and (p / PROVENANCE).is_file():
                    found.setdefault(norm(Path(value) / PROVENANCE), key)
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
        say = self.printer.say
        prov = norm(prov)
        if prov in self._audited:
            state = "ok" if self._audited[prov] else "BROKEN"
            rule = (self._records.get(prov) or {}).get("rule", "?")
            say(depth, f"<- {rule}  {prov}  (audited above: {state})")
            return self._audited[prov]
        self._audited[prov] = False
        rec = self._record(prov)
        if rec is None:
            say(depth, f"<- ?  {prov}  UNREADABLE")
            return False
        self.result.links += 1
        code = rec.get("code") or {}
        version = (code.get("commit"), code.get("dirty"))
        self.result.commits[version] = self.result.commits.get(version, 0) + 1
        commit = (version[0] or "unknown")[:12] + (" (dirty)" if version[1] else "")
        self._check_code(prov, code)
        wildcards = " ".join(f"{k}={v}" for k, v in (rec.get("wildcards") or {}).items())
        say(depth, f"<- {rec['rule']}  {prov}{f'  [{via}]' if via else ''}")
        d = depth + 2
        seed = rec.get("seed")
        say(
            d,
            f"seed {seed if seed is not None else '-'} | commit {commit} | {machine(rec)} | "
            f"{wildcards or 'no wildcards'} | {rec.get('finished', '?')}",
        )
        self.printer.say_wrapped(
            d,
            "config:",
            [
                f"{k}={json.dumps(v, separators=(',', ':'))}"
                for k, v in flatten(rec.get("config") or {})
            ],
        )

        failed: list[str] = []
        checked = {"output": 0, "input": 0, "manifest image": 0}
        outputs = {norm(k): v for k, v in rec["outputs"].items()}
        inputs = {norm(k): v for k, v in rec["inputs"].items()}
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
        self.printer.status(d, checked, failed)

        intact = not failed
        followed: set[str] = {prov}
        # Checkpoints before data, so the chain reads model -> student -> teacher -> data.
        for path in sorted(inputs, key=is_data):
            parent = self.producer(path)
            if parent is not None:
                if parent not in followed:
                    followed.add(parent)
                    intact &= self.audit_link(parent, depth + 1)
            elif self.in_results(path):
                intact = False
            else:
                say(depth + 1, f"<- source  {path}  (not made by the pipeline)")
        for key, ref in self._references(prov, rec, set(inputs) | set(outputs)):
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

    def audit_file(self, path: str, depth: int = 0) -> bool:
        """Audit one pipeline output: the job that made it and everything below."""
        if self._hash(path) is None:
            self._problem("missing", norm(path), "no such file")
            return False
        prov = self.producer(path)
        if prov is None:
            self.printer.say(depth, f"{path}: no provenance record lists it")
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
        prov = norm(prov)
        rec = load_json(self._abs(prov), "table provenance")
        check_record(rec, Path(prov))
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
        self._outputs[prov] = {norm(k) for k in rec["outputs"]}
        self._audited[prov] = True
        code = rec.get("code") or {}
        commit = (code.get("commit") or "unknown")[:12] + (" (dirty)" if code.get("dirty") else "")
        self.echo(
            f"Table {table.get('name', '?')}: {table.get('title', '')}\n"
            f"  {prov}  [{rec['rule']} | commit {commit} | {rec.get('finished', '?')}]"
        )
        failed = [p for p, sha in rec["outputs"].items() if not self.check(norm(p), sha, prov)]
        self.printer.status(1, {"table file": len(rec["outputs"])}, failed)
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
        path = norm(str(s.get("metrics", "")))
        value = s.get("value")
        shown = f"{value:.6g}" if isinstance(value, int | float) else value
        self.printer.say(1, f"seed {s.get('seed', '?')}  {path}  {metric} = {shown}")
        if not self.check(path, str(s.get("sha256", "")), prov):
            self.printer.say(2, f"FAILED {path}")
        else:
            got = metric_value(self._abs(path), metric)
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
        self.result.warnings = [
            f"{plural(len(jobs), 'job')} (e.g. {jobs[0]}) {'uses' if len(jobs) == 1 else 'use'} "
            f"{ref} (config {key}) without "
            f"recording its hash; it was checked against {parent} only"
            for (ref, key, parent), jobs in self._unhashed.items()
        ]
        return closing_lines(self.result)
