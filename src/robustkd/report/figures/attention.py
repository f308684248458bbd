"""Fig. 4: clean and distorted images beside each model's attention map, one row per panel.

The panels (:class:`AttentionPanel`) are computed elsewhere; this module only checks and
draws them: each attention grid is upsampled to the image size, min-max normalised per map
and shown as an "inferno" heat map, as in DINO.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from robustkd.report.figures.style import figure_style, save_figure

__all__ = ["AttentionPanel", "plot_attention_maps"]


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
    with figure_style():
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
        save_figure(fig, data, out_prefix)
