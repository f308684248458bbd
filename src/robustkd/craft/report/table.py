"""The CRAFT table: methods x accuracies, NaN count and cost, with the teacher as a reference.

Its columns mix units, so it is rendered here rather than by
:func:`robustkd.report.tables.build_table` (which takes one metric per table), in the same long
CSV format and cell format, with the same cell-level provenance.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from robustkd.atomic import atomic_write_text
from robustkd.craft.report.runs import Runs, corruption_names, frost_notes, method_label
from robustkd.provenance import now_iso
from robustkd.report.tables import (
    TABLE_FORMATS,
    cell_record,
    format_cell,
    write_table_provenance,
)

__all__ = ["write_craft_table"]


@dataclass(frozen=True)
class _Column:
    key: str
    label: str
    unit: str
    fmt: str  # "acc", "int", "sec", "rate", "count"


def _columns(runs: Runs) -> list[_Column]:
    cols = [
        _Column("clean", "Clean Acc", "%", "acc"),
        _Column("robust_all", "Robust Acc", "%", "acc"),
        _Column("robust_heldout", "Primary: Held-out Robust Acc", "%", "acc"),
    ]
    if runs.train:
        cols.append(_Column("robust_train", "Robust Acc on CRAFT-train corr.", "%", "acc"))
    return cols + [
        _Column("nan_count", "NaN count", "steps", "int"),
        _Column("teacher_forward_images", "Teacher fwd", "images", "count"),
        _Column("train_seconds", "Train time", "s", "sec"),
        _Column("images_per_s", "Throughput", "img/s", "rate"),
    ]


def _value(metrics: Mapping[str, Any], key: str) -> float:
    """A table value of one run: an accuracy or count at the top level, or a cost entry."""
    if key in metrics:
        return float(metrics[key])
    return float(metrics["cost"][key])


def _fmt(values: Sequence[float], kind: str) -> tuple[float, float, str]:
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    if kind == "acc":
        return mean, std, format_cell(mean, std, len(values))
    if kind == "count":
        text = f"{mean:,.0f}"
    elif kind == "int":
        text = f"{mean:.0f}" + (f" ± {std:.0f}" if len(values) > 1 else "")
    elif kind == "sec":
        text = f"{mean:.1f}" + (f" ± {std:.1f}" if len(values) > 1 else "")
    else:
        text = f"{mean:.0f}" + (f" ± {std:.0f}" if len(values) > 1 else "")
    return mean, std, text


def _latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_")):
        text = text.replace(a, b)
    return text.replace("±", r"$\pm$").replace("—", "--").replace("×", r"$\times$")


def _metric_key(col: _Column) -> str:
    """The (dotted) key of a column's value in ``metrics.json``."""
    return col.key if col.fmt in ("acc", "int") else f"cost.{col.key}"


