"""What every figure of the CRAFT report shares: style, method colours, the writer.

:func:`run_frame` gathers the plotted data of a figure, one block of rows per run, and
:func:`save_figure` writes it beside the PNG and PDF.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib as mpl
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from robustkd.atomic import atomic_write_bytes, atomic_write_text
from robustkd.craft.report.runs import Runs

__all__ = ["DPI", "figure_style", "method_colours", "run_frame", "save_figure"]

DPI = 150


@contextmanager
def figure_style() -> Iterator[None]:
    """Matplotlib and seaborn settings of every CRAFT figure, for the ``with`` block."""
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


def method_colours(methods: Sequence[str]) -> dict[str, Any]:
    """A fixed colourblind-safe colour per method (the same in every figure)."""
    palette = sns.color_palette("colorblind")
    fixed = {"erm": 7, "logitkd": 0, "attentionkd": 2, "crd": 4, "craft": 3}
    return {m: palette[fixed.get(m, i) % len(palette)] for i, m in enumerate(methods)}


def save_figure(fig: Figure, data: pd.DataFrame, prefix: Path) -> None:
    """Write ``<prefix>.png``, ``.pdf`` and the plotted data ``.csv`` (atomically)."""
    rendered = {}
    for fmt, meta in (("png", {"Software": None}), ("pdf", {"CreationDate": None})):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=DPI, metadata=meta, bbox_inches="tight")
        rendered[fmt] = buf.getvalue()
    atomic_write_text(f"{prefix}.csv", data.to_csv(index=False))
    for fmt, blob in rendered.items():
        atomic_write_bytes(Path(f"{prefix}.{fmt}"), blob)


def run_frame(
    runs: Runs, rows: Callable[[Mapping[str, Any]], Iterable[Mapping[str, Any]]]
) -> pd.DataFrame:
    """The plotted data: ``rows(metrics)`` of every run, prefixed by its method and seed.

    Runs come in :attr:`Runs.metrics` order; each row's columns are ``method``, ``seed``, then
    those of ``rows`` in their order.
    """
    return pd.DataFrame(
        [{"method": m, "seed": s, **r} for (m, s), v in runs.metrics.items() for r in rows(v)]
    )
