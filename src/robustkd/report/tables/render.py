"""A table as text: its grid of ``mean ± std`` cells, footnotes and comparisons, three formats.

:func:`table_text` lays a table out once (:class:`TableText`); :func:`markdown`,
:func:`latex` and :func:`html_page` print that same content. A cell without data prints as an
em dash; a column the pipeline has not run is named in a footnote.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from robustkd.report.htmlstyle import HTML_STYLE as _HTML_STYLE
from robustkd.report.tables.spec import TableSpec

__all__ = ["TableText", "format_cell", "html_page", "latex", "markdown", "table_text"]


def format_cell(mean: float, std: float, n: int) -> str:
    """``mean +- std`` with two decimals (std omitted for a single seed)."""
    if n == 0 or math.isnan(mean):
        return "—"
    return f"{mean:.2f} ± {std:.2f}" if n > 1 else f"{mean:.2f}"


@dataclass(frozen=True)
class TableText:
    """What every format prints of a table.

    Attributes:
        spec: The table's layout.
        grid: One line per row: its label, then each column's cell text.
        notes: Footnotes (seeds, columns without data, the spec's notes).
        comparisons: The paired comparisons (:func:`robustkd.report.tables.values.compare`).
    """

    spec: TableSpec
    grid: list[list[str]]
    notes: list[str]
    comparisons: Sequence[Mapping[str, Any]]

    @property
    def header(self) -> list[str]:
        """The header line: the label column's header, then each column's label."""
        return [self.spec.row_header] + [label for _, label in self.spec.columns]

    def comparison_grid(self) -> tuple[list[str], list[list[str]]]:
        """The comparisons as a grid: header (columns) and one line per comparison row."""
        comparisons = self.comparisons
        rows = list(dict.fromkeys(c["row"] for c in comparisons))
        cols = list(dict.fromkeys(c["column"] for c in comparisons))
        text = {
            (c["row"], c["column"]): "—" if c["result"] is None else c["result"]["text"]
            for c in comparisons
        }
        return cols, [[r] + [text.get((r, c), "") for c in cols] for r in rows]

    def comparison_note(self) -> str:
        """What the comparison grid shows: the difference, its interval, the test, the seeds."""
        ns = sorted({c["result"]["n"] for c in self.comparisons if c["result"] is not None})
        n = ", ".join(map(str, ns)) if ns else "0"
        return (
            f"Paired comparisons ({self.spec.comparison_title}): mean difference of "
            f"{self.spec.metric} in points over the seeds both cells share (n = {n}), "
            f"[95 % t confidence interval], two-sided paired t-test; no correction for "
            f"multiple comparisons."
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


def table_text(
    spec: TableSpec, df: pd.DataFrame, comparisons: Sequence[Mapping[str, Any]]
) -> TableText:
    """Lay a table out from its per-cell summary (:func:`.values.summarise`)."""
    return TableText(spec, _grid(spec, df), _footnotes(spec, df), comparisons)


def _markdown_table(header: Sequence[str], grid: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in grid]


def markdown(t: TableText) -> str:
    """The table in Markdown: bold title, the grid, footnotes, then the comparison grid."""
    lines = [f"**{t.spec.title}**", "", *_markdown_table(t.header, t.grid)]
    lines += [""] + [f"- {n}" for n in t.notes]
    if t.comparisons:
        cols, cgrid = t.comparison_grid()
        lines += ["", f"*{t.comparison_note()}*", ""]
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


def latex(t: TableText) -> str:
    """The table as a LaTeX ``table`` float (booktabs rules), comparisons below it."""
    spec = t.spec
    cols = "l" + "c" * len(spec.columns)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_latex_escape(spec.title)}}}",
        rf"\label{{tab:{spec.name}}}",
        rf"\begin{{tabular}}{{{cols}}}",
        r"\toprule",
        " & ".join(_latex_escape(h) for h in t.header) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(_latex_escape(c) for c in row) + r" \\" for row in t.grid]
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [rf"\par\footnotesize {_latex_escape(n)}" for n in t.notes]
    if t.comparisons:
        ccols, cgrid = t.comparison_grid()
        lines += [
            rf"\par\smallskip\footnotesize {_latex_escape(t.comparison_note())}",
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


def html_page(t: TableText) -> str:
    """A standalone page of the table (what ``snakemake --report`` shows)."""
    lines = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(t.spec.title)}</title>",
        f"<style>{_HTML_STYLE}</style>",
        "</head><body>",
        *_html_table(t.spec.title, t.header, t.grid, "results"),
        "<ul>",
        *[f"<li>{html.escape(n)}</li>" for n in t.notes],
        "</ul>",
    ]
    if t.comparisons:
        cols, cgrid = t.comparison_grid()
        lines += [f'<p class="note">{html.escape(t.comparison_note())}</p>']
        lines += _html_table("", ["", *cols], cgrid, "comparisons")
    lines += ["</body></html>"]
    return "\n".join(lines) + "\n"
