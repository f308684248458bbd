"""Pages of the Snakemake report: results the pipeline writes as Markdown or JSON, as HTML.

``snakemake --report`` shows an HTML result in the browser and offers any other file only as a
download. The claims and corruption tables are written as Markdown and CSV, and every cell's
provenance as JSON; the report's page rules (``workflow/rules/report.smk``) render them here,
reading the files and changing none. No PyTorch: the rules run in ``envs/report.yaml``.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from robustkd.atomic import atomic_write_text
from robustkd.report.htmlstyle import HTML_STYLE

__all__ = [
    "html_document",
    "is_report_command",
    "markdown_html",
    "markdown_page",
    "provenance_html",
    "write_markdown",
]

_PAGE_STYLE = (
    HTML_STYLE
    + """
h1 { font-size: 1.15em; }
h2 { font-size: 1em; margin-top: 1.6em; }
code { font-size: 0.9em; }
table.seeds td, table.seeds th { font-size: 0.85em; }
td.path { text-align: left; white-space: normal; word-break: break-all; }
table.md td, table.md th { text-align: left; white-space: normal; }
dl.record dt { font-weight: bold; float: left; clear: left; width: 9em; }
dl.record dd { margin-left: 10em; }
"""
)


def is_report_command(argv: Sequence[str]) -> bool:
    """Whether a Snakemake command line only writes a report, without running jobs.

    ``--report [FILE]`` or a ``--reporter`` plugin, and not ``--report-after-run`` (which runs
    the targets, then reports).
    """
    args = list(argv[1:])
    if "--report-after-run" in args:
        return False
    return any(
        a in ("--report", "--reporter") or a.startswith(("--report=", "--reporter=")) for a in args
    )


def html_document(title: str, body: Sequence[str]) -> str:
    """A standalone page (the tables' style) with ``title`` and the HTML lines of ``body``."""
    lines = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_PAGE_STYLE}</style>",
        "</head><body>",
        *body,
        "</body></html>",
    ]
    return "\n".join(lines) + "\n"


def _inline(text: str) -> str:
    """Escape ``text`` and render ``**bold**``, ``*italic*`` and ```code``` spans."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _is_rule(line: str) -> bool:
    """The ``|---|:--:|`` line under a Markdown table's header."""
    return bool(re.fullmatch(r"\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?", line.strip()))


def markdown_html(text: str) -> list[str]:
    """The Markdown the pipeline writes, as HTML lines.

    Handles what its tables use: ``#`` headings (and a bold line on its own), pipe tables (a
    header, its rule line, rows), ``-`` bullet lists (a line indented under an item continues
    it), paragraphs and inline bold, italic and code.
    """
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif m := re.match(r"(#{1,6})\s+(.*)", line):
            level = len(m.group(1))
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
            i += 1
        elif line.lstrip().startswith("|") and i + 1 < len(lines) and _is_rule(lines[i + 1]):
            header = _cells(line)
            out += ['<table class="md">', "<thead><tr>"]
            out += [f"<th>{_inline(h)}</th>" for h in header]
            out += ["</tr></thead>", "<tbody>"]
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                out.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in _cells(lines[i])))
                out[-1] += "</tr>"
                i += 1
            out += ["</tbody>", "</table>"]
        elif re.match(r"\s*[-*]\s+", line):
            out.append("<ul>")
            while i < len(lines) and re.match(r"\s*[-*]\s+", lines[i]):
                item = re.sub(r"^\s*[-*]\s+", "", lines[i])
                i += 1
                while i < len(lines) and lines[i].startswith("  ") and lines[i].strip():
                    if re.match(r"\s*[-*]\s+", lines[i]):
                        break
                    item += " " + lines[i].strip()
                    i += 1
                out.append(f"<li>{_inline(item)}</li>")
            out.append("</ul>")
        else:
            para = [line.strip()]
            i += 1
            while i < len(lines) and lines[i].strip():
                nxt = lines[i]
                if nxt.lstrip().startswith(("|", "#")) or re.match(r"\s*[-*]\s+", nxt):
                    break
                para.append(nxt.strip())
                i += 1
            text = " ".join(para)
            if re.fullmatch(r"\*\*[^*]+\*\*", text):  # a bold line on its own: a heading
                out.append(f"<h1>{_inline(text[2:-2])}</h1>")
            else:
                out.append(f'<p class="note">{_inline(text)}</p>')
    return out


