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

so the baseline's mCE is 100 and lower is better. Every other row is a mean top-1 (%): per
corruption (over severities and training distortions), per severity (over corruptions and
training distortions) and overall. Each cell is the mean +- std (ddof 1) over seeds of these
per-seed values; each method is compared with the baseline by a paired t-test over seeds
(:mod:`robustkd.report.stats`; no correction for multiple comparisons).
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
from robustkd.layout import METHOD_LABELS
from robustkd.provenance import now_iso, sha256_file, write_provenance
from robustkd.readback import read_json
from robustkd.report.pages import write_markdown
from robustkd.report.stats import format_paired, pair_by_seed, paired_test

__all__ = [
    "build_corruption_table",
    "long_frame",
    "mce_per_seed",
    "plot_corruptions",
    "row_values",
]

MCE_ROW = "mCE"
MEAN_ROW = "mean"


def long_frame(files: Sequence[tuple[str, str, str]]) -> pd.DataFrame:
    """One row per (method, distortion, seed, corruption, severity): ``top1`` in %.

    Args:
        files: ``(method, training distortion, corruptions.json)`` of every model.

    Raises:
        UnreadableFileError: A file cannot be read (named).
        ValueError: A file holds no results (named).
    """
    rows = []
    for method, distortion, path in files:
        rec = read_json(path, "corruption evaluation")
        if not rec.get("results"):
            raise ValueError(f"{path}: no results")
        for r in rec["results"]:
            rows.append(
                {
                    "method": method,
                    "distortion": distortion,
                    "file": str(path),
                    "seed": int(r["seed"]),
                    "corruption": str(r["corruption"]),
                    "severity": int(r["severity"]),
                    "top1": float(r["top1"]),
                }
            )
    return pd.DataFrame(rows)


