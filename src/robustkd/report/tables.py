"""Tables as CSV (long format, one row per cell), Markdown, LaTeX and HTML (mean +- std over seeds).

A table is a list of cells, each the metrics files of one (row, column) over seeds (or, for a
cell with a ``ladder:`` key, one evaluation file holding every seed's result at a test
setting). Missing columns (a method the pipeline has not run) appear as an em dash with a
footnote, never as a number. The comparisons the paper makes (ours vs each baseline, the full
loss vs each ablation) are paired tests across seeds (:mod:`robustkd.report.stats`), printed
under the table.

Every table ships ``<table>.provenance.json``: the usual provenance record (rule, config,
hashes of every metrics file read and every file written, code version) plus, under
``table``, each cell with its per-seed metrics files, their sha256 and the values read, and
the comparisons. ``robustkd audit`` starts there.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustkd.atomic import atomic_write_text
from robustkd.provenance import now_iso, sha256_file, write_provenance
from robustkd.report.stats import format_paired, paired_test

__all__ = [
    "TABLE_FORMATS",
    "Cell",
    "cell_record",
    "Comparison",
    "TableSpec",
    "build_table",
    "distortion_label",
    "format_cell",
    "read_value",
    "reference_comparisons",
    "table_provenance_path",
    "with_reference_comparisons",
    "write_table_provenance",
]

# Files of a table beside ``<prefix>.provenance.json``, in the order they are written.
TABLE_FORMATS = ("csv", "md", "tex", "html")

_FAMILY_NAMES = {"mask": "Random Mask", "noise": "Gaussian Noise", "blur": "Gaussian Blur"}


def distortion_label(spec: Mapping[str, object]) -> str:
    """Human label of a distortion config entry, e.g. ``Gaussian Blur (37, 9.0)``."""
    family = str(spec["family"])
    name = _FAMILY_NAMES.get(family, family)
    if family == "mixed":
        settings = spec.get("settings")
        what = f"{len(settings)} settings" if settings else "the Table 1 settings"
        return f"Mixed ({what}{' + clean' if spec.get('include_clean') else ''})"
    if family == "mask":
        return f"{name} p={spec['p']}"
    if family == "noise":
        return f"{name} sigma={spec['sigma']}"
    return f"{name} ({spec['kernel']}, {spec['sigma']})"


@dataclass(frozen=True)
class Cell:
    """One table cell: its row and column keys and the metrics files of every seed.

    Attributes:
        row: Row key.
        column: Column key.
        metrics: The metrics file of each seed (a ladder file may repeat, one per seed).
        key: What to read from each file instead of the table's metric: a key of the file,
            or ``ladder:<test distortion>`` for that test's ``top1`` of the seed in an
            evaluation file of :func:`robustkd.layout.ladder_file` (see :func:`read_value`).
        seeds: The seed of each file; needed with ``ladder:`` keys (a ladder file holds
            every seed), else read from the file or its path.
    """

    row: str
    column: str
    metrics: tuple[str, ...]
    key: str | None = None
    seeds: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of two cells over their shared seeds: ``a - b``.

    Attributes:
        a: (row, column) keys of the cell tested (ours, the full loss).
        b: (row, column) keys of the cell it is compared with (a baseline, an ablation).
        row: Row label of the comparison in the grid printed under the table.
        column: Column label of the comparison in that grid.
    """

    a: tuple[str, str]
    b: tuple[str, str]
    row: str
    column: str


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
        comparisons: Paired comparisons printed under the table (see
            :func:`with_reference_comparisons`).
        comparison_title: Heading of the comparison grid (what minus what).
    """

    name: str
    title: str
    rows: Sequence[tuple[str, str]]
    columns: Sequence[tuple[str, str]]
    metric: str = "top1"
    row_header: str = ""
    missing: Mapping[str, str] = field(default_factory=dict)
    notes: Sequence[str] = ()
    comparisons: Sequence[Comparison] = ()
    comparison_title: str = ""


def reference_comparisons(spec: TableSpec, reference: str) -> list[Comparison]:
    """Compare the ``reference`` method with every other one, cell by cell.

    Three layouts are understood:

    - ``reference`` is a column key (Table 1): in each row, it vs every other column;
    - ``reference`` is a row key (Table 3): in each column, it vs every other row;
    - rows are ``method/setting`` keys (Table 2): in each column, ``reference/setting`` vs
      every other ``method/setting`` row of the same setting.

    Raises:
        KeyError: ``reference`` appears in none of these forms.
    """
    rows, cols = dict(spec.rows), dict(spec.columns)
    out = []
    if reference in cols:
        for r, r_label in spec.rows:
            for c, c_label in spec.columns:
                if c != reference:
                    out.append(Comparison((r, reference), (r, c), r_label, f"vs {c_label}"))
    elif reference in rows:
        for r, r_label in spec.rows:
            if r == reference:
                continue
            for c, c_label in spec.columns:
                out.append(Comparison((reference, c), (r, c), f"vs {r_label}", c_label))
    else:
        for r, r_label in spec.rows:
            method, sep, setting = r.partition("/")
            ref = f"{reference}/{setting}"
            if not sep or method == reference or ref not in rows:
                continue
            for c, c_label in spec.columns:
                out.append(Comparison((ref, c), (r, c), f"vs {r_label}", c_label))
    if not out:
        raise KeyError(f"{spec.name}: {reference!r} is neither a row nor a column to compare")
    return out


def with_reference_comparisons(
    spec: TableSpec, reference: str, label: str | None = None
) -> TableSpec:
    """``spec`` with paired comparisons of ``reference`` vs every other method.

    Args:
        spec: The table's layout.
        reference: Key of the method compared with the others (``ours``).
        label: Its name in the heading; defaults to its row or column label.
    """
    label = label or {**dict(spec.rows), **dict(spec.columns)}.get(reference, reference)
    return replace(
        spec,
        comparisons=reference_comparisons(spec, reference),
        comparison_title=f"{label} minus each other method",
    )


def table_provenance_path(out_prefix: str | os.PathLike[str]) -> Path:
    """``<out_prefix>.provenance.json``: the cell -> metrics map of a table."""
    return Path(f"{out_prefix}.provenance.json")


def format_cell(mean: float, std: float, n: int) -> str:
    """``mean +- std`` with two decimals (std omitted for a single seed)."""
    if n == 0 or math.isnan(mean):
        return "—"
    return f"{mean:.2f} ± {std:.2f}" if n > 1 else f"{mean:.2f}"


_SEED_IN_PATH = re.compile(r"(?:^|/)seed(\d+)(?:/|$)")


def _seed_of(path: str, metrics: Mapping[str, Any], position: int) -> int:
    """A metrics file's seed: its ``seed`` field, else ``seed<k>`` in its path, else position."""
    if isinstance(metrics.get("seed"), int):
        return int(metrics["seed"])
    match = _SEED_IN_PATH.search(Path(path).as_posix())
    return int(match.group(1)) if match else position


