"""A table's provenance: each cell's per-seed metrics files, their sha256 and the values read.

``<table>.provenance.json`` is the usual provenance record (rule, config, hashes of every
metrics file read and every table file written, code version) plus, under ``table``, every
cell and comparison: the record ``robustkd audit`` starts from (:mod:`robustkd.audit`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robustkd.provenance import sha256_file, write_provenance

__all__ = ["cell_record", "table_provenance_path", "write_table_provenance"]


def table_provenance_path(out_prefix: str | os.PathLike[str]) -> Path:
    """``<out_prefix>.provenance.json``: the cell -> metrics map of a table."""
    return Path(f"{out_prefix}.provenance.json")


def cell_record(
    row: str,
    column: str,
    metric: str,
    files: Sequence[str],
    values: Sequence[float],
    seeds: Sequence[int],
    *,
    row_label: str | None = None,
    column_label: str | None = None,
) -> dict[str, Any]:
    """One cell of a table's provenance: its summary and, per seed, file, sha256 and value.

    Args:
        row: Row key.
        column: Column key.
        metric: Key of the value in each metrics file; a dotted key (``cost.train_seconds``)
            reads a nested value.
        files: Metrics file of each seed.
        values: The value read from each file.
        seeds: The seed of each file.
        row_label: Printed row label (default: the key).
        column_label: Printed column label (default: the key).
    """
    vals = [float(v) for v in values]
    return {
        "row": row,
        "column": column,
        "row_label": row if row_label is None else row_label,
        "column_label": column if column_label is None else column_label,
        "metric": metric,
        "mean": float(np.mean(vals)) if vals else math.nan,
        "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
        "n": len(vals),
        "seeds": [
            {"seed": int(s), "metrics": str(f), "sha256": sha256_file(f), "value": v}
            for s, f, v in zip(seeds, files, vals, strict=True)
        ],
    }


def write_table_provenance(
    out_prefix: str | os.PathLike[str],
    *,
    name: str,
    title: str,
    metric: str,
    cells: Sequence[Mapping[str, Any]],
    outputs: Sequence[str | os.PathLike[str]],
    comparisons: Sequence[Mapping[str, Any]] = (),
    provenance: Mapping[str, Any] | None = None,
    started: str | None = None,
) -> Path:
    """Write ``<out_prefix>.provenance.json``, the record ``robustkd audit`` starts from.

    Call it after every table file is written (their hashes are recorded).

    Args:
        out_prefix: The table's path without extension.
        name: Table name (``table1``).
        title: Its caption.
        metric: The metric of its cells (a cell may name its own).
        cells: Cells from :func:`cell_record`.
        outputs: The table's files (CSV, Markdown, ...).
        comparisons: The paired comparisons printed with the table.
        provenance: Fields of the record (``rule``, ``config``, ``wildcards``); default rule
            ``build_table``.
        started: Start time of the job.

    Returns:
        The path written.
    """
    path = table_provenance_path(out_prefix)
    write_provenance(
        path,
        inputs=sorted({s["metrics"] for c in cells for s in c["seeds"]}),
        outputs=outputs,
        started=started,
        extra={
            "table": {
                "name": name,
                "title": title,
                "metric": metric,
                "cells": list(cells),
                "comparisons": list(comparisons),
            }
        },
        **dict(provenance or {"rule": "build_table"}),
    )
    return path
