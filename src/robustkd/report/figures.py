"""Figures 2-4 of the paper, each saved as ``<prefix>.png``, ``<prefix>.pdf`` and its data.

* :func:`plot_severity_curves` (Fig. 2): top-1 accuracy against distortion severity.
* :func:`plot_label_fractions` (Fig. 3): top-1 accuracy against the fraction of labels.
* :func:`plot_attention_maps` (Fig. 4): attention maps on clean and distorted images.

Every figure is drawn inside one style (:func:`_style`: seaborn "whitegrid" / "paper", the
colour-blind palette) and every method keeps one colour, marker and line style across figures.
Figures are plain :class:`matplotlib.figure.Figure` objects rendered by the Agg canvas: no
pyplot, so no global figure registry, no backend switch and no rcParams left changed.

Each figure's data is written beside it as ``<prefix>.csv`` (for Figs. 2 and 3 one row per
seed, with the plotted mean, std and n of its group), so every plotted number can be traced
and recomputed. All files are written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import io
import math
import os
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from cycler import cycler
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, NullLocator

from robustkd.atomic import atomic_write_bytes, atomic_write_text

__all__ = [
    "AttentionPanel",
    "plot_attention_maps",
    "plot_label_fractions",
    "plot_severity_curves",
    "severity_label",
    "severity_of",
]

DPI = 150

# ---------------------------------------------------------------------------------------------
# Distortion families: the parameter that measures severity, titles and axis labels
# ---------------------------------------------------------------------------------------------

# Family -> the config key whose value grows with the severity of the distortion.
_SEVERITY_KEY = {"mask": "p", "noise": "sigma", "blur": "sigma"}
_FAMILY_ORDER = ("mask", "noise", "blur")
_FAMILY_TITLE = {"mask": "Random Mask", "noise": "Gaussian Noise", "blur": "Gaussian Blur"}
# Blur ticks read "(kernel, sigma)" (see severity_label), so the axis names both.
_SEVERITY_AXIS = {"mask": "mask ratio p", "noise": "noise σ", "blur": "blur (kernel size, σ)"}


def severity_of(spec: Mapping[str, object]) -> float:
    """Severity of a distortion config entry: the mask ratio p, or the noise or blur sigma.

    Args:
        spec: A distortion entry, e.g. ``{"family": "blur", "kernel": 37, "sigma": 9.0}``;
            keys other than the family's parameters (``stands_for``) are ignored.

    Returns:
        The value that grows with the strength of the distortion (9.0 in the example).

    Raises:
        ValueError: If the family is unknown or its severity parameter is missing.
    """
    family = spec.get("family")
    if family not in _SEVERITY_KEY:
        raise ValueError(
            f"distortion spec {dict(spec)!r}: unknown family {family!r} "
            f"(known: {sorted(_SEVERITY_KEY)})"
        )
    key = _SEVERITY_KEY[str(family)]
    if key not in spec:
        raise ValueError(f"distortion spec {dict(spec)!r} lacks the key {key!r}")
    return float(spec[key])  # type: ignore[arg-type]


def severity_label(spec: Mapping[str, object]) -> str:
    """Tick label of a distortion config entry: ``"0.9"``, ``"0.5"`` or ``"(37, 9)"`` for blur.

    Args:
        spec: A distortion entry, as for :func:`severity_of`.

    Returns:
        The severity in shortest form; blur gives ``(kernel size, sigma)``, since the paper
        names its blur settings by both.

    Raises:
        ValueError: If the family is unknown or a parameter is missing.
    """
    value = severity_of(spec)
    if spec["family"] == "blur":
        if "kernel" not in spec:
            raise ValueError(f"distortion spec {dict(spec)!r} lacks the key 'kernel'")
        return f"({int(spec['kernel'])}, {value:g})"  # type: ignore[call-overload]
    return f"{value:g}"


# ---------------------------------------------------------------------------------------------
# Style: one look for every figure, one colour / marker / line style per method
# ---------------------------------------------------------------------------------------------

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
_TRAIN_COLOUR = "0.35"


@contextmanager
def _style() -> Iterator[None]:
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


def _method_styles(methods: Sequence[str]) -> dict[str, dict[str, object]]:
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


# ---------------------------------------------------------------------------------------------
# Input checks and per-seed summaries
# ---------------------------------------------------------------------------------------------


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {', '.join(map(repr, missing))}")
    if df.empty:
        raise ValueError(f"{what}: the frame has no rows")
    if df["top1"].isna().any() or not np.isfinite(df["top1"].astype(float)).all():
        raise ValueError(f"{what}: column 'top1' holds NaN or infinite values")


def _required_first(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """A copy with the required columns first; extra ones (``source``, ...) are kept after."""
    extra = [c for c in df.columns if c not in columns and c not in ("mean", "std", "n")]
    return df.loc[:, [*columns, *extra]].copy()


def _check_unique(df: pd.DataFrame, keys: Sequence[str], what: str) -> None:
    dup = df.duplicated(list(keys), keep=False)
    if dup.any():
        first = df.loc[dup, list(keys)].iloc[0].to_dict()
        raise ValueError(f"{what}: several rows for the same {', '.join(keys)}: {first}")


def _check_one_to_one(df: pd.DataFrame, key: Sequence[str], value: str, what: str) -> None:
    n = df.groupby(list(key), sort=False)[value].nunique()
    if (n > 1).any():
        raise ValueError(
            f"{what}: {value!r} differs within one {'/'.join(key)}: {n[n > 1].index[0]}"
        )


def _families(df: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(df["family"]))
    return [f for f in _FAMILY_ORDER if f in present] + [
        f for f in present if f not in _FAMILY_ORDER
    ]


def _with_summary(df: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Per-seed rows with the mean, sample std (ddof=1; NaN for one seed) and n of their group."""
    g = df.groupby(list(keys), sort=False)["top1"]
    return df.assign(mean=g.transform("mean"), std=g.transform("std"), n=g.transform("size"))


