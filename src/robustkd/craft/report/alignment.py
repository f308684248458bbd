"""The CRAFT report's alignment figure, as the paper's Fig. 2.

Teacher-student feature alignment (cosine and linear CKA) per layer and corruption severity.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import seaborn as sns
from matplotlib.figure import Figure

from robustkd.craft.report.drawing import figure_style, run_frame, save_figure
from robustkd.craft.report.runs import Runs, method_label

__all__ = ["fig_alignment"]


def fig_alignment(runs: Runs, prefix: Path) -> None:
    """Teacher-student alignment per layer and severity (cosine, and linear CKA), per method."""

    def rows(v: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        for cond, layers in v["alignment"].items():
            corruption, sev = ("clean", 0) if cond == "clean" else cond.rsplit("-", 1)
            for r in layers:
                yield {"corruption": corruption, "severity": int(sev), **r}

    df = run_frame(runs, rows)
    stat = df.groupby(["method", "layer", "severity"])[["cosine", "cka"]].mean().reset_index()
    cols = ["clean", *map(str, runs.severities)]
    with figure_style():
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
                ax.set_title(method_label(m) if row == 0 else "")
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
        save_figure(fig, df, prefix)
