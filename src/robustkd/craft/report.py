"""The CRAFT study's table and figures, from the per-seed ``metrics.json`` of every student.

Tables (``results/craft/tables/``, CSV + Markdown + LaTeX):

- ``craft_table``: methods x clean / robust / primary / CRAFT-train corruptions / NaN count /
  cost, mean +- sample std over seeds, with the teacher as a reference row. Its columns mix
  units, so it is rendered here (same long CSV format and cell format as
  :func:`robustkd.report.tables.build_table`, which takes one metric per table).
- ``craft_per_corruption`` and ``craft_per_severity``: the breakdowns, built by
  :func:`~robustkd.report.tables.build_table` from the per-seed ``eval/{condition}.json``.

Figures (``results/craft/figures/``, PNG + PDF + the CSV of the plotted data), as the paper's:
clean vs robust bars (its Figs. 3-4), pairwise differences (Fig. 5), the per-corruption and
per-severity comparison (Fig. 6), NaN counts (Fig. 7), cost vs robustness (Fig. 8), training
curves (Fig. 9) and the teacher-student alignment heatmap, layers x severity (Fig. 2).
"""

from __future__ import annotations

import html
import io
import json
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from robustkd.atomic import atomic_write_bytes, atomic_write_text
from robustkd.craft import layout
from robustkd.craft.corruptions import corruption_family
from robustkd.provenance import now_iso, write_provenance
from robustkd.readback import read_json
from robustkd.report.tables import (
    TABLE_FORMATS,
    Cell,
    TableSpec,
    build_table,
    cell_record,
    format_cell,
    with_reference_comparisons,
    write_table_provenance,
)

__all__ = ["METHOD_LABELS", "load_runs", "report_job", "write_craft_table", "write_figures"]

METHOD_LABELS = {
    "erm": "ERM",
    "logitkd": "LogitKD",
    "attentionkd": "AttentionKD",
    "crd": "CRD",
    "craft": "CRAFT",
}
_CORRUPTION_LABELS = {
    "gaussian_noise": "Gaussian noise",
    "shot_noise": "Shot noise",
    "impulse_noise": "Impulse noise",
    "speckle_noise": "Speckle noise",
    "defocus_blur": "Defocus blur",
    "glass_blur": "Glass blur",
    "motion_blur": "Motion blur",
    "zoom_blur": "Zoom blur",
    "gaussian_blur": "Gaussian blur",
    "snow": "Snow",
    "frost": "Frost (procedural)",
    "fog": "Fog",
    "brightness": "Brightness",
    "contrast": "Contrast",
    "elastic_transform": "Elastic",
    "pixelate": "Pixelate",
    "jpeg_compression": "JPEG",
    "saturate": "Saturate",
}
DPI = 150


def _label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def corruption_label(name: str) -> str:
    """Human name of a corruption."""
    return _CORRUPTION_LABELS.get(name, name.replace("_", " "))


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


@dataclass
class Runs:
    """Everything the report reads.

    Attributes:
        methods: Methods in table order.
        metrics: ``(method, seed) -> metrics.json`` content.
        paths: ``(method, seed) -> metrics.json`` path.
        teacher: The teacher's ``metrics.json``.
        teacher_path: Its path.
        heldout: Held-out corruptions; ``train``: CRAFT's training corruptions.
    """

    methods: list[str]
    metrics: dict[tuple[str, int], dict[str, Any]]
    paths: dict[tuple[str, int], str]
    teacher: dict[str, Any]
    teacher_path: str
    heldout: list[str]
    train: list[str]
    corruptions: list[str]
    severities: list[int]

    def seeds(self, method: str) -> list[int]:
        """Seeds of a method, sorted."""
        return sorted(s for m, s in self.metrics if m == method)