def _seed_note(n: pd.Series) -> str:
    lo, hi = int(n.min()), int(n.max())
    count = f"{lo}" if lo == hi else f"{lo}–{hi}"
    return f"n = {count} seed{'' if hi == 1 else 's'}"


# ---------------------------------------------------------------------------------------------
# Output: figure and data, written atomically
# ---------------------------------------------------------------------------------------------


def _save(fig: Figure, data: pd.DataFrame, out_prefix: str | os.PathLike[str]) -> None:
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


def _legend(data: pd.DataFrame, styles: dict[str, dict[str, object]]) -> list[tuple[object, str]]:
    """Legend entries: each method's line over its band, as plotted, and its number of seeds."""
    handles: list[tuple[object, str]] = []
    for m, s in styles.items():
        rows = data[data["method"] == m]
        line = Line2D([], [], color=s["color"], marker=s["marker"], linestyle=s["linestyle"])
        band = Patch(facecolor=s["color"], alpha=0.2, linewidth=0)
        handle = (band, line) if rows["n"].max() > 1 else line  # one seed: no band drawn
        handles.append((handle, f"{rows['method_label'].iloc[0]} ({_seed_note(rows['n'])})"))
    return handles


def _figure_legend(fig: Figure, handles: Sequence[tuple[object, str]]) -> None:
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


def _mean_band(ax: Axes, x: np.ndarray, summary: pd.DataFrame, style: dict[str, object]) -> None:
    """Plot the mean line with markers and a +-1 std band (absent where only one seed)."""
    mean, std = summary["mean"].to_numpy(float), summary["std"].to_numpy(float)
    band = {"color": style["color"], "alpha": 0.2, "linewidth": 0, "zorder": style["zorder"]}
    ax.fill_between(x, mean - std, mean + std, **band)
    ax.plot(x, mean, markersize=5, linewidth=1.6, **style)


def _rotate_crowded_ticks(fig: Figure, axes: Sequence[Axes]) -> None:
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


