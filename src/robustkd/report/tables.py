"""Tables as CSV (long format, one row per cell), Markdown and LaTeX (mean +- std over seeds).

A table is a list of cells, each the metrics files of one (row, column) over seeds. Missing
columns (a method the pipeline has not run) appear as an em dash with a footnote, never as a
number.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from robustkd.atomic import atomic_write_text

__all__ = ["Cell", "TableSpec", "build_table", "distortion_label", "format_cell"]

_FAMILY_NAMES = {"mask": "Random Mask", "noise": "Gaussian Noise", "blur": "Gaussian Blur"}


def distortion_label(spec: Mapping[str, object]) -> str:
    """Human label of a distortion config entry, e.g. ``Gaussian Blur (37, 9.0)``."""
    family = str(spec["family"])
    name = _FAMILY_NAMES.get(family, family)
    if family == "mask":
        return f"{name} p={spec['p']}"
    if family == "noise":
        return f"{name} sigma={spec['sigma']}"
    return f"{name} ({spec['kernel']}, {spec['sigma']})"


@dataclass(frozen=True)
class Cell:
    """One table cell: its row and column keys and the metrics files of every seed."""

    row: str
    column: str
    metrics: tuple[str, ...]


@dataclass
class TableSpec:
    """Layout of a table.

    Attributes:
        name: File stem (``table1``).
        title: Caption.
        rows: Row keys in order, with their labels.
        columns: Column keys in order, with their labels.
        metric: Key of the metrics files to report (``top1``).
        row_header: Header of the label column.
        missing: Column key -> reason shown in a footnote when the column has no data.
        notes: Extra footnotes.
    """

    name: str
    title: str
    rows: Sequence[tuple[str, str]]
    columns: Sequence[tuple[str, str]]
    metric: str = "top1"
    row_header: str = ""
    missing: Mapping[str, str] = field(default_factory=dict)
    notes: Sequence[str] = ()


def format_cell(mean: float, std: float, n: int) -> str:
    """``mean +- std`` with two decimals (std omitted for a single seed)."""
    if n == 0 or math.isnan(mean):
        return "—"
    return f"{mean:.2f} ± {std:.2f}" if n > 1 else f"{mean:.2f}"


def _summarise(spec: TableSpec, cells: Sequence[Cell]) -> pd.DataFrame:
    rows = []
    for cell in cells:
        values = [float(json.loads(Path(p).read_text())[spec.metric]) for p in cell.metrics]
        rows.append(
            {
                "row": cell.row,
                "column": cell.column,
                "metric": spec.metric,
                "mean": float(np.mean(values)) if values else math.nan,
                # Sample standard deviation across seeds (ddof=1), the spread a reader expects.
                "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                "n": len(values),
                "values": json.dumps(values),
                "metrics": json.dumps(cell.metrics),
            }
        )
    return pd.DataFrame(rows)


def _grid(spec: TableSpec, df: pd.DataFrame) -> list[list[str]]:
    index = {(r.row, r.column): r for r in df.itertuples()}
    grid = []
    for key, label in spec.rows:
        line = [label]
        for col, _ in spec.columns:
            r = index.get((key, col))
            line.append("—" if r is None else format_cell(r.mean, r.std, r.n))
        grid.append(line)
    return grid


def _footnotes(spec: TableSpec, df: pd.DataFrame) -> list[str]:
    notes = []
    ns = sorted(set(df["n"])) if len(df) else []
    if ns:
        notes.append(
            f"Cells: {spec.metric} (%) mean ± sample std over n = {', '.join(map(str, ns))} seeds."
        )
    present = set(df["column"]) if len(df) else set()
    for col, label in spec.columns:
        if col not in present and col in spec.missing:
            notes.append(f"{label}: {spec.missing[col]}")
    return notes + list(spec.notes)


def _markdown(spec: TableSpec, grid: list[list[str]], notes: list[str]) -> str:
    header = [spec.row_header] + [label for _, label in spec.columns]
    lines = [f"**{spec.title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in grid]
    lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("_", r"\_"),
        ("#", r"\#"),
    ):
        text = text.replace(a, b)
    return text.replace("±", r"$\pm$").replace("—", "--").replace("sigma", r"$\sigma$")


def _latex(spec: TableSpec, grid: list[list[str]], notes: list[str]) -> str:
    cols = "l" + "c" * len(spec.columns)
    header = [spec.row_header] + [label for _, label in spec.columns]
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_latex_escape(spec.title)}}}",
        rf"\label{{tab:{spec.name}}}",
        rf"\begin{{tabular}}{{{cols}}}",
        r"\toprule",
        " & ".join(_latex_escape(h) for h in header) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(_latex_escape(c) for c in row) + r" \\" for row in grid]
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [rf"\par\footnotesize {_latex_escape(n)}" for n in notes]
    lines += [r"\end{table}"]
    return "\n".join(lines) + "\n"


def build_table(
    spec: TableSpec, cells: Sequence[Cell], out_prefix: str | os.PathLike[str]
) -> pd.DataFrame:
    """Write ``<out_prefix>.csv``, ``.md`` and ``.tex`` and return the long-format frame.

    Args:
        spec: The table's layout.
        cells: The cells with data; absent (row, column) pairs print as an em dash.
        out_prefix: Path without extension.

    Returns:
        One row per cell: row, column, metric, mean, std, n, per-seed values, metrics files.
    """
    df = _summarise(spec, cells)
    grid, notes = _grid(spec, df), _footnotes(spec, df)
    out_prefix = Path(out_prefix)
    atomic_write_text(out_prefix.with_suffix(".csv"), df.to_csv(index=False))
    atomic_write_text(out_prefix.with_suffix(".md"), _markdown(spec, grid, notes))
    atomic_write_text(out_prefix.with_suffix(".tex"), _latex(spec, grid, notes))
    return df
