"""The CRAFT report's accuracy figures, as the paper's Figs. 3-6.

Clean vs robust bars (its Figs. 3-4), pairwise differences (Fig. 5) and the per-corruption and
per-severity comparison (Fig. 6).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from robustkd.craft.report.drawing import figure_style, method_colours, run_frame, save_figure
from robustkd.craft.report.runs import Runs, corruption_label, method_label

__all__ = ["fig_clean_vs_robust", "fig_pairwise", "fig_per_corruption"]


def _accuracy_frame(runs: Runs) -> pd.DataFrame:
    return run_frame(
        runs,
        lambda v: (
            {"metric": label, "key": key, "top1": v[key]}
            for key, label in (
                ("clean", "Clean"),
                ("robust_all", "Robust (all corruptions)"),
                ("robust_heldout", "Primary: robust, held-out"),
            )
        ),
    )


def fig_clean_vs_robust(runs: Runs, prefix: Path) -> None:
    """Grouped bars per method: clean, robust and primary accuracy (mean +- std, seed dots)."""
    df = _accuracy_frame(runs)
    metrics = list(dict.fromkeys(df["metric"]))
    palette = sns.color_palette("colorblind")
    shades = {metrics[0]: palette[0], metrics[1]: palette[1], metrics[2]: palette[2]}
    with figure_style():
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
        ax.set_xticks(x, [method_label(m) for m in runs.methods])
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title("Clean and robust accuracy of the students")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize=8)
        save_figure(fig, df, prefix)


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
    labels = [method_label(m) for m in runs.methods]
    lim = max(1.0, float(df["mean"].abs().max()))
    with figure_style():
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
        save_figure(fig, df, prefix)


def fig_per_corruption(runs: Runs, prefix: Path) -> None:
    """Methods x corruptions heatmap and accuracy against severity (clean at 0)."""

    def rows(v: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        yield {"corruption": "clean", "severity": 0, "top1": v["clean"]}
        for c, per in v["corrupted"].items():
            for sev, acc in per.items():
                yield {"corruption": c, "severity": int(sev), "top1": acc}

    df = run_frame(runs, rows)
    colours = method_colours(runs.methods)
    with figure_style():
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
            yticklabels=[method_label(m) for m in runs.methods],
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
                label=method_label(m),
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
        save_figure(fig, df, prefix)