# ---------------------------------------------------------------------------------------------
# Fig. 2: robustness under increasing distortions
# ---------------------------------------------------------------------------------------------

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
    _require(df, _SEVERITY_COLUMNS, what)
    df = _required_first(df, _SEVERITY_COLUMNS)
    if not pd.api.types.is_bool_dtype(df["trained"]):
        if not df["trained"].isin([0, 1]).all():
            raise ValueError(f"{what}: column 'trained' must hold booleans")
        df["trained"] = df["trained"].astype(bool)
    df["severity"] = df["severity"].astype(float)
    _check_unique(df, ["family", "method", "severity", "seed"], what)
    _check_one_to_one(df, ["family", "severity"], "severity_label", what)
    _check_one_to_one(df, ["method"], "method_label", what)

    families = _families(df)
    styles = _method_styles(list(dict.fromkeys(df["method"])))
    df["family"] = pd.Categorical(df["family"], families, ordered=True)
    df["method"] = pd.Categorical(df["method"], list(styles), ordered=True)
    df = df.sort_values(["family", "method", "severity", "seed"], kind="stable")
    data = _with_summary(df, ["family", "method", "severity"])
    data = data.astype({"family": str, "method": str}).reset_index(drop=True)

    with _style():
        fig = Figure(figsize=(2.6 * len(families) + 0.4, 3.1), layout="constrained")
        axes = fig.subplots(1, len(families), squeeze=False)[0]
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
                _mean_band(ax, x, points, style)
            ax.set_xticks(range(len(ticks)), ticks["severity_label"].tolist())
            ax.set_xlim(-0.3, len(ticks) - 0.7)
            ax.set_title(_FAMILY_TITLE.get(family, family))
            ax.set_xlabel(_SEVERITY_AXIS.get(family, "severity"))
        axes[0].set_ylabel("top-1 accuracy (%)")

        handles = _legend(data, styles)
        if data["trained"].any():
            train = Line2D([], [], color=_TRAIN_COLOUR, linestyle=(0, (1, 2)), linewidth=1.2)
            handles.append((train, "training severity"))
        _figure_legend(fig, handles)
        _rotate_crowded_ticks(fig, axes)
        _save(fig, data, out_prefix)


# ---------------------------------------------------------------------------------------------
# Fig. 3: label-efficient fine-tuning
# ---------------------------------------------------------------------------------------------

_FRACTION_COLUMNS = ("family", "method", "method_label", "fraction", "seed", "top1")


def _percent(fraction: float) -> str:
    return f"{round(100 * fraction, 6):g}%"


def plot_label_fractions(df: pd.DataFrame, out_prefix: str | os.PathLike[str]) -> None:
    """Fig. 3: top-1 accuracy against the fraction of labelled training images.

    One panel per distortion family; the x axis is logarithmic, in percent, with a tick at
    every fraction present. Each method is a line with markers through its mean over seeds,
    with a band of +-1 sample standard deviation; the legend gives the number of seeds.

    Args:
        df: One row per (family, method, fraction, seed) with columns ``family``, ``method``,
            ``method_label`` (legend text), ``fraction`` (in (0, 1]), ``seed`` and ``top1`` (%).
        out_prefix: Path without extension; writes ``.png`` (150 dpi), ``.pdf`` and ``.csv``
            (the input rows plus the plotted ``mean``, ``std`` and ``n`` of each point).

    Raises:
        ValueError: If a column is missing, the frame is empty, ``top1`` is not finite, a
            fraction lies outside (0, 1] or a (family, method, fraction, seed) appears twice.
    """
    what = "plot_label_fractions"
    _require(df, _FRACTION_COLUMNS, what)
    df = _required_first(df, _FRACTION_COLUMNS)
    df["fraction"] = df["fraction"].astype(float)
    bad = df.loc[~((df["fraction"] > 0) & (df["fraction"] <= 1)), "fraction"]
    if len(bad):
        raise ValueError(f"{what}: column 'fraction' must lie in (0, 1], got {bad.iloc[0]}")
    _check_unique(df, ["family", "method", "fraction", "seed"], what)
    _check_one_to_one(df, ["method"], "method_label", what)

    families = _families(df)
    styles = _method_styles(list(dict.fromkeys(df["method"])))
    df["family"] = pd.Categorical(df["family"], families, ordered=True)
    df["method"] = pd.Categorical(df["method"], list(styles), ordered=True)
    df = df.sort_values(["family", "method", "fraction", "seed"], kind="stable")
    data = _with_summary(df, ["family", "method", "fraction"])
    data = data.astype({"family": str, "method": str}).reset_index(drop=True)

    with _style():
        fig = Figure(figsize=(2.6 * len(families) + 0.4, 3.1), layout="constrained")
        axes = fig.subplots(1, len(families), squeeze=False)[0]
        for ax, family in zip(axes, families, strict=True):
            rows = data[data["family"] == family]
            for method, style in styles.items():
                points = rows[rows["method"] == method].drop_duplicates("fraction")
                if not points.empty:
                    _mean_band(ax, 100 * points["fraction"].to_numpy(float), points, style)
            fractions = sorted(set(rows["fraction"]))
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(FixedLocator([100 * f for f in fractions]))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticklabels([_percent(f) for f in fractions])
            # A little room either side of the first and last fraction, on the log scale.
            lo, hi = 100 * fractions[0], 100 * fractions[-1]
            pad = 0.06 * max(math.log10(hi / lo), 1.0)
            ax.set_xlim(lo / 10**pad, hi * 10**pad)
            ax.grid(True, axis="x", which="major")
            ax.set_title(_FAMILY_TITLE.get(family, family))
            ax.set_xlabel("labelled training images (%)")
        axes[0].set_ylabel("top-1 accuracy (%)")

        handles = _legend(data, styles)
        _figure_legend(fig, handles)
        _rotate_crowded_ticks(fig, axes)
        _save(fig, data, out_prefix)


