"""Beyond the paper: the corruption table, its mCE, paired tests and figure (issue 17).

Input: one ``corruptions.json`` per Table 1 model (method, training distortion), written by
:func:`robustkd.engine.corrupted.corruption_eval_job`: top-1 (%) per seed, corruption and
severity.

**Normalisation (mCE-style).** Hendrycks & Dietterich (2019) normalise a model's corruption
errors by AlexNet's; we use the supervised baseline (config ``experiments.corruptions.baseline``)
in AlexNet's place, trained on the same distortion with the same seed. With
``E(m, d, k, c, s) = 100 - top1`` (%) of method ``m`` fine-tuned under training distortion ``d``,
seed ``k``, on corruption ``c`` at severity ``s``::

    CE_c(m, d, k) = sum_s E(m, d, k, c, s) / sum_s E(baseline, d, k, c, s)
    mCE(m, d, k)  = 100 * mean_c CE_c(m, d, k)
    mCE(m, k)     = mean_d mCE(m, d, k)          (the table's per-seed value)

so the baseline's mCE is 100 and lower is better; ``c`` runs over exactly those of the
benchmark's 15 corruptions that were evaluated
(:data:`robustkd.corruption_names.BENCHMARK_CORRUPTIONS`). Every other row is a mean top-1
(%): per corruption (over severities and training distortions), per severity
(over the benchmark corruptions and training distortions) and overall (likewise). An extra
corruption (``speckle_noise``, ``gaussian_blur``, ``saturate``) gets a row of its own and enters
neither the severity rows, the mean nor the mCE. Every model must hold every configured
(corruption, severity, seed) cell (:func:`~robustkd.report.corruption_values.check_complete`).
Each cell is the mean +- std (ddof 1) over seeds of these per-seed values; each method is
compared with the baseline by a paired t-test over seeds (:mod:`robustkd.report.stats`; no
correction for multiple comparisons).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustkd.atomic import atomic_write_text
from robustkd.corruption_names import BENCHMARK_CORRUPTIONS
from robustkd.layout import METHOD_LABELS
from robustkd.provenance import now_iso, write_provenance
from robustkd.report.corruption_values import (
    MCE_ROW,
    MEAN_ROW,
    benchmark_rows,
    cell_entries,
    check_complete,
    extra_rows,
    long_frame,
    mce_per_seed,
    row_values,
)
from robustkd.report.pages import write_markdown
from robustkd.report.stats import format_paired, pair_by_seed, paired_test

__all__ = [
    "build_corruption_table",
    "check_complete",
    "long_frame",
    "mce_per_seed",
    "plot_corruptions",
    "row_values",
]


def _ordered_rows(df: pd.DataFrame) -> list[str]:
    """Benchmark corruptions, severities, mean and mCE, then the extra corruptions."""
    severities = sorted(set(df["severity"]))
    rows = [*benchmark_rows(df), *(f"severity {s}" for s in severities), MEAN_ROW, MCE_ROW]
    return rows + extra_rows(df)


def build_corruption_table(
    files: Sequence[tuple[str, str, str]],
    out_prefix: str | os.PathLike[str],
    *,
    baseline: str,
    methods: Sequence[str],
    provenance: Mapping[str, Any],
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Write ``<out_prefix>.{csv,md,html}``, then ``.provenance.json`` (read by ``robustkd audit``).

    Args:
        files: ``(method, training distortion, corruptions.json)`` of every model.
        out_prefix: Path without extension.
        baseline: The method the mCE is normalised by and the others are compared with.
        methods: Column order.
        provenance: ``rule``, ``config``, ``wildcards`` of the record.
        corruptions: The configured corruptions, each of which every model must hold
            (default: those any model holds).
        severities: The configured severities, likewise.

    Returns:
        The CSV's frame: one row per (table row, method) with mean, std, n, per-seed values
        and the paired comparison with the baseline.

    Raises:
        ValueError: A (method, corruption, severity, seed) cell is missing or repeated, no
            benchmark corruption was evaluated, or the baseline is absent (named); nothing is
            written then.
    """
    started = now_iso()
    df = long_frame(files)
    check_complete(df, corruptions, severities)
    values = row_values(df, baseline)
    rows = _ordered_rows(df)
    records, cells = [], []
    for row in rows:
        for method in methods:
            v = values[(values["row"] == row) & (values["method"] == method)]
            per_seed = dict(zip(v["seed"].astype(int), v["value"], strict=True))
            vals = list(per_seed.values())
            rec: dict[str, Any] = {
                "row": row,
                "method": method,
                "mean": float(np.mean(vals)),
                "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
                "n": len(vals),
                "values": [per_seed[s] for s in sorted(per_seed)],
                "seeds": sorted(per_seed),
            }
            if method != baseline:
                b = values[(values["row"] == row) & (values["method"] == baseline)]
                seeds, a_v, b_v = pair_by_seed(
                    per_seed, dict(zip(b["seed"].astype(int), b["value"], strict=True))
                )
                r = paired_test(a_v, b_v, seeds=seeds)
                rec.update(
                    {"diff": r.mean_diff, "ci_low": r.ci_low, "ci_high": r.ci_high, "p": r.p}
                )
                rec["comparison"] = format_paired(r)
            records.append(rec)
            cells.append(
                {
                    "row": row,
                    "column": method,
                    "row_label": row,
                    "column_label": METHOD_LABELS.get(method, method),
                    "metric": "mce" if row == MCE_ROW else "top1",
                    "mean": rec["mean"],
                    "std": rec["std"],
                    "n": rec["n"],
                    "seeds": cell_entries(df, row, method, baseline),
                }
            )
    table = pd.DataFrame(records)
    outputs = [f"{os.fspath(out_prefix)}.{ext}" for ext in ("csv", "md", "html")]
    atomic_write_text(outputs[0], table.to_csv(index=False))
    write_markdown(
        outputs[1], _markdown(table, rows, methods, baseline, extra_rows(df)), page=outputs[2]
    )
    write_provenance(
        f"{os.fspath(out_prefix)}.provenance.json",
        inputs=sorted({p for _, _, p in files}),
        outputs=outputs,
        started=started,
        extra={
            "table": {
                "name": "corruptions",
                "title": "Table 1 models on corruptions never trained on",
                "metric": "top1",
                "cells": cells,
                "comparisons": [
                    {k: r[k] for k in ("row", "method", "diff", "ci_low", "ci_high", "p")}
                    for r in records
                    if "diff" in r
                ],
            }
        },
        **dict(provenance),
    )
    return table


