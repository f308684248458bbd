"""A table's layout: its rows and columns, the cells that hold data and the paired comparisons.

:class:`TableSpec` says what a table shows and in which order; each :class:`Cell` names the
metrics files of one (row, column) over seeds; each :class:`Comparison` is a paired test of
two cells printed under the table (:func:`with_reference_comparisons` makes the paper's:
ours vs every other method).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

__all__ = [
    "Cell",
    "Comparison",
    "TableSpec",
    "distortion_label",
    "reference_comparisons",
    "with_reference_comparisons",
]

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