def load_runs(config: Mapping[str, Any]) -> Runs:
    """Read the teacher's and every student's ``metrics.json`` named by ``config``."""
    methods = list(config["methods"]["craft"])
    metrics, paths = {}, {}
    for m in methods:
        for s in config["seeds"]:
            p = layout.student_files(m, s)["metrics"]
            metrics[(m, int(s))] = read_json(p, "metrics file")
            paths[(m, int(s))] = p
    tpath = layout.teacher_files()["metrics"]
    cor = config["craft"]["corruptions"]
    return Runs(
        methods,
        metrics,
        paths,
        read_json(tpath, "teacher metrics file"),
        tpath,
        layout.heldout_corruptions(config),
        [c for c in cor["craft_train"] if c in cor["evaluate"]],
        list(cor["evaluate"]),
        [int(s) for s in cor["severities"]],
    )


# ----------------------------------------------------------------------------------------------
# The CRAFT table
# ----------------------------------------------------------------------------------------------


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
            label, seeds = _label(m), runs.seeds(m)
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


def _names(corruptions: Sequence[str]) -> str:
    return ", ".join(corruption_label(c) for c in corruptions)


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
        f"CRAFT never sees in training: {_names(runs.heldout)}.",
    ]
    if runs.train:
        notes.append(
            f"Robust Acc on CRAFT-train corr.: mean over {_names(runs.train)}, CRAFT's "
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
        "Frost uses a procedural texture in place of the benchmark's photographs.",
    ]
    resumed = sorted(
        f"{_label(m)} seed {s}" for (m, s), v in runs.metrics.items() if v["cost"]["resumed_from"]
    )
    if resumed:
        notes.append(
            "Resumed after an interruption (time and throughput cover the resumed part only): "
            + ", ".join(resumed)
            + "."
        )
    return notes


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
    columns = [(m, _label(m)) for m in runs.methods]

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
            "Frost uses a procedural texture in place of the benchmark's photographs.",
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
            f"corruptions ({_names(runs.heldout)}), every severity.",
        ],
    )
    build_table(
        compared(spec),
        cells([r for r, _ in rows]),
        out_dir / "craft_per_severity",
        provenance=provenance,
    )


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------


@contextmanager
def _style() -> Iterator[None]:
    with (
        mpl.rc_context(),
        sns.axes_style("whitegrid"),
        sns.plotting_context("paper", font_scale=1.05),
        warnings.catch_warnings(),
    ):
        # seaborn's heatmap calls a colormap method matplotlib plans to deprecate.
        warnings.filterwarnings("ignore", category=PendingDeprecationWarning, module="seaborn")
        mpl.rcParams.update(
            {
                "figure.dpi": DPI,
                "savefig.dpi": DPI,
                "axes.titleweight": "bold",
                "legend.frameon": False,
                "pdf.fonttype": 42,
                "ps.fonttype": 42,
            }
        )
        yield


def _colours(methods: Sequence[str]) -> dict[str, Any]:
    palette = sns.color_palette("colorblind")
    fixed = {"erm": 7, "logitkd": 0, "attentionkd": 2, "crd": 4, "craft": 3}
    return {m: palette[fixed.get(m, i) % len(palette)] for i, m in enumerate(methods)}


def _save(fig: Figure, data: pd.DataFrame, prefix: Path) -> None:
    """Write ``<prefix>.png``, ``.pdf`` and the plotted data ``.csv`` (atomically)."""
    rendered = {}
    for fmt, meta in (("png", {"Software": None}), ("pdf", {"CreationDate": None})):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=DPI, metadata=meta, bbox_inches="tight")
        rendered[fmt] = buf.getvalue()
    atomic_write_text(f"{prefix}.csv", data.to_csv(index=False))
    for fmt, blob in rendered.items():
        atomic_write_bytes(Path(f"{prefix}.{fmt}"), blob)


def _accuracy_frame(runs: Runs) -> pd.DataFrame:
    rows = []
    for (m, s), v in runs.metrics.items():
        for key, label in (
            ("clean", "Clean"),
            ("robust_all", "Robust (all corruptions)"),
            ("robust_heldout", "Primary: robust, held-out"),
        ):
            rows.append({"method": m, "seed": s, "metric": label, "key": key, "top1": v[key]})
    return pd.DataFrame(rows)