# ---------------------------------------------------------------------------------------------
# Fig. 4: attention maps
# ---------------------------------------------------------------------------------------------


@dataclass
class AttentionPanel:
    """One row of Fig. 4: an image, its distorted version and attention maps of models.

    Attributes:
        family_label: Row label, e.g. ``"Gaussian Blur (37, 9)"``.
        clean: The clean image, (H, W, 3), float in [0, 1] or uint8.
        distorted: The distorted image, same shape.
        maps: Column title -> attention grid (h, w), e.g. the [CLS] attention of the last
            block averaged over heads, ``{"Teacher (clean)": ..., "Ours (distorted)": ...}``;
            every panel of a figure has the same titles in the same order.
    """

    family_label: str
    clean: np.ndarray
    distorted: np.ndarray
    maps: dict[str, np.ndarray]


def _image(x: np.ndarray, what: str) -> np.ndarray:
    """An image as float (H, W, 3) in [0, 1]."""
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"{what}: expected an image of shape (H, W, 3), got {x.shape}")
    if x.dtype == np.uint8:
        return x.astype(np.float64) / 255.0
    x = x.astype(np.float64)
    if not np.isfinite(x).all() or x.min() < -1e-6 or x.max() > 1 + 1e-6:
        raise ValueError(f"{what}: float images must lie in [0, 1]")
    return np.clip(x, 0.0, 1.0)