def write_craft_table(
    runs: Runs,
    out_prefix: str | os.PathLike[str],
    config: Mapping[str, Any],
    provenance: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Write ``craft_table.{csv,md,tex,html}`` and its ``.provenance.json``.

    Args:
        runs: The study's metrics.
        out_prefix: Path without extension.
        config: The merged config (for the footnotes).
        provenance: Fields of the provenance record (``rule``, ``config``).

    Returns:
        One row per cell: row, column, metric, mean, std, n, per-seed values and seeds,
        metrics files (the long format of :func:`~robustkd.report.tables.build_table`).
    """
    started = now_iso()
    cols = _columns(runs)
    teacher_name = "Teacher (ResNet-{depth}, width {width}; 1 run)".format(**runs.teacher["model"])
    rows, grid, records = [], [], []
    for m in [*runs.methods, "teacher"]:
        if m == "teacher":
            label, seeds = teacher_name, [int(runs.teacher.get("seed", 0))]
        else:
            label, seeds = method_label(m), runs.seeds(m)
        line = [label]
        for col in cols:
            if m == "teacher" and col.fmt in ("count", "sec", "rate", "int"):
                line.append("—")
                continue
            if m == "teacher":
                vals, files = [float(runs.teacher[col.key])], [runs.teacher_path]
            else:
                vals = [_value(runs.metrics[(m, s)], col.key) for s in seeds]
                files = [runs.paths[(m, s)] for s in seeds]
            mean, std, text = _fmt(vals, col.fmt)
            line.append(text)
            rows.append(
                {
                    "row": m,
                    "column": col.key,
                    "metric": f"{col.key} ({col.unit})",
                    "mean": mean,
                    "std": std,
                    "n": len(vals),
                    "values": json.dumps(vals),
                    "seeds": json.dumps(seeds),
                    "metrics": json.dumps(files),
                }
            )
            records.append(
                cell_record(
                    m,
                    col.key,
                    _metric_key(col),
                    files,
                    vals,
                    seeds,
                    row_label=label,
                    column_label=f"{col.label} ({col.unit})",
                )
            )
        grid.append(line)
    notes = _table_notes(runs, config)
    header = ["Method"] + [f"{c.label} ({c.unit})" for c in cols]
    title = (
        f"CRAFT study: clean and corrupted CIFAR-10 top-1 of the student, "
        f"{len(config['seeds'])} seeds"
    )
    md = [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(r) + " |" for r in grid]
    md += [""] + [f"- {n}" for n in notes]
    tex = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_latex_escape(title)}}}",
        r"\label{tab:craft}",
        r"\resizebox{\linewidth}{!}{%",
        rf"\begin{{tabular}}{{l{'c' * len(cols)}}}",
        r"\toprule",
        " & ".join(_latex_escape(h) for h in header) + r" \\",
        r"\midrule",
        *[" & ".join(_latex_escape(c) for c in r) + r" \\" for r in grid],
        r"\bottomrule",
        r"\end{tabular}}",
        *[rf"\par\footnotesize {_latex_escape(n)}" for n in notes],
        r"\end{table}",
    ]
    cells_html = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in grid
    )
    page = [
        '<!DOCTYPE html><html><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title></head><body>",
        f"<h3>{html.escape(title)}</h3>",
        f'<table border="1"><thead><tr>{cells_html}</tr></thead><tbody>{body}</tbody></table>',
        "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>",
        "</body></html>",
    ]
    df = pd.DataFrame(rows)
    prefix = os.fspath(out_prefix)
    texts = {
        "csv": df.to_csv(index=False),
        "md": "\n".join(md) + "\n",
        "tex": "\n".join(tex) + "\n",
        "html": "\n".join(page) + "\n",
    }
    outputs = []
    for ext in TABLE_FORMATS:
        outputs.append(f"{prefix}.{ext}")
        atomic_write_text(outputs[-1], texts[ext])
    write_table_provenance(
        prefix,
        name="craft_table",
        title=title,
        metric="per column (see each cell)",
        cells=records,
        outputs=outputs,
        provenance=provenance,
        started=started,
    )
    return df


def _table_notes(runs: Runs, config: Mapping[str, Any]) -> list[str]:
    n_seeds = sorted({len(runs.seeds(m)) for m in runs.methods})
    sev = runs.severities
    any_metrics = next(iter(runs.metrics.values()))
    notes = [
        f"Cells: mean ± sample std over n = {', '.join(map(str, n_seeds))} seeds "
        f"(student seeds; one teacher, trained once, shared by all).",
        f"Robust Acc: mean top-1 over {len(runs.corruptions)} corruptions × {len(sev)} "
        f"severities ({sev[0]}-{sev[-1]}) of a CIFAR-10-C style corrupted copy of the test set "
        f"({any_metrics['n_test']} images per corruption and severity).",
        f"Primary metric (the same definition for every method): mean top-1 over the "
        f"{len(runs.heldout)} held-out corruptions × {len(sev)} severities, the corruptions "
        f"CRAFT never sees in training: {corruption_names(runs.heldout)}.",
    ]
    if runs.train:
        notes.append(
            f"Robust Acc on CRAFT-train corr.: mean over {corruption_names(runs.train)}, CRAFT's "
            f"training-view corruptions (fresh random draws in training): not a held-out result."
        )
    notes += [
        "NaN count: logged training steps with a non-finite loss component. The shared loop "
        "stops a run at its first non-finite loss (NonFiniteError, naming step and component), "
        "so every completed run counts 0 by construction.",
        "Teacher fwd: teacher forward passes per training run (images × views per image: ERM 0, "
        f"LogitKD/AttentionKD/CRD 1, CRAFT M + 1 = "
        f"{config['craft']['objectives']['craft']['views'] + 1}).",
        "Train time and throughput (training images per second; CRAFT's images carry M + 1 "
        "views): training only, one CPU thread per job on the machine that ran the study.",
        *frost_notes(runs),
    ]
    resumed = sorted(
        f"{method_label(m)} seed {s}"
        for (m, s), v in runs.metrics.items()
        if v["cost"]["resumed_from"]
    )
    if resumed:
        notes.append(
            "Resumed after an interruption (time and throughput cover the resumed part only): "
            + ", ".join(resumed)
            + "."
        )
    return notes