def fig_clean_vs_robust(runs: Runs, prefix: Path) -> None:
    """Grouped bars per method: clean, robust and primary accuracy (mean +- std, seed dots)."""
    df = _accuracy_frame(runs)
    metrics = list(dict.fromkeys(df["metric"]))
    palette = sns.color_palette("colorblind")
    shades = {metrics[0]: palette[0], metrics[1]: palette[1], metrics[2]: palette[2]}
    with _style():
        fig = Figure(figsize=(7.5, 3.8))
        ax = fig.add_subplot()
        width = 0.26
        x = np.arange(len(runs.methods))
        for k, metric in enumerate(metrics):
            sub = df[df["metric"] == metric]
            g = sub.groupby("method")["top1"]
            mean = g.mean().reindex(runs.methods).to_numpy()
            std = g.std(ddof=1).reindex(runs.methods).fillna(0).to_numpy()
            pos = x + (k - 1) * width
            ax.bar(
                pos,
                mean,
                width,
                yerr=std,
                capsize=3,
                color=shades[metric],
                label=metric,
                alpha=0.9,
                error_kw={"linewidth": 1},
            )
            for i, m in enumerate(runs.methods):
                vals = sub[sub["method"] == m]["top1"].to_numpy()
                ax.scatter(np.full(len(vals), pos[i]), vals, s=9, color="black", zorder=3)
        t = runs.teacher
        for key, colour, text in (
            ("clean", palette[0], "teacher, clean"),
            ("robust_heldout", palette[2], "teacher, held-out"),
        ):
            ax.axhline(t[key], color=colour, linestyle="--", linewidth=1)
            ax.text(-0.45, t[key] + 0.8, text, va="bottom", ha="left", fontsize=7, color=colour)
        ax.set_xticks(x, [_label(m) for m in runs.methods])
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title("Clean and robust accuracy of the students")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize=8)
        _save(fig, df, prefix)


def fig_pairwise(runs: Runs, prefix: Path) -> None:
    """Heatmaps of row-minus-column differences (paired by seed) of clean and primary accuracy."""
    rows = []
    for key, title in (("clean", "Δ clean accuracy"), ("robust_heldout", "Δ primary (held-out)")):
        for a in runs.methods:
            for b in runs.methods:
                common = sorted(set(runs.seeds(a)) & set(runs.seeds(b)))
                d = [runs.metrics[(a, s)][key] - runs.metrics[(b, s)][key] for s in common]
                rows.append(
                    {
                        "metric": key,
                        "title": title,
                        "method_row": a,
                        "method_col": b,
                        "mean": float(np.mean(d)),
                        "std": float(np.std(d, ddof=1)) if len(d) > 1 else 0.0,
                        "n": len(d),
                    }
                )
    df = pd.DataFrame(rows)
    labels = [_label(m) for m in runs.methods]
    lim = max(1.0, float(df["mean"].abs().max()))
    with _style():
        fig = Figure(figsize=(10, 4.2))
        axes = fig.subplots(1, 2)
        for ax, (_, sub) in zip(axes, df.groupby("metric", sort=False), strict=True):
            mean = sub.pivot(index="method_row", columns="method_col", values="mean")
            std = sub.pivot(index="method_row", columns="method_col", values="std")
            mean = mean.reindex(index=runs.methods, columns=runs.methods)
            std = std.reindex(index=runs.methods, columns=runs.methods)
            annot = np.array(
                [
                    [
                        f"{mu:+.1f}\n±{sd:.1f}" if r != c else ""
                        for c, (mu, sd) in enumerate(zip(mrow, srow, strict=True))
                    ]
                    for r, (mrow, srow) in enumerate(
                        zip(mean.to_numpy(), std.to_numpy(), strict=True)
                    )
                ]
            )
            sns.heatmap(
                mean,
                ax=ax,
                cmap="RdBu",
                center=0,
                vmin=-lim,
                vmax=lim,
                annot=annot,
                fmt="",
                cbar_kws={"label": "row − column (points)"},
                square=True,
                annot_kws={"fontsize": 7},
                xticklabels=labels,
                yticklabels=labels,
            )
            ax.set_title(sub["title"].iloc[0])
            ax.set_xlabel("")
            ax.set_ylabel("")
            ax.tick_params(axis="y", labelrotation=0)
        fig.suptitle("Pairwise differences (mean ± std over paired seeds)", fontsize=10)
        fig.tight_layout()
        _save(fig, df, prefix)


