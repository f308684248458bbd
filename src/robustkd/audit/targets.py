"""What to audit: a table (by name or any of its files), a figure, an output, a job, a folder.

:func:`audit` is the entry point of ``robustkd audit``; it finds the records to start from
and hands them to an :class:`~robustkd.audit.walker.Auditor`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from robustkd.audit.records import (
    PROVENANCE,
    AuditError,
    AuditResult,
    check_record,
    load_json,
    norm,
)
from robustkd.audit.walker import Auditor

__all__ = ["TABLE_DIRS", "audit", "find_table_provenance"]

# Where tables live, for a table given by name (``table1``, ``craft_table``).
TABLE_DIRS = ("results/tables", "results/craft/tables")
_TABLE_SUFFIXES = (".provenance.json", ".csv", ".md", ".tex", ".html")
_FIGURE_SUFFIXES = (".provenance.json", ".png", ".pdf", ".csv")


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
    in_tables = norm(Path(text).parent) in {norm(d) for d in TABLE_DIRS}
    return in_tables or (root / cand).is_file()


def _figure_record(text: str, root: Path) -> str | None:
    """The job record of a figure given by any of its files, or None if ``text`` is none.

    A figure's record (``results/figures/fig4.provenance.json`` for ``fig4.png``, ``.pdf``,
    ``.csv``) is an ordinary job record, no ``table`` in it, walked like any other link.
    """
    stem = next((text[: -len(s)] for s in _FIGURE_SUFFIXES if text.endswith(s)), None)
    if stem is None or norm(Path(text).parent) in {norm(d) for d in TABLE_DIRS}:
        return None
    cand = f"{stem}.provenance.json"
    try:
        rec = json.loads((root / cand).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return norm(cand) if isinstance(rec, dict) and "table" not in rec else None


def _folder_records(folder: str, root: Path) -> list[str]:
    """A folder's own ``provenance.json``, else every record below it (tables' too), sorted."""
    if (root / folder / PROVENANCE).is_file():
        return [norm(Path(folder) / PROVENANCE)]
    found = (
        p.relative_to(root)
        for p in (root / folder).rglob("*provenance.json")
        if p.is_file() and (p.name == PROVENANCE or p.name.endswith(".provenance.json"))
    )
    return sorted(norm(p) for p in found)


def _audit_folder(auditor: Auditor, folder: str, root: Path) -> None:
    """Audit a folder the pipeline wrote: the job that made it, or every job and table below."""
    records = _folder_records(folder, root)
    if not records:
        raise AuditError(
            f"{folder}: no {PROVENANCE} in this folder or below it, so the pipeline did not "
            "write it; give a table, or a file or folder under results/"
        )
    for prov in records:
        rec = load_json(root / prov, "provenance record")
        if isinstance(rec.get("table"), dict):
            auditor.audit_table(prov)
        else:
            check_record(rec, Path(prov))
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
        check_record(load_json(root / figure, "provenance record"), Path(figure))
        auditor.audit_link(figure)
    elif _is_table(text, root):
        auditor.audit_table(find_table_provenance(text, root), cell)
    else:
        if cell is not None:
            raise AuditError(f"{text}: --cell applies to tables only")
        if (root / text).is_dir():
            _audit_folder(auditor, norm(text), root)
        elif not (root / text).is_file():
            raise AuditError(f"{text}: no such file or folder")
        elif Path(text).name == PROVENANCE:
            check_record(load_json(root / text, "provenance record"), Path(text))
            auditor.audit_link(text)
        else:
            auditor.audit_file(text)
    auditor.result.summary = auditor.summary()
    return auditor.result
