"""Build a table: read its cells, write ``<prefix>.{csv,md,tex,html}``, then its provenance."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from robustkd.atomic import atomic_write_text
from robustkd.provenance import now_iso
from robustkd.report.tables.provenance import cell_record, write_table_provenance
from robustkd.report.tables.render import html_page, latex, markdown, table_text
from robustkd.report.tables.spec import Cell, TableSpec
from robustkd.report.tables.values import compare, summarise

__all__ = ["TABLE_FORMATS", "build_table"]

# Files of a table beside ``<prefix>.provenance.json``, in the order they are written.
TABLE_FORMATS = ("csv", "md", "tex", "html")


def build_table(
    spec: TableSpec,
    cells: Sequence[Cell],
    out_prefix: str | os.PathLike[str],
    *,
    provenance: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Write ``<out_prefix>.{csv,md,tex,html}``, then ``<out_prefix>.provenance.json``.

    Args:
        spec: The table's layout (with its paired comparisons, if any).
        cells: The cells with data; absent (row, column) pairs print as an em dash.
        out_prefix: Path without extension.
        provenance: Fields of the provenance record (``rule``, ``config``, ``wildcards``);
            the metrics files are its inputs, the table files its outputs.

    Returns:
        One row per cell: row, column, metric, mean, std, n, per-seed values and seeds,
        metrics files.

    Raises:
        FileNotFoundError: A metrics file is missing (the message names it).
        ValueError: A metrics file is not JSON.
        KeyError: A metrics file lacks the table's metric.
    """
    started = now_iso()
    df = summarise(spec, cells)
    comparisons = compare(spec, df)
    text = table_text(spec, df, comparisons)
    writers = {
        "csv": lambda: df.drop(columns=["keys"], errors="ignore").to_csv(index=False),
        "md": lambda: markdown(text),
        "tex": lambda: latex(text),
        "html": lambda: html_page(text),
    }
    outputs = []
    for ext in TABLE_FORMATS:
        outputs.append(f"{out_prefix}.{ext}")
        atomic_write_text(outputs[-1], writers[ext]())
    rows, cols = dict(spec.rows), dict(spec.columns)
    records = []
    for r in df.itertuples():
        record = cell_record(
            r.row,
            r.column,
            spec.metric,
            json.loads(r.metrics),
            json.loads(r.values),
            json.loads(r.seeds),
            row_label=rows.get(r.row, r.row),
            column_label=cols.get(r.column, r.column),
        )
        for seed_rec, key in zip(record["seeds"], json.loads(r.keys), strict=True):
            if key != spec.metric:  # a value read by its own key (a ladder result)
                seed_rec["metric"] = key
        records.append(record)
    write_table_provenance(
        out_prefix,
        name=spec.name,
        title=spec.title,
        metric=spec.metric,
        cells=records,
        outputs=outputs,
        comparisons=comparisons,
        provenance=provenance,
        started=started,
    )
    return df