def _read_metrics(path: str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: metrics file not found") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: malformed metrics file ({exc})") from None


def read_value(
    path: str, data: Mapping[str, Any], metric: str, seed: int | None
) -> tuple[str, float]:
    """Read one seed's value from a metrics file's content, and the key the audit reads it by.

    Args:
        path: The file (named in errors).
        data: Its parsed JSON.
        metric: A key of the file (``top1``), or ``ladder:<test>``: the ``top1`` of the
            result of ``seed`` at test distortion ``<test>`` in an evaluation file
            (``{"results": [{"seed", "distortion", "top1", ...}, ...]}``).
        seed: The seed (needed for ``ladder:``).

    Returns:
        ``(key, value)``: ``key`` is ``metric`` itself, or ``results.<i>.top1`` for a ladder
        result, as :mod:`robustkd.audit` reads it back.

    Raises:
        KeyError: The file holds no such value (the message names the file).
    """
    if metric.startswith("ladder:"):
        test = metric.removeprefix("ladder:")
        for i, r in enumerate(data.get("results", [])):
            if r.get("seed") == seed and r.get("distortion") == test:
                return f"results.{i}.top1", float(r["top1"])
        raise KeyError(f"{path}: no result for seed {seed} at {test}")
    if metric not in data:
        raise KeyError(f"{path}: no {metric!r} in the metrics file")
    return metric, float(data[metric])


def _summarise(spec: TableSpec, cells: Sequence[Cell]) -> pd.DataFrame:
    rows = []
    cache: dict[str, dict[str, Any]] = {}
    for cell in cells:
        read = []
        for p in cell.metrics:
            if p not in cache:
                cache[p] = _read_metrics(p)
            read.append(cache[p])
        if cell.seeds is not None:
            seeds = [int(x) for x in cell.seeds]
        else:
            seeds = [
                _seed_of(p, m, i) for i, (p, m) in enumerate(zip(cell.metrics, read, strict=True))
            ]
        keys, values = [], []
        for path, m, seed in zip(cell.metrics, read, seeds, strict=True):
            key, value = read_value(path, m, cell.key or spec.metric, seed)
            keys.append(key)
            values.append(value)
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
                "seeds": json.dumps(seeds),
                "metrics": json.dumps(cell.metrics),
                "keys": json.dumps(keys),
            }
        )
    return pd.DataFrame(rows)


def _compare(spec: TableSpec, df: pd.DataFrame) -> list[dict[str, Any]]:
    """Run every comparison of ``spec`` on the cells present (absent cells: no result)."""
    by_cell = {
        (r.row, r.column): dict(zip(json.loads(r.seeds), json.loads(r.values), strict=True))
        for r in df.itertuples()
    }
    out = []
    for comp in spec.comparisons:
        a, b = by_cell.get(comp.a), by_cell.get(comp.b)
        seeds = sorted(set(a) & set(b)) if a is not None and b is not None else []
        result = None
        if seeds:
            res = paired_test([a[s] for s in seeds], [b[s] for s in seeds], seeds=seeds)
            result = {**res.as_dict(), "text": format_paired(res)}
        out.append(
            {"row": comp.row, "column": comp.column, "a": comp.a, "b": comp.b, "result": result}
        )
    return out