def mce_per_seed(df: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """The mCE (%) of every method per seed, relative to ``baseline`` (module docstring).

    Args:
        df: :func:`long_frame`.
        baseline: The reference method (mCE 100).

    Returns:
        Columns ``method``, ``seed``, ``mce``.

    Raises:
        ValueError: The baseline is missing, lacks a (distortion, seed, corruption) another
            method has, or has zero error on a corruption (CE undefined); the message names it.
    """
    if baseline not in set(df["method"]):
        raise ValueError(
            f"experiments.corruptions.baseline: {baseline!r} is not among the evaluated "
            f"methods ({sorted(set(df['method']))})"
        )
    err = (
        df.assign(err=100.0 - df["top1"])
        .groupby(["method", "distortion", "seed", "corruption"])["err"]
        .sum()
    )
    base = err.xs(baseline, level="method")
    out = []
    for (method, distortion, seed), grp in err.groupby(level=["method", "distortion", "seed"]):
        ces = []
        for (_, _, _, corruption), e in grp.items():
            key = (distortion, seed, corruption)
            if key not in base.index:
                raise ValueError(f"baseline {baseline!r} has no result for {key}")
            if base[key] == 0:
                raise ValueError(f"baseline {baseline!r} has zero error on {key}: CE undefined")
            ces.append(e / base[key])
        out.append(
            {"method": method, "distortion": distortion, "seed": seed, "mce": 100 * np.mean(ces)}
        )
    per_model = pd.DataFrame(out)
    return per_model.groupby(["method", "seed"], as_index=False)["mce"].mean()


def row_values(df: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Per-seed values of every table row and method (``row``, ``method``, ``seed``, ``value``).

    Rows: each corruption (mean top-1 over severities and distortions), ``severity s`` (mean
    over corruptions and distortions), ``mean`` (over all) and ``mCE``.
    """
    parts = []
    per_model = df.groupby(["method", "distortion", "seed", "corruption"])["top1"].mean()
    by_c = per_model.groupby(["method", "seed", "corruption"]).mean().reset_index()
    parts.append(by_c.rename(columns={"corruption": "row", "top1": "value"}))
    per_sev = df.groupby(["method", "distortion", "seed", "severity"])["top1"].mean()
    by_s = per_sev.groupby(["method", "seed", "severity"]).mean().reset_index()
    by_s["row"] = "severity " + by_s["severity"].astype(str)
    parts.append(by_s.drop(columns="severity").rename(columns={"top1": "value"}))
    mean = df.groupby(["method", "distortion", "seed"])["top1"].mean()
    mean = mean.groupby(["method", "seed"]).mean().reset_index()
    parts.append(mean.assign(row=MEAN_ROW).rename(columns={"top1": "value"}))
    parts.append(mce_per_seed(df, baseline).assign(row=MCE_ROW).rename(columns={"mce": "value"}))
    return pd.concat(parts, ignore_index=True)[["row", "method", "seed", "value"]]


def _entries(df: pd.DataFrame, row: str, method: str, baseline: str) -> list[dict[str, Any]]:
    """The values a cell is computed from, each with its file, sha256 and key (for the audit).

    Each value is read back from the file's ``per_seed`` summary (the audit compares it with
    the file exactly); an mCE cell lists the per-corruption top-1 of the method and of the
    baseline it is normalised by.
    """
    methods = [method, baseline] if row == MCE_ROW and method != baseline else [method]
    sel = df[df["method"].isin(methods)]
    out = []
    for (m, d, seed, path), grp in sel.groupby(["method", "distortion", "seed", "file"]):
        summary = read_json(path, "corruption evaluation")["per_seed"][str(seed)]
        if row == MEAN_ROW:
            keys = [("mean",)]
        elif row.startswith("severity "):
            keys = [("per_severity", row.split()[1])]
        else:
            names = sorted(set(grp["corruption"])) if row == MCE_ROW else [row]
            keys = [("per_corruption", c) for c in names]
        for key in keys:
            value: Any = summary
            for k in key:
                value = value[k]
            out.append(
                {
                    "seed": int(seed),
                    "method": m,
                    "distortion": d,
                    "metrics": path,
                    "sha256": sha256_file(path),
                    "metric": ".".join(("per_seed", str(seed), *key)),
                    "value": float(value),
                }
            )
    return out


def _ordered_rows(df: pd.DataFrame) -> list[str]:
    corruptions = list(dict.fromkeys(df["corruption"]))
    severities = sorted(set(df["severity"]))
    return [*corruptions, *(f"severity {s}" for s in severities), MEAN_ROW, MCE_ROW]


def build_corruption_table(
    files: Sequence[tuple[str, str, str]],
    out_prefix: str | os.PathLike[str],
    *,
    baseline: str,
    methods: Sequence[str],
    provenance: Mapping[str, Any],
) -> pd.DataFrame:
    """Write ``<out_prefix>.{csv,md,html}``, then ``.provenance.json`` (read by ``robustkd audit``).

    Args:
        files: ``(method, training distortion, corruptions.json)`` of every model.
        out_prefix: Path without extension.
        baseline: The method the mCE is normalised by and the others are compared with.
        methods: Column order.
        provenance: ``rule``, ``config``, ``wildcards`` of the record.

    Returns:
        The CSV's frame: one row per (table row, method) with mean, std, n, per-seed values
        and the paired comparison with the baseline.
    """
    started = now_iso()
    df = long_frame(files)
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
                    "seeds": _entries(df, row, method, baseline),
                }
            )
    table = pd.DataFrame(records)
    outputs = [f"{os.fspath(out_prefix)}.{ext}" for ext in ("csv", "md", "html")]
    atomic_write_text(outputs[0], table.to_csv(index=False))
    write_markdown(outputs[1], _markdown(table, rows, methods, baseline), page=outputs[2])
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


def _markdown(
    table: pd.DataFrame, rows: Sequence[str], methods: Sequence[str], baseline: str
) -> str:
    label = {m: METHOD_LABELS.get(m, m) for m in methods}
    head = ["", *(label[m] for m in methods)]
    others = [m for m in methods if m != baseline]
    lines = [
        "# Table 1 models on corruptions never trained on",
        "",
        "Top-1 (%) on the 15 benchmark corruptions (mean over severities and the Table 1 "
        "training distortions), per severity, overall, and mCE (%, lower is better): "
        f"CE_c = sum_s err(method, c, s) / sum_s err({label[baseline]}, c, s) for the same "
        f"training distortion and seed, mCE = 100 x mean over corruptions, averaged over the "
        f"training distortions ({label[baseline]} = 100). Mean ± std over seeds.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    by = {(r.row, r.method): r for r in table.itertuples()}
    for row in rows:
        cells = [_fmt(by[row, m].mean, by[row, m].std, by[row, m].n) for m in methods]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
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
        curve = data.groupby(["method", "seed", "severity"])["top1"].mean().reset_index()
        for m in methods:
            c = curve[curve["method"] == m].groupby("severity")["top1"]
            mean, std = c.mean(), c.std(ddof=1).fillna(0.0)
            ax_c.plot(mean.index, mean.to_numpy(), label=METHOD_LABELS.get(m, m), **styles[m])
            ax_c.fill_between(
                mean.index, mean - std, mean + std, color=styles[m]["color"], alpha=0.15
            )
        ax_c.set_xlabel("severity")
        ax_c.set_ylabel("top-1 (%), mean over corruptions")
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
