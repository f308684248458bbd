"""Figs. 2 and 3: top-1 accuracy against distortion severity and against the fraction of labels.

One panel per distortion family; each method is a line through its mean over seeds with a
band of +-1 sample standard deviation; the CSV beside each figure holds every seed's row with
the plotted mean, std and n (:mod:`~robustkd.report.figures.frames`).
"""

from __future__ import annotations

import math
import os

import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, NullLocator

from robustkd.labelfractions import percent, share_text
from robustkd.report.figures.frames import (
    check_one_to_one,
    check_unique,
    per_seed_points,
    require_columns,
    required_first,
)
from robustkd.report.figures.lines import (
    family_panels,
    finish_figure,
    legend_entries,
    mean_band,
)
from robustkd.report.figures.severity import FAMILY_TITLE, SEVERITY_AXIS
from robustkd.report.figures.style import figure_style

__all__ = ["plot_label_fractions", "plot_severity_curves"]

_TRAIN_COLOUR = "0.35"

_SEVERITY_COLUMNS = (
    "family",
    "method",
    "method_label",
    "severity",
    "severity_label",
    "trained",
    "seed",
    "top1",
)


def plot_severity_curves(df: pd.DataFrame, out_prefix: str | os.PathLike[str]) -> None:
    """Fig. 2: top-1 accuracy against distortion severity, one panel per distortion family.

    Each method is a line through its mean over seeds with a band of +-1 sample standard
    deviation (none for a single seed); the legend gives the number of seeds. Severities are
    placed at evenly spaced positions in increasing order, labelled by ``severity_label`` (the
    values themselves are not evenly spaced: 0.90, 0.92, 0.95, 0.98). A dotted vertical line
    marks the severity the models were trained at.

    Args:
        df: One row per (family, method, severity, seed) with columns ``family`` (mask, noise,
            blur), ``method`` (``ours``, ``supervised``, ...), ``method_label`` (legend text),
            ``severity`` (mask ratio p, noise sigma or blur sigma), ``severity_label`` (tick
            text), ``trained`` (bool: the models were trained at this severity), ``seed`` and
            ``top1`` (%).
        out_prefix: Path without extension; writes ``.png`` (150 dpi), ``.pdf`` and ``.csv``
            (the input rows plus the plotted ``mean``, ``std`` and ``n`` of each point).

    Raises:
        ValueError: If a column is missing, the frame is empty, ``top1`` is not finite, a
            (family, method, severity, seed) appears twice, or a severity has two labels.
    """
    what = "plot_severity_curves"
    require_columns(df, _SEVERITY_COLUMNS, what)
    df = required_first(df, _SEVERITY_COLUMNS)
    if not pd.api.types.is_bool_dtype(df["trained"]):
        if not df["trained"].isin([0, 1]).all():
            raise ValueError(f"{what}: column 'trained' must hold booleans")
        df["trained"] = df["trained"].astype(bool)
    df["severity"] = df["severity"].astype(float)
    check_unique(df, ["family", "method", "severity", "seed"], what)
    check_one_to_one(df, ["family", "severity"], "severity_label", what)
    check_one_to_one(df, ["method"], "method_label", what)

    families, styles, data = per_seed_points(df, "severity")

    with figure_style():
        fig, axes = family_panels(families)
        for ax, family in zip(axes, families, strict=True):
            rows = data[data["family"] == family]
            ticks = rows.drop_duplicates("severity").sort_values("severity")
            position = {s: i for i, s in enumerate(ticks["severity"])}
            for i in sorted({position[s] for s in rows.loc[rows["trained"], "severity"]}):
                ax.axvline(i, color=_TRAIN_COLOUR, linestyle=(0, (1, 2)), linewidth=1.2, zorder=1)
            for method, style in styles.items():
                points = rows[rows["method"] == method].drop_duplicates("severity")
                if points.empty:
                    continue
                x = points["severity"].map(position).to_numpy(float)
                mean_band(ax, x, points, style)
            ax.set_xticks(range(len(ticks)), ticks["severity_label"].tolist())
            ax.set_xlim(-0.3, len(ticks) - 0.7)
            ax.set_title(FAMILY_TITLE.get(family, family))
            ax.set_xlabel(SEVERITY_AXIS.get(family, "severity"))
        axes[0].set_ylabel("top-1 accuracy (%)")

        handles = legend_entries(data, styles)
        if data["trained"].any():
            train = Line2D([], [], color=_TRAIN_COLOUR, linestyle=(0, (1, 2)), linewidth=1.2)
            handles.append((train, "training severity"))
        finish_figure(fig, axes, handles, data, out_prefix)