def _comparison_grid(
    comparisons: Sequence[Mapping[str, Any]],
) -> tuple[list[str], list[list[str]]]:
    """The comparisons as a grid: header (columns) and one line per comparison row."""
    rows = list(dict.fromkeys(c["row"] for c in comparisons))
    cols = list(dict.fromkeys(c["column"] for c in comparisons))
    text = {
        (c["row"], c["column"]): "—" if c["result"] is None else c["result"]["text"]
        for c in comparisons
    }
    return cols, [[r] + [text.get((r, c), "") for c in cols] for r in rows]


def _comparison_note(spec: TableSpec, comparisons: Sequence[Mapping[str, Any]]) -> str:
    ns = sorted({c["result"]["n"] for c in comparisons if c["result"] is not None})
    n = ", ".join(map(str, ns)) if ns else "0"
    return (
        f"Paired comparisons ({spec.comparison_title}): mean difference of {spec.metric} in "
        f"points over the seeds both cells share (n = {n}), [95 % t confidence interval], "
        f"two-sided paired t-test; no correction for multiple comparisons."
    )


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


def _markdown_table(header: Sequence[str], grid: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in grid]


def _markdown(
    spec: TableSpec,
    grid: list[list[str]],
    notes: list[str],
    comparisons: Sequence[Mapping[str, Any]],
) -> str:
    header = [spec.row_header] + [label for _, label in spec.columns]
    lines = [f"**{spec.title}**", "", *_markdown_table(header, grid)]
    lines += [""] + [f"- {n}" for n in notes]
    if comparisons:
        cols, cgrid = _comparison_grid(comparisons)
        lines += ["", f"*{_comparison_note(spec, comparisons)}*", ""]
        lines += _markdown_table(["", *cols], cgrid)
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


def _latex(
    spec: TableSpec,
    grid: list[list[str]],
    notes: list[str],
    comparisons: Sequence[Mapping[str, Any]],
) -> str:
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
    if comparisons:
        ccols, cgrid = _comparison_grid(comparisons)
        lines += [
            rf"\par\smallskip\footnotesize {_latex_escape(_comparison_note(spec, comparisons))}",
            r"\par",
            rf"\begin{{tabular}}{{l{'c' * len(ccols)}}}",
            r"\toprule",
            " & ".join(_latex_escape(h) for h in ["", *ccols]) + r" \\",
            r"\midrule",
            *[" & ".join(_latex_escape(c) for c in row) + r" \\" for row in cgrid],
            r"\bottomrule",
            r"\end{tabular}",
        ]
    lines += [r"\end{table}"]
    return "\n".join(lines) + "\n"


_HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.2em; color: #222; }
caption { font-weight: bold; text-align: left; padding-bottom: 0.4em; }
table { border-collapse: collapse; margin-bottom: 0.6em; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #ccc; text-align: center; }
td { white-space: nowrap; }
th:first-child, td:first-child { text-align: left; white-space: normal; }
thead th { border-bottom: 2px solid #444; }
ul { font-size: 0.9em; color: #444; padding-left: 1.2em; }
p.note { font-size: 0.9em; color: #444; max-width: 60em; }
"""


def _html_table(
    caption: str, header: Sequence[str], grid: Sequence[Sequence[str]], cls: str
) -> list[str]:
    esc = html.escape
    lines = [f'<table class="{cls}">']
    if caption:
        lines.append(f"<caption>{esc(caption)}</caption>")
    lines.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead>")
    lines.append("<tbody>")
    lines += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in grid]
    return lines + ["</tbody>", "</table>"]


def _html(
    spec: TableSpec,
    grid: list[list[str]],
    notes: list[str],
    comparisons: Sequence[Mapping[str, Any]],
) -> str:
    """A standalone page of the table (what ``snakemake --report`` shows)."""
    header = [spec.row_header] + [label for _, label in spec.columns]
    lines = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(spec.title)}</title>",
        f"<style>{_HTML_STYLE}</style>",
        "</head><body>",
        *_html_table(spec.title, header, grid, "results"),
        "<ul>",
        *[f"<li>{html.escape(n)}</li>" for n in notes],
        "</ul>",
    ]
    if comparisons:
        cols, cgrid = _comparison_grid(comparisons)
        lines += [f'<p class="note">{html.escape(_comparison_note(spec, comparisons))}</p>']
        lines += _html_table("", ["", *cols], cgrid, "comparisons")
    lines += ["</body></html>"]
    return "\n".join(lines) + "\n"


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
    df = _summarise(spec, cells)
    grid, notes = _grid(spec, df), _footnotes(spec, df)
    comparisons = _compare(spec, df)
    writers = {
        "csv": lambda: df.drop(columns=["keys"], errors="ignore").to_csv(index=False),
        "md": lambda: _markdown(spec, grid, notes, comparisons),
        "tex": lambda: _latex(spec, grid, notes, comparisons),
        "html": lambda: _html(spec, grid, notes, comparisons),
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
