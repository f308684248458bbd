"""The figures' look: one style for every figure, one colour, marker and line per method.

:func:`figure_style` applies seaborn's "whitegrid" / "paper" look and the colour-blind palette
for the duration of a block; :func:`method_styles` gives each method the same colour, marker
and line style in every figure; :func:`save_figure` writes a figure and its data atomically.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib as mpl
import pandas as pd
import seaborn as sns
from cycler import cycler
from matplotlib.figure import Figure

from robustkd.atomic import atomic_write_bytes, atomic_write_text

__all__ = ["DPI", "figure_style", "method_styles", "save_figure"]

DPI = 150

# Method -> (index in the colour-blind palette, marker, line style). Legends list methods in
# this order; methods not named here take the remaining colours, sorted by name.
_METHOD_STYLE: dict[str, tuple[int, str, str]] = {
    "ours": (0, "o", "-"),
    "supervised": (1, "s", "--"),
    "ci": (2, "^", "-."),
    "global": (4, "D", ":"),
    "global-local": (8, "v", ":"),
    "global-attention": (9, "P", ":"),
}
_SPARE_STYLE = [(3, "X", "-"), (5, "p", "--"), (6, "h", "-."), (7, "*", ":")]


@contextmanager
def figure_style() -> Iterator[None]:
    """Apply the figures' style for the duration of the block; rcParams are restored after."""
    with (
        mpl.rc_context(),
        sns.axes_style("whitegrid"),
        sns.plotting_context("paper", font_scale=1.1),
    ):
        mpl.rcParams.update(
            {
                "axes.prop_cycle": cycler(color=sns.color_palette("colorblind")),
                "axes.titleweight": "bold",
                "figure.dpi": DPI,
                "savefig.dpi": DPI,
                "legend.frameon": False,
                # TrueType fonts in the PDF: editable text, accepted by publishers.
                "pdf.fonttype": 42,
                "ps.fonttype": 42,
            }
        )
        yield


def method_styles(methods: Sequence[str]) -> dict[str, dict[str, object]]:
    """Matplotlib keyword arguments per method, in legend order."""
    palette = sns.color_palette("colorblind")
    known = [m for m in _METHOD_STYLE if m in methods]
    spare = iter(_SPARE_STYLE * (len(methods) // len(_SPARE_STYLE) + 1))
    styles: dict[str, dict[str, object]] = {}
    for m in known + sorted(set(methods) - set(_METHOD_STYLE)):
        colour, marker, linestyle = _METHOD_STYLE[m] if m in _METHOD_STYLE else next(spare)
        styles[m] = {
            "color": palette[colour],
            "marker": marker,
            "linestyle": linestyle,
            # Our method on top of the others where lines cross.
            "zorder": 3 if m == "ours" else 2,
        }
    return styles


def save_figure(fig: Figure, data: pd.DataFrame, out_prefix: str | os.PathLike[str]) -> None:
    """Write ``<out_prefix>.csv``, ``.png`` and ``.pdf``.

    Both images are rendered in memory first, so the three files land in quick succession.
    Metadata dates are dropped, so the same data give byte-identical files.
    """
    prefix = os.fspath(out_prefix)  # appended to, not with_suffix: a prefix may hold dots
    rendered = {}
    for fmt, metadata in (("png", {"Software": None}), ("pdf", {"CreationDate": None})):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=DPI, metadata=metadata)
        rendered[fmt] = buf.getvalue()
    atomic_write_text(f"{prefix}.csv", data.to_csv(index=False))
    for fmt, blob in rendered.items():
        atomic_write_bytes(Path(f"{prefix}.{fmt}"), blob)