def _upsample(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of an attention grid (h, w) to the image size (H, W)."""
    import torch  # the report otherwise needs no torch; import it only for Fig. 4
    import torch.nn.functional as F

    t = torch.as_tensor(grid, dtype=torch.float64)[None, None]  # (1, 1, h, w)
    up = F.interpolate(t, size=size, mode="bilinear", align_corners=False)  # (1, 1, H, W)
    return up[0, 0].numpy()


def _normalise(x: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1]: models' attentions differ in scale, their layouts are compared."""
    lo, hi = float(x.min()), float(x.max())
    return np.zeros_like(x) if hi - lo <= 0 else (x - lo) / (hi - lo)


def _wrap(text: str, width: int = 14) -> str:
    return textwrap.fill(text, width, break_long_words=False, break_on_hyphens=False)


def _attention_data(panels: Sequence[AttentionPanel], titles: Sequence[str]) -> pd.DataFrame:
    frames = []
    for i, panel in enumerate(panels):
        for title in titles:
            grid = np.asarray(panel.maps[title], dtype=float)
            r, c = np.indices(grid.shape)
            frames.append(
                pd.DataFrame(
                    {
                        "panel": i,
                        "family": panel.family_label,
                        "map": title,
                        "row": r.ravel(),
                        "col": c.ravel(),
                        "value": grid.ravel(),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def plot_attention_maps(
    panels: Sequence[AttentionPanel], out_prefix: str | os.PathLike[str]
) -> None:
    """Fig. 4: clean image, distorted image and each model's attention map, one row per panel.

    Each attention grid is upsampled bilinearly (``torch.nn.functional.interpolate``,
    ``align_corners=False``) to the image size, min-max normalised per map (the models'
    attentions differ in scale; their layouts are compared) and shown on its own as an
    "inferno" heatmap beside the images, as in DINO; a shared colour bar is on the right.

    Args:
        panels: The rows; all with the same map titles in the same order.
        out_prefix: Path without extension; writes ``.png`` (150 dpi), ``.pdf`` and ``.csv``
            (one row per panel, map and grid cell: ``panel``, ``family``, ``map``, ``row``,
            ``col``, ``value``, the raw attention before upsampling and normalisation).

    Raises:
        ValueError: If there are no panels, panels disagree on their maps, an image is not
            (H, W, 3) in range, clean and distorted differ in shape, or a map is not a finite
            2-D grid.
    """
    what = "plot_attention_maps"
    if not panels:
        raise ValueError(f"{what}: no panels")
    titles = list(panels[0].maps)
    if not titles:
        raise ValueError(f"{what}: panel 0 has no attention maps")
    rows = []
    for i, p in enumerate(panels):
        if list(p.maps) != titles:
            raise ValueError(f"{what}: panel {i} has maps {list(p.maps)}, panel 0 has {titles}")
        clean, distorted = (
            _image(p.clean, f"{what}: panel {i} clean"),
            _image(p.distorted, f"{what}: panel {i} distorted"),
        )
        if clean.shape != distorted.shape:
            raise ValueError(
                f"{what}: panel {i}: clean {clean.shape} and distorted {distorted.shape} differ"
            )
        maps = []
        for title in titles:
            grid = np.asarray(p.maps[title], dtype=float)
            if grid.ndim != 2 or grid.size == 0 or not np.isfinite(grid).all():
                raise ValueError(
                    f"{what}: panel {i} map {title!r}: expected a finite 2-D grid, "
                    f"got shape {grid.shape}"
                )
            maps.append(_normalise(_upsample(grid, clean.shape[:2])))
        rows.append((p.family_label, clean, distorted, maps))
    data = _attention_data(panels, titles)

    ncols = 2 + len(titles)
    with _style():
        fig = Figure(figsize=(1.55 * ncols + 0.9, 1.55 * len(panels) + 0.35), layout="constrained")
        axes = fig.subplots(len(panels), ncols, squeeze=False)
        # Wrapped, so long titles ("Supervised (distorted)") fit their narrow columns.
        column_titles = [_wrap(t) for t in ("Clean", "Distorted", *titles)]
        heat = None
        for r, (label, clean, distorted, maps) in enumerate(rows):
            axes[r, 0].imshow(clean)
            axes[r, 1].imshow(distorted)
            for c, m in enumerate(maps, start=2):
                heat = axes[r, c].imshow(m, cmap="inferno", vmin=0.0, vmax=1.0)
            for c, ax in enumerate(axes[r]):
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
                for spine in ax.spines.values():
                    spine.set_visible(False)
                if r == 0:
                    ax.set_title(column_titles[c], fontsize="medium", fontweight="bold")
            axes[r, 0].set_ylabel(_wrap(label), fontsize="medium")
        # About three rows tall, however many rows: a full-height bar would dwarf the maps.
        shrink = min(0.8, 2.4 / len(panels))
        bar = fig.colorbar(heat, ax=axes[:, 2:], shrink=shrink, aspect=20, fraction=0.03, pad=0.02)
        bar.set_label("attention (min–max per map)")
        bar.set_ticks([0.0, 0.5, 1.0])
        bar.outline.set_visible(False)
        _save(fig, data, out_prefix)
