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

Modules: :mod:`~robustkd.report.tables.spec` (a table's layout, cells and comparisons),
:mod:`~robustkd.report.tables.values` (reading each seed's value, per-cell summaries, the
paired tests), :mod:`~robustkd.report.tables.render` (Markdown, LaTeX, HTML),
:mod:`~robustkd.report.tables.provenance` (the cell -> metrics record) and
:mod:`~robustkd.report.tables.build` (:func:`build_table`, all of them in order).
"""

from robustkd.report.tables.build import TABLE_FORMATS, build_table
from robustkd.report.tables.provenance import (
    cell_record,
    table_provenance_path,
    write_table_provenance,
)
from robustkd.report.tables.render import format_cell
from robustkd.report.tables.spec import (
    Cell,
    Comparison,
    TableSpec,
    distortion_label,
    reference_comparisons,
    with_reference_comparisons,
)
from robustkd.report.tables.values import read_value

__all__ = [
    "TABLE_FORMATS",
    "Cell",
    "Comparison",
    "TableSpec",
    "build_table",
    "cell_record",
    "distortion_label",
    "format_cell",
    "read_value",
    "reference_comparisons",
    "table_provenance_path",
    "with_reference_comparisons",
    "write_table_provenance",
]