def fig_per_corruption(runs: Runs, prefix: Path) -> None:
    """Methods x corruptions heatmap and accuracy against severity (clean at 0)."""
    rows = []
    for (m, s), v in runs.metrics.items():
        rows.append(
            {"method": m, "seed": s, "corruption": "clean", "severity": 0, "top1": v["clean"]}
        )
        for c, per in v["corrupted"].items():
            for sev, acc in per.items():
                rows.append(
                    {"method": m, "seed": s, "corruption": c, "severity": int(sev), "top1": acc}
                )
    df = pd.DataFrame(rows)
    colours = _colours(runs.methods)
    with _style():
        fig = Figure(figsize=(13, 4.3))
        gs = fig.add_gridspec(1, 2, width_ratios=[3.2, 1])
        ax = fig.add_subplot(gs[0])
        corr = df[df["corruption"] != "clean"]
        heat = corr.groupby(["method", "corruption"])["top1"].mean().unstack()
        heat = heat.reindex(index=runs.methods, columns=runs.corruptions)
        xlabels = [
            corruption_label(c) + (" *" if c in runs.train else "") for c in runs.corruptions
        ]
        sns.heatmap(
            heat,
            ax=ax,
            cmap="viridis",
            annot=True,
            fmt=".0f",
            annot_kws={"fontsize": 7},
            cbar_kws={"label": "top-1 (%)"},
            xticklabels=xlabels,
            yticklabels=[_label(m) for m in runs.methods],
        )
        ax.set_xlabel("corruption (* = CRAFT training corruption)")
        ax.set_ylabel("")
        ax.tick_params(axis="y", labelrotation=0)
        ax.tick_params(axis="x", labelrotation=45)
        for t in ax.get_xticklabels():
            t.set_horizontalalignment("right")
            t.set_rotation_mode("anchor")
        ax.set_title("Per corruption (mean over severities and seeds)")
        ax2 = fig.add_subplot(gs[1])
        for m in runs.methods:
            sub = df[df["method"] == m]
            per_seed = sub.groupby(["seed", "severity"])["top1"].mean().unstack()
            mean, std = per_seed.mean(axis=0), per_seed.std(axis=0, ddof=1).fillna(0)
            ax2.plot(
                mean.index,
                mean.to_numpy(),
                marker="o",
                markersize=3,
                color=colours[m],
                label=_label(m),
            )
            ax2.fill_between(
                mean.index, mean - std, mean + std, color=colours[m], alpha=0.15, linewidth=0
            )
        ax2.set_xticks(range(0, len(runs.severities) + 1), ["clean", *map(str, runs.severities)])
        ax2.set_xlabel("severity")
        ax2.set_ylabel("top-1 (%), mean over corruptions")
        ax2.set_title("Per severity")
        ax2.legend(fontsize=7)
        fig.tight_layout()
        _save(fig, df, prefix)


