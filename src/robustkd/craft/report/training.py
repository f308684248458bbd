"""The CRAFT report's figures of training, as the paper's Figs. 7-9.

NaN counts (its Fig. 7), cost vs robustness (Fig. 8) and training curves (Fig. 9).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from robustkd.craft.report.drawing import figure_style, method_colours, run_frame, save_figure
from robustkd.craft.report.runs import Runs, method_label

__all__ = ["fig_cost", "fig_nan_counts", "fig_training_curves"]


def fig_training_curves(runs: Runs, prefix: Path) -> None:
    """Per-epoch training loss and cross-entropy of each method; CRAFT's reliability."""
    df = run_frame(
        runs,
        lambda v: (
            {"epoch": e + 1, "component": comp, "value": val}
            for comp, values in v["curves"].items()
            for e, val in enumerate(values)
        ),
    )
    colours = method_colours(runs.methods)
    panels = [("loss", "total training loss"), ("ce", "cross-entropy (clean view)")]
    diag = [c for c in ("reliability", "agree") if c in set(df["component"])]
    with figure_style():
        fig = Figure(figsize=(11, 3.4))
        axes = fig.subplots(1, 3)
        for ax, (comp, title) in zip(axes[:2], panels, strict=True):
            for m in runs.methods:
                sub = df[(df["method"] == m) & (df["component"] == comp)]
                if sub.empty:
                    continue
                g = sub.groupby("epoch")["value"]
                mean, std = g.mean(), g.std(ddof=1).fillna(0)
                ax.plot(mean.index, mean, color=colours[m], label=method_label(m))
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
        save_figure(fig, df, prefix)


def fig_nan_counts(runs: Runs, prefix: Path) -> None:
    """Non-finite loss steps per run (0 for every completed run of the shared loop)."""
    df = run_frame(runs, lambda v: [{"nan_count": v["nan_count"]}])
    total = df.groupby("method")["nan_count"].sum().reindex(runs.methods)
    colours = method_colours(runs.methods)
    with figure_style():
        fig = Figure(figsize=(6, 3))
        ax = fig.add_subplot()
        x = np.arange(len(runs.methods))
        ax.bar(x, total.to_numpy(), color=[colours[m] for m in runs.methods])
        for i, v in enumerate(total.to_numpy()):
            ax.text(i, v, f"{int(v)}", ha="center", va="bottom")
        ax.set_xticks(x, [method_label(m) for m in runs.methods])
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
        save_figure(fig, df, prefix)


def fig_cost(runs: Runs, prefix: Path) -> None:
    """Primary metric against teacher forward passes and training time (per seed and mean)."""
    keys = ("teacher_forward_images", "train_seconds", "images_per_s")
    df = run_frame(
        runs,
        lambda v: [{**{k: v["cost"][k] for k in keys}, "robust_heldout": v["robust_heldout"]}],
    )
    colours = method_colours(runs.methods)
    with figure_style():
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
                    label=method_label(m),
                )
            ax.set_xlabel(xlabel)
        axes[0].set_ylabel("primary: held-out robust top-1 (%)")
        axes[0].legend(fontsize=7)
        fig.suptitle("Cost vs robustness (dots: seeds; markers: mean ± std)", fontsize=10)
        fig.tight_layout()
        save_figure(fig, df, prefix)
