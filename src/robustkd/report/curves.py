"""Distillation loss curves: has every student's logged loss flattened before training stops?

Every training run writes ``log.jsonl`` beside its weights (one line per logged step: step,
epoch, lr, loss and its components; :mod:`robustkd.engine.loop`). This module averages the
total loss per epoch, per (method, distortion, seed), draws it relative to the first epoch (the
multi-level and the contrastive losses have different scales) and measures the plateau: the
relative change of the epoch mean over the last ``window`` epochs.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from robustkd.atomic import atomic_write_bytes, atomic_write_text

__all__ = ["epoch_losses", "plateau_summary", "plot_distill_losses"]


def epoch_losses(logs: Sequence[tuple[str, str, int, str | os.PathLike[str]]]) -> pd.DataFrame:
    """Mean logged loss per epoch of each run.

    Args:
        logs: ``(method, distortion, seed, log.jsonl path)`` of each run.

    Returns:
        Columns method, distortion, seed, epoch (1-based), loss (mean of the logged steps of
        that epoch), relative (loss / the run's first-epoch loss).

    Raises:
        FileNotFoundError: A log is missing. ValueError: a log has no loss line.
    """
    rows = []
    for method, dist, seed, path in logs:
        lines = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
        steps = [x for x in lines if "loss" in x and "epoch" in x]
        if not steps:
            raise ValueError(f"{path}: no logged loss")
        df = pd.DataFrame(steps).groupby("epoch", as_index=False)["loss"].mean()
        first = float(df["loss"].iloc[0])
        for e, loss in zip(df["epoch"], df["loss"], strict=True):
            rows.append(
                {
                    "method": method,
                    "distortion": dist,
                    "seed": int(seed),
                    "epoch": int(e) + 1,
                    "loss": float(loss),
                    "relative": float(loss) / first,
                }
            )
    return pd.DataFrame(rows)


def plateau_summary(df: pd.DataFrame, window: int = 2) -> pd.DataFrame:
    """Relative change of each run's epoch-mean loss over its last ``window`` epochs.

    Returns:
        Columns method, distortion, seed, first, last (epoch-mean losses), last_change
        (``(loss[-1] - loss[-1 - window]) / loss[-1 - window]``; near 0 on a plateau),
        total_change (``(last - first) / first``).
    """
    out = []
    for (m, d, s), g in df.groupby(["method", "distortion", "seed"], sort=False):
        loss = g.sort_values("epoch")["loss"].to_numpy()
        ref = loss[max(0, len(loss) - 1 - window)]
        out.append(
            {
                "method": m,
                "distortion": d,
                "seed": s,
                "first": float(loss[0]),
                "last": float(loss[-1]),
                "last_change": float((loss[-1] - ref) / ref),
                "total_change": float((loss[-1] - loss[0]) / loss[0]),
            }
        )
    return pd.DataFrame(out)


def plot_distill_losses(df: pd.DataFrame, out_prefix: str | os.PathLike[str]) -> None:
    """Write ``<out_prefix>.{png,pdf,csv}``: one panel per distortion, one line per method.

    Lines are the mean over seeds of the loss relative to its first epoch; bands span the
    seeds' minimum to maximum. Each file is written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dists = list(dict.fromkeys(df["distortion"]))
    fig, axes = plt.subplots(
        1, len(dists), figsize=(3.2 * len(dists), 2.8), sharey=True, squeeze=False
    )
    methods = list(dict.fromkeys(df["method"]))
    colours = dict(zip(methods, plt.cm.tab10(np.arange(len(methods))), strict=True))
    for ax, d in zip(axes[0], dists, strict=True):
        for m in methods:
            g = df[(df["distortion"] == d) & (df["method"] == m)]
            if g.empty:
                continue
            s = g.groupby("epoch")["relative"].agg(["mean", "min", "max"])
            ax.plot(s.index, s["mean"], marker="o", ms=3, color=colours[m], label=m)
            ax.fill_between(s.index, s["min"], s["max"], color=colours[m], alpha=0.2)
        ax.set_title(d, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("loss / first-epoch loss")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    out = Path(out_prefix)
    blobs = {}
    for ext in ("png", "pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=120)
        blobs[ext] = buf.getvalue()
    plt.close(fig)
    atomic_write_text(f"{out}.csv", df.to_csv(index=False))
    for ext, blob in blobs.items():
        atomic_write_bytes(f"{out}.{ext}", blob)