def fig_training_curves(runs: Runs, prefix: Path) -> None:
    """Per-epoch training loss and cross-entropy of each method; CRAFT's reliability."""
    rows = []
    for (m, s), v in runs.metrics.items():
        for comp, values in v["curves"].items():
            for e, val in enumerate(values):
                rows.append(
                    {"method": m, "seed": s, "epoch": e + 1, "component": comp, "value": val}
                )
    df = pd.DataFrame(rows)
    colours = _colours(runs.methods)
    panels = [("loss", "total training loss"), ("ce", "cross-entropy (clean view)")]
    diag = [c for c in ("reliability", "agree") if c in set(df["component"])]
    with _style():
        fig = Figure(figsize=(11, 3.4))
        axes = fig.subplots(1, 3)
        for ax, (comp, title) in zip(axes[:2], panels, strict=True):
            for m in runs.methods:
                sub = df[(df["method"] == m) & (df["component"] == comp)]
                if sub.empty:
                    continue
                g = sub.groupby("epoch")["value"]
                mean, std = g.mean(), g.std(ddof=1).fillna(0)
                ax.plot(mean.index, mean, color=colours[m], label=_label(m))
                ax.fill_between(
                    mean.index, mean - std, mean + std, color=colours[m], alpha=0.15, linewidth=0
                )
            ax.set_xlabel("epoch")
            ax.set_title(title)
            ax.set_yscale("log")
        axes[0].legend(fontsize=7)
        ax = axes[2]
        for comp, style in zip(diag, ("-", "--"), strict=False):
            sub = df[(df["method"] == "craft") & (df["component"] == comp)]
            g = sub.groupby("epoch")["value"]
            ax.plot(
                g.mean().index,
                g.mean(),
                color=colours.get("craft", "C3"),
                linestyle=style,
                label={"reliability": "mean r(x)", "agree": "mean agree(x)"}[comp],
            )
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("epoch")
        ax.set_title("CRAFT: teacher reliability")
        if diag:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "CRAFT not run", ha="center", transform=ax.transAxes)
        fig.suptitle("Training dynamics (mean ± std over seeds)", fontsize=10)
        fig.tight_layout()
        _save(fig, df, prefix)


def fig_nan_counts(runs: Runs, prefix: Path) -> None:
    """Non-finite loss steps per run (0 for every completed run of the shared loop)."""
    df = pd.DataFrame(
        [
            {"method": m, "seed": s, "nan_count": v["nan_count"]}
            for (m, s), v in runs.metrics.items()
        ]
    )
    total = df.groupby("method")["nan_count"].sum().reindex(runs.methods)
    colours = _colours(runs.methods)
    with _style():
        fig = Figure(figsize=(6, 3))
        ax = fig.add_subplot()
        x = np.arange(len(runs.methods))
        ax.bar(x, total.to_numpy(), color=[colours[m] for m in runs.methods])
        for i, v in enumerate(total.to_numpy()):
            ax.text(i, v, f"{int(v)}", ha="center", va="bottom")
        ax.set_xticks(x, [_label(m) for m in runs.methods])
        ax.set_ylim(0, max(1, float(total.max()) * 1.2))
        ax.set_ylabel("steps with non-finite loss")
        n = len(df) // max(1, len(runs.methods))
        ax.set_title(f"NaN counts, summed over {n} seeds")
        ax.text(
            0.5,
            0.6,
            "a non-finite loss stops a run (NonFiniteError);\nevery run here completed",
            ha="center",
            transform=ax.transAxes,
            fontsize=8,
            color="0.3",
        )
        fig.tight_layout()
        _save(fig, df, prefix)


def fig_cost(runs: Runs, prefix: Path) -> None:
    """Primary metric against teacher forward passes and training time (per seed and mean)."""
    rows = []
    for (m, s), v in runs.metrics.items():
        rows.append(
            {
                "method": m,
                "seed": s,
                "teacher_forward_images": v["cost"]["teacher_forward_images"],
                "train_seconds": v["cost"]["train_seconds"],
                "images_per_s": v["cost"]["images_per_s"],
                "robust_heldout": v["robust_heldout"],
            }
        )
    df = pd.DataFrame(rows)
    colours = _colours(runs.methods)
    with _style():
        fig = Figure(figsize=(10, 3.6))
        axes = fig.subplots(1, 2, sharey=True)
        for ax, key, xlabel in (
            (axes[0], "teacher_forward_images", "teacher forward passes per run (k images)"),
            (axes[1], "train_seconds", "training wall time per run (s)"),
        ):
            scale = 1e3 if key == "teacher_forward_images" else 1.0
            for m in runs.methods:
                sub = df[df["method"] == m]
                xs, ys = sub[key].to_numpy() / scale, sub["robust_heldout"].to_numpy()
                ax.scatter(xs, ys, color=colours[m], s=12, alpha=0.5)
                ax.errorbar(
                    xs.mean(),
                    ys.mean(),
                    xerr=xs.std(ddof=1) if len(xs) > 1 else 0,
                    yerr=ys.std(ddof=1) if len(ys) > 1 else 0,
                    color=colours[m],
                    marker="o",
                    markersize=7,
                    capsize=3,
                    label=_label(m),
                )
            ax.set_xlabel(xlabel)
        axes[0].set_ylabel("primary: held-out robust top-1 (%)")
        axes[0].legend(fontsize=7)
        fig.suptitle("Cost vs robustness (dots: seeds; markers: mean ± std)", fontsize=10)
        fig.tight_layout()
        _save(fig, df, prefix)