def _fmt(x: float, std: float, n: int) -> str:
    return f"{x:.1f}" if n < 2 else f"{x:.1f} ± {std:.1f}"


def _which(rows: Sequence[str], extras: Sequence[str]) -> str:
    """The benchmark corruptions the table's rows are on, in words."""
    bench = [r for r in rows if r in BENCHMARK_CORRUPTIONS and r not in extras]
    n = len(BENCHMARK_CORRUPTIONS)
    if len(bench) == n:
        return f"the {n} benchmark corruptions"
    return f"{len(bench)} of the {n} benchmark corruptions ({', '.join(bench)})"


def _markdown(
    table: pd.DataFrame,
    rows: Sequence[str],
    methods: Sequence[str],
    baseline: str,
    extras: Sequence[str] = (),
) -> str:
    label = {m: METHOD_LABELS.get(m, m) for m in methods}
    head = ["", *(label[m] for m in methods)]
    others = [m for m in methods if m != baseline]
    lines = [
        "# Table 1 models on corruptions never trained on",
        "",
        f"Top-1 (%) on {_which(rows, extras)} (mean over severities and the Table 1 "
        "training distortions), per severity, overall, and mCE (%, lower is better): "
        f"CE_c = sum_s err(method, c, s) / sum_s err({label[baseline]}, c, s) for the same "
        f"training distortion and seed, mCE = 100 x mean over corruptions, averaged over the "
        f"training distortions ({label[baseline]} = 100). Mean ± std over seeds.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    by = {(r.row, r.method): r for r in table.itertuples()}

    def table_rows(names: Sequence[str]) -> list[str]:
        out = []
        for row in names:
            cells = [_fmt(by[row, m].mean, by[row, m].std, by[row, m].n) for m in methods]
            out.append(f"| {row} | " + " | ".join(cells) + " |")
        return out

    lines += table_rows([r for r in rows if r not in extras])
    if extras:
        lines += [
            "",
            "Extra corruptions, not of the benchmark (in neither the per-severity rows, the "
            "mean nor the mCE): top-1 (%), mean over severities and training distortions.",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
            *table_rows(extras),
        ]
    if others:
        lines += [
            "",
            f"Paired by seed, minus {label[baseline]}: mean difference [95 % CI], paired "
            "t-test p (no correction for multiple comparisons).",
            "",
            "| | " + " | ".join(label[m] for m in others) + " |",
            "|" + "---|" * (len(others) + 1),
        ]
        for row in rows:
            lines.append(
                f"| {row} | " + " | ".join(str(by[row, m].comparison) for m in others) + " |"
            )
    return "\n".join(lines) + "\n"


def plot_corruptions(
    files: Sequence[tuple[str, str, str]],
    out_prefix: str | os.PathLike[str],
    *,
    methods: Sequence[str],
) -> pd.DataFrame:
    """Heat map (corruption x method, mean top-1) and severity curves; PNG, PDF and data CSV.

    Args:
        files: ``(method, training distortion, corruptions.json)`` of every model.
        out_prefix: Path without extension.
        methods: Column and legend order.

    Returns:
        The data written to the CSV: per (method, seed, corruption, severity), top-1 averaged
        over the training distortions.
    """
    from robustkd.report.figures.style import figure_style, method_styles, save_figure

    df = long_frame(files)
    data = (
        df.groupby(["method", "seed", "corruption", "severity"], sort=False)["top1"]
        .mean()
        .reset_index()
    )
    corruptions = list(dict.fromkeys(df["corruption"]))
    import matplotlib.figure as mfig

    with figure_style():
        fig = mfig.Figure(figsize=(4 + 1.2 * len(methods) + 4, 0.32 * len(corruptions) + 2))
        ax_h, ax_c = fig.subplots(1, 2, gridspec_kw={"width_ratios": [len(methods) + 1, 4]})
        grid = (
            data.groupby(["corruption", "method"])["top1"]
            .mean()
            .unstack("method")
            .reindex(index=corruptions, columns=list(methods))
        )
        im = ax_h.imshow(grid.to_numpy(), cmap="viridis", aspect="auto")
        ax_h.set_xticks(range(len(methods)), [METHOD_LABELS.get(m, m) for m in methods])
        ax_h.set_yticks(range(len(corruptions)), [c.replace("_", " ") for c in corruptions])
        ax_h.grid(False)
        for (i, j), v in np.ndenumerate(grid.to_numpy()):
            if not math.isnan(v):
                ax_h.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7, color="w")
        fig.colorbar(im, ax=ax_h, label="top-1 (%)")
        ax_h.set_title("Mean over severities")
        styles = method_styles(list(methods))
        bench = data[data["corruption"].isin(BENCHMARK_CORRUPTIONS)]  # as the table's rows
        curve = bench.groupby(["method", "seed", "severity"])["top1"].mean().reset_index()
        for m in methods:
            c = curve[curve["method"] == m].groupby("severity")["top1"]
            mean, std = c.mean(), c.std(ddof=1).fillna(0.0)
            ax_c.plot(mean.index, mean.to_numpy(), label=METHOD_LABELS.get(m, m), **styles[m])
            ax_c.fill_between(
                mean.index, mean - std, mean + std, color=styles[m]["color"], alpha=0.15
            )
        ax_c.set_xlabel("severity")
        ax_c.set_ylabel("top-1 (%), mean over benchmark corruptions")
        ax_c.set_xticks(sorted(set(curve["severity"])))
        ax_c.legend()
        ax_c.set_title("By severity (± std over seeds)")
        fig.tight_layout()
        save_figure(fig, data, out_prefix)
    return data


def write_figure_provenance(
    files: Sequence[tuple[str, str, str]], out_prefix: str | os.PathLike[str], **fields: Any
) -> Path:
    """``<out_prefix>.provenance.json``: the figure's inputs and its three files."""
    prefix = os.fspath(out_prefix)
    path = Path(f"{prefix}.provenance.json")
    write_provenance(
        path,
        inputs=sorted({p for _, _, p in files}),
        outputs=[f"{prefix}.{ext}" for ext in ("png", "pdf", "csv")],
        **fields,
    )
    return path
