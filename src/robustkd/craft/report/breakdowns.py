"""The CRAFT study's breakdown tables: top-1 per corruption and per severity, every method.

Both are built by :func:`robustkd.report.tables.build_table` from the per-seed
``eval/{condition}.json`` files, with paired comparisons across seeds of CRAFT against every
other method.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from robustkd.corruption_names import corruption_family  # torch-free: the report loads no torch
from robustkd.craft import layout
from robustkd.craft.report.runs import (
    Runs,
    corruption_label,
    corruption_names,
    frost_notes,
    method_label,
)
from robustkd.report.tables import Cell, TableSpec, build_table, with_reference_comparisons

__all__ = ["write_breakdown_tables"]


def write_breakdown_tables(
    runs: Runs,
    config: Mapping[str, Any],
    out_dir: Path,
    provenance: Mapping[str, Any] | None = None,
) -> None:
    """``craft_per_corruption`` and ``craft_per_severity`` with :func:`build_table`.

    Both print paired comparisons across seeds of CRAFT against every other method.
    """
    seeds = config["seeds"]
    columns = [(m, method_label(m)) for m in runs.methods]

    def cells(conditions: Sequence[str]) -> list[Cell]:
        return [
            Cell(c, m, tuple(layout.eval_file(m, s, c) for s in seeds))
            for c in conditions
            for m in runs.methods
        ]

    def compared(spec: TableSpec) -> TableSpec:
        return with_reference_comparisons(spec, "craft") if "craft" in runs.methods else spec

    def row_label(c: str) -> str:
        tag = " [CRAFT train]" if c in runs.train else ""
        return f"{corruption_label(c)} ({corruption_family(c)}){tag}"

    spec = TableSpec(
        "craft_per_corruption",
        "CRAFT study: top-1 (%) per corruption, mean over severities",
        rows=[(c, row_label(c)) for c in runs.corruptions],
        columns=columns,
        row_header="Corruption",
        notes=[
            "[CRAFT train]: a corruption of CRAFT's training views; every other row is "
            "held out from every method's training.",
            *frost_notes(runs),
        ],
    )
    build_table(
        compared(spec),
        cells(runs.corruptions),
        out_dir / "craft_per_corruption",
        provenance=provenance,
    )
    rows = [("clean", "Clean")] + [(f"severity{s}", f"Severity {s}") for s in runs.severities]
    rows += [("robust_all", "All corruptions"), ("robust_heldout", "Primary: held-out")]
    spec = TableSpec(
        "craft_per_severity",
        "CRAFT study: top-1 (%) per corruption severity, mean over corruptions",
        rows=rows,
        columns=columns,
        row_header="Test images",
        notes=[
            f"Severity rows average all {len(runs.corruptions)} evaluated corruptions; "
            f"All corruptions: every corruption and severity; Primary: the held-out "
            f"corruptions ({corruption_names(runs.heldout)}), every severity.",
        ],
    )
    build_table(
        compared(spec),
        cells([r for r, _ in rows]),
        out_dir / "craft_per_severity",
        provenance=provenance,
    )