def fig_alignment(runs: Runs, prefix: Path) -> None:
    """Teacher-student alignment per layer and severity (cosine, and linear CKA), per method."""
    rows = []
    for (m, s), v in runs.metrics.items():
        for cond, layers in v["alignment"].items():
            corruption, sev = ("clean", 0) if cond == "clean" else cond.rsplit("-", 1)
            for r in layers:
                rows.append(
                    {"method": m, "seed": s, "corruption": corruption, "severity": int(sev), **r}
                )
    df = pd.DataFrame(rows)
    stat = df.groupby(["method", "layer", "severity"])[["cosine", "cka"]].mean().reset_index()
    cols = ["clean", *map(str, runs.severities)]
    with _style():
        n = len(runs.methods)
        fig = Figure(figsize=(2.3 * n + 1, 4.4))
        axes = fig.subplots(2, n, squeeze=False)
        for row, (key, name) in enumerate((("cosine", "cosine"), ("cka", "linear CKA"))):
            for j, m in enumerate(runs.methods):
                ax = axes[row, j]
                sub = stat[stat["method"] == m].pivot(index="layer", columns="severity", values=key)
                sub.columns = cols[: len(sub.columns)]
                sns.heatmap(
                    sub,
                    ax=ax,
                    vmin=0,
                    vmax=1,
                    cmap="magma",
                    annot=True,
                    fmt=".2f",
                    annot_kws={"fontsize": 6},
                    cbar=j == n - 1,
                    cbar_kws={"label": name},
                )
                ax.set_title(_label(m) if row == 0 else "")
                ax.set_xlabel("severity" if row == 1 else "")
                ax.set_ylabel(name if j == 0 else "")
                ax.tick_params(axis="y", labelrotation=0)
                if j:
                    ax.set_yticklabels([])
        fig.suptitle(
            "Teacher-student feature alignment per layer and corruption severity "
            "(mean over corruptions, seeds and test images)",
            fontsize=10,
        )
        fig.tight_layout()
        _save(fig, df, prefix)


def write_figures(runs: Runs, out_dir: str | os.PathLike[str]) -> None:
    """Every figure of :data:`robustkd.craft.layout.FIGURES` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig_clean_vs_robust(runs, out / "clean_vs_robust")
    fig_pairwise(runs, out / "pairwise_differences")
    fig_per_corruption(runs, out / "per_corruption")
    fig_training_curves(runs, out / "training_curves")
    fig_nan_counts(runs, out / "nan_counts")
    fig_cost(runs, out / "cost_vs_robustness")
    fig_alignment(runs, out / "alignment_heatmap")


def report_job(config: Mapping[str, Any], rule: str = "craft_report") -> None:
    """Write every table and figure of the study (paths from :mod:`robustkd.craft.layout`).

    The tables carry their cell-level provenance; the figures share one ``provenance.json``
    hashing them and every metrics file they were drawn from.

    Args:
        config: ``craft``, ``methods.craft`` and ``seeds`` of the merged config.
        rule: Rule name for the tables' provenance.
    """
    started = now_iso()
    runs = load_runs(config)
    tables = Path(layout.ROOT) / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    provenance = {"rule": rule, "config": dict(config)}
    write_craft_table(runs, tables / "craft_table", config, provenance)
    write_breakdown_tables(runs, config, tables, provenance)
    figures = Path(layout.ROOT) / "figures"
    write_figures(runs, figures)
    write_provenance(
        layout.figures_provenance(),
        rule=rule,
        inputs=[runs.teacher_path, *runs.paths.values()],
        outputs=layout.figure_files(),
        config=config,
        started=started,
    )
    if any(math.isnan(float(v["robust_heldout"])) for v in runs.metrics.values()):
        raise ValueError("a primary metric is NaN")