def markdown_page(md: str) -> str:
    """A standalone page of the Markdown ``md``, titled by its first line."""
    first = md.strip().splitlines()[0] if md.strip() else ""
    return html_document(first.lstrip("#").strip().strip("*").strip(), markdown_html(md))


def write_markdown(path: str | os.PathLike[str], md: str, page: str | os.PathLike[str]) -> None:
    """Write the Markdown ``md`` to ``path`` and its page (:func:`markdown_page`) to ``page``."""
    atomic_write_text(path, md)
    atomic_write_text(page, markdown_page(md))


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return html.escape(str(value))


def provenance_html(record: Mapping[str, Any], table_file: str) -> str:
    """A table's provenance record (``<table>.provenance.json``) as a page.

    For every cell: its row and column, mean ± std over n seeds, and per seed the value, the
    metrics file it was read from and that file's sha256 when the table was built; then the job
    that built the table (rule, code commit, time) and the command that audits it.

    Args:
        record: The record, as :func:`robustkd.report.tables.write_table_provenance` wrote it.
        table_file: The table's CSV (``results/tables/table1.csv``), for the audit command.
    """
    table = record.get("table", {})
    esc = html.escape
    title = table.get("title") or table.get("name") or table_file
    code = record.get("code") or {}
    commit = code.get("commit") or "unknown"
    if code.get("dirty"):
        commit += " (uncommitted changes)"
    cells = table.get("cells", [])
    body = [
        f"<h1>Provenance: {esc(title)}</h1>",
        '<p class="note">Each cell of the table, with the value of every seed, the metrics file '
        "it was read from and that file's sha256 when the table was built. "
        f"<code>robustkd audit {esc(table_file)} --cell ROW COLUMN</code> re-hashes one cell's "
        "files and walks each back to the raw data.</p>",
        '<dl class="record">',
        f"<dt>Rule</dt><dd>{esc(str(record.get('rule', '')))}</dd>",
        f"<dt>Code</dt><dd>{esc(commit)}</dd>",
        f"<dt>Built</dt><dd>{esc(str(record.get('finished', '')))}</dd>",
        f"<dt>Cells</dt><dd>{len(cells)}, metric {esc(str(table.get('metric', '')))}</dd>",
        f"<dt>Metrics files</dt><dd>{len(record.get('inputs', []))}</dd>",
        "</dl>",
    ]
    for cell in cells:
        row = cell.get("row_label", cell.get("row"))
        col = cell.get("column_label", cell.get("column"))
        summary = f"{_number(cell.get('mean'))} ± {_number(cell.get('std'))}, n = {cell['n']}"
        if cell.get("n", 0) < 2:
            summary = f"{_number(cell.get('mean'))}, n = {cell.get('n', 0)}"
        body += [
            f'<h2 class="cell">{esc(str(row))} | {esc(str(col))}: {summary}</h2>',
            f'<p class="note">Audit: <code>robustkd audit {esc(table_file)} --cell '
            f"{esc(str(cell.get('row')))} {esc(str(cell.get('column')))}</code></p>",
            '<table class="seeds">',
            "<thead><tr><th>Seed</th><th>Value</th><th>Metrics file</th><th>sha256</th></tr>"
            "</thead><tbody>",
        ]
        for s in cell.get("seeds", []):
            body.append(
                f"<tr><td>{esc(str(s.get('seed')))}</td><td>{_number(s.get('value'))}</td>"
                f'<td class="path"><code>{esc(str(s.get("metrics")))}</code></td>'
                f'<td class="path"><code>{esc(str(s.get("sha256", ""))[:16])}…</code></td></tr>'
            )
        body += ["</tbody></table>"]
    return html_document(f"Provenance: {title}", body)
