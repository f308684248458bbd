"""Figures 2-4 of the paper, each saved as ``<prefix>.png``, ``<prefix>.pdf`` and its data.

* :func:`plot_severity_curves` (Fig. 2): top-1 accuracy against distortion severity.
* :func:`plot_label_fractions` (Fig. 3): top-1 accuracy against the fraction of labels.
* :func:`plot_attention_maps` (Fig. 4): attention maps on clean and distorted images.

Every figure is drawn inside one style (:func:`~robustkd.report.figures.style.figure_style`:
seaborn "whitegrid" / "paper", the colour-blind palette) and every method keeps one colour,
marker and line style across figures. Figures are plain :class:`matplotlib.figure.Figure`
objects rendered by the Agg canvas: no pyplot, so no global figure registry, no backend switch
and no rcParams left changed.

Each figure's data is written beside it as ``<prefix>.csv`` (for Figs. 2 and 3 one row per
seed, with the plotted mean, std and n of its group), so every plotted number can be traced
and recomputed. All files are written under a temporary name and renamed when complete.

Modules: :mod:`~robustkd.report.figures.severity` (a distortion's severity, tick label and
family titles), :mod:`~robustkd.report.figures.style` (the look, each method's style, saving),
:mod:`~robustkd.report.figures.frames` (checks and per-seed summaries of Figs. 2 and 3's
frames), :mod:`~robustkd.report.figures.lines` (mean lines, bands, legends, ticks),
:mod:`~robustkd.report.figures.accuracy` (Figs. 2 and 3) and
:mod:`~robustkd.report.figures.attention` (Fig. 4).
"""

from robustkd.report.figures.accuracy import plot_label_fractions, plot_severity_curves
from robustkd.report.figures.attention import AttentionPanel, plot_attention_maps
from robustkd.report.figures.severity import severity_label, severity_of

__all__ = [
    "AttentionPanel",
    "plot_attention_maps",
    "plot_label_fractions",
    "plot_severity_curves",
    "severity_label",
    "severity_of",
]
