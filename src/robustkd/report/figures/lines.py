"""Drawing Figs. 2 and 3: a panel per family, mean lines with +-1 std bands, one legend below.

A method's line goes through its mean over seeds with a band of +-1 sample standard deviation
(none where only one seed); the legend names each method with its number of seeds.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from robustkd.report.figures.style import save_figure

__all__ = [
    "family_panels",
    "figure_legend",
    "finish_figure",
    "legend_entries",
    "mean_band",
    "rotate_crowded_ticks",
]


def family_panels(families: Sequence[str]) -> tuple[Figure, np.ndarray]:
    """A figure of one panel per family side by side, and its axes, (len(families),)."""
    fig = Figure(figsize=(2.6 * len(families) + 0.4, 3.1), layout="constrained")
    axes = fig.subplots(1, len(families), squeeze=False)[0]
    return fig, axes


def _seed_note(n: pd.Series) -> str:
    lo, hi = int(n.min()), int(n.max())
    count = f"{lo}" if lo == hi else f"{lo}–{hi}"
    return f"n = {count} seed{'' if hi == 1 else 's'}"


def legend_entries(
    data: pd.DataFrame, styles: dict[str, dict[str, object]]
) -> list[tuple[object, str]]:
    """Legend entries: each method's line over its band, as plotted, and its number of seeds."""
    handles: list[tuple[object, str]] = []
    for m, s in styles.items():
        rows = data[data["method"] == m]
        line = Line2D([], [], color=s["color"], marker=s["marker"], linestyle=s["linestyle"])
        band = Patch(facecolor=s["color"], alpha=0.2, linewidth=0)
        handle = (band, line) if rows["n"].max() > 1 else line  # one seed: no band drawn
        handles.append((handle, f"{rows['method_label'].iloc[0]} ({_seed_note(rows['n'])})"))
    return handles


def figure_legend(fig: Figure, handles: Sequence[tuple[object, str]]) -> None:
    """One legend for all panels, below them so it never covers data, in as few rows as fit."""
    width = fig.bbox.width
    for ncols in range(len(handles), 0, -1):
        legend = fig.legend(
            [h for h, _ in handles],
            [label for _, label in handles],
            loc="outside lower center",
            ncols=ncols,
        )
        fig.draw_without_rendering()
        if ncols == 1 or legend.get_window_extent().width <= 0.98 * width:
            return
        legend.remove()


def mean_band(ax: Axes, x: np.ndarray, summary: pd.DataFrame, style: dict[str, object]) -> None:
    """Plot the mean line with markers and a +-1 std band (absent where only one seed)."""
    mean, std = summary["mean"].to_numpy(float), summary["std"].to_numpy(float)
    band = {"color": style["color"], "alpha": 0.2, "linewidth": 0, "zorder": style["zorder"]}
    ax.fill_between(x, mean - std, mean + std, **band)
    ax.plot(x, mean, markersize=5, linewidth=1.6, **style)


def rotate_crowded_ticks(fig: Figure, axes: Sequence[Axes]) -> None:
    """Tilt an axis's x tick labels by 45 degrees if, laid out flat, two of them overlap."""
    fig.draw_without_rendering()
    for ax in axes:
        boxes = sorted(
            (t.get_window_extent() for t in ax.get_xticklabels() if t.get_text()),
            key=lambda b: b.x0,
        )
        # 2 px of air between neighbours, else they read as one label ("5%10%").
        if any(a.x1 + 2 > b.x0 for a, b in zip(boxes, boxes[1:], strict=False)):
            ax.tick_params(axis="x", labelrotation=45)
            for t in ax.get_xticklabels():
                t.set_horizontalalignment("right")
                t.set_rotation_mode("anchor")


def finish_figure(
    fig: Figure,
    axes: Sequence[Axes],
    handles: Sequence[tuple[object, str]],
    data: pd.DataFrame,
    out_prefix: str | os.PathLike[str],
) -> None:
    """Add the legend below the panels, tilt crowded ticks and save figure and data."""
    figure_legend(fig, handles)
    rotate_crowded_ticks(fig, axes)
    save_figure(fig, data, out_prefix)