_FRACTION_COLUMNS = ("family", "method", "method_label", "fraction", "seed", "top1")


def _percent(fraction: float) -> str:
    return percent(fraction)


def _tick_labels(rows: pd.DataFrame, fractions: list[float]) -> list[str]:
    """The share used at each tick, and the fraction asked beneath it where that differs."""
    if "fraction_asked" not in rows.columns:
        return [_percent(f) for f in fractions]
    asked = rows.groupby("fraction")["fraction_asked"].first()
    labels = []
    for f in fractions:
        text = share_text(f, float(asked[f]))
        labels.append(text.replace(" (", "\n(", 1))
    return labels


def _check_one_fraction_per_share(df: pd.DataFrame, what: str) -> None:
    """Two fractions asked that used the same share of labels: the same runs, twice."""
    if "fraction_asked" not in df.columns:
        return
    asked = df.groupby(["family", "method", "fraction"])["fraction_asked"].unique()
    for (_, _, used), values in asked.items():
        if len(values) > 1:
            raise ValueError(
                f"{what}: fractions {', '.join(f'{v:g}' for v in sorted(values))} of "
                f"experiments.fig3.fractions all used {_percent(used)} of the labels (the same "
                "images, at least one per class): keep only one of them"
            )


def plot_label_fractions(df: pd.DataFrame, out_prefix: str | os.PathLike[str]) -> None:
    """Fig. 3: top-1 accuracy against the fraction of labelled training images.

    One panel per distortion family; the x axis is logarithmic, in percent, with a tick at
    every fraction present. Each method is a line with markers through its mean over seeds,
    with a band of +-1 sample standard deviation; the legend gives the number of seeds.

    Args:
        df: One row per (family, method, fraction, seed) with columns ``family``, ``method``,
            ``method_label`` (legend text), ``fraction`` (the share of labels used, in (0, 1]),
            ``seed`` and ``top1`` (%); optionally ``fraction_asked`` (the configured fraction,
            written beneath a tick whose share used differs from it).
        out_prefix: Path without extension; writes ``.png`` (150 dpi), ``.pdf`` and ``.csv``
            (the input rows plus the plotted ``mean``, ``std`` and ``n`` of each point).

    Raises:
        ValueError: If a column is missing, the frame is empty, ``top1`` is not finite, a
            fraction lies outside (0, 1], a (family, method, fraction, seed) appears twice, or
            two fractions asked used the same share.
    """
    what = "plot_label_fractions"
    require_columns(df, _FRACTION_COLUMNS, what)
    df = required_first(df, _FRACTION_COLUMNS)
    df["fraction"] = df["fraction"].astype(float)
    bad = df.loc[~((df["fraction"] > 0) & (df["fraction"] <= 1)), "fraction"]
    if len(bad):
        raise ValueError(f"{what}: column 'fraction' must lie in (0, 1], got {bad.iloc[0]}")
    _check_one_fraction_per_share(df, what)
    check_unique(df, ["family", "method", "fraction", "seed"], what)
    check_one_to_one(df, ["method"], "method_label", what)

    families, styles, data = per_seed_points(df, "fraction")

    with figure_style():
        fig, axes = family_panels(families)
        for ax, family in zip(axes, families, strict=True):
            rows = data[data["family"] == family]
            for method, style in styles.items():
                points = rows[rows["method"] == method].drop_duplicates("fraction")
                if not points.empty:
                    mean_band(ax, 100 * points["fraction"].to_numpy(float), points, style)
            fractions = sorted(set(rows["fraction"]))
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(FixedLocator([100 * f for f in fractions]))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticklabels(_tick_labels(rows, fractions))
            # A little room either side of the first and last fraction, on the log scale.
            lo, hi = 100 * fractions[0], 100 * fractions[-1]
            pad = 0.06 * max(math.log10(hi / lo), 1.0)
            ax.set_xlim(lo / 10**pad, hi * 10**pad)
            ax.grid(True, axis="x", which="major")
            ax.set_title(FAMILY_TITLE.get(family, family))
            ax.set_xlabel("labelled training images (%)")
        axes[0].set_ylabel("top-1 accuracy (%)")

        handles = legend_entries(data, styles)
        finish_figure(fig, axes, handles, data, out_prefix)
