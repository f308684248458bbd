"""The frames Figs. 2 and 3 draw: input checks, figure order and per-seed summaries.

Each frame holds one row per (family, method, x, seed) with its ``top1`` (%); the figures'
CSVs keep these rows, in figure order, with the ``mean``, sample ``std`` (ddof=1) and ``n`` of
the point each row belongs to.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from robustkd.report.figures.severity import FAMILY_ORDER
from robustkd.report.figures.style import method_styles

__all__ = [
    "check_one_to_one",
    "check_unique",
    "families_in_order",
    "per_seed_points",
    "require_columns",
    "required_first",
    "with_summary",
]


def require_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Check that ``df`` has ``columns`` and rows, and a finite ``top1`` everywhere.

    Raises:
        ValueError: A column is missing, there are no rows, or ``top1`` is NaN or infinite
            (``what`` names the caller).
    """
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {', '.join(map(repr, missing))}")
    if df.empty:
        raise ValueError(f"{what}: the frame has no rows")
    if df["top1"].isna().any() or not np.isfinite(df["top1"].astype(float)).all():
        raise ValueError(f"{what}: column 'top1' holds NaN or infinite values")


def required_first(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """A copy with the required columns first; extra ones (``source``, ...) are kept after."""
    extra = [c for c in df.columns if c not in columns and c not in ("mean", "std", "n")]
    return df.loc[:, [*columns, *extra]].copy()


def check_unique(df: pd.DataFrame, keys: Sequence[str], what: str) -> None:
    """Raise ValueError naming the first of several rows with the same ``keys``."""
    dup = df.duplicated(list(keys), keep=False)
    if dup.any():
        first = df.loc[dup, list(keys)].iloc[0].to_dict()
        raise ValueError(f"{what}: several rows for the same {', '.join(keys)}: {first}")


def check_one_to_one(df: pd.DataFrame, key: Sequence[str], value: str, what: str) -> None:
    """Raise ValueError when ``value`` takes two values within one ``key`` (two labels)."""
    n = df.groupby(list(key), sort=False)[value].nunique()
    if (n > 1).any():
        raise ValueError(
            f"{what}: {value!r} differs within one {'/'.join(key)}: {n[n > 1].index[0]}"
        )


def families_in_order(df: pd.DataFrame) -> list[str]:
    """The families present, the paper's first (mask, noise, blur), then others as met."""
    present = list(dict.fromkeys(df["family"]))
    return [f for f in FAMILY_ORDER if f in present] + [f for f in present if f not in FAMILY_ORDER]


def with_summary(df: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Per-seed rows with the mean, sample std (ddof=1; NaN for one seed) and n of their group."""
    g = df.groupby(list(keys), sort=False)["top1"]
    return df.assign(mean=g.transform("mean"), std=g.transform("std"), n=g.transform("size"))


def per_seed_points(
    df: pd.DataFrame, x: str
) -> tuple[list[str], dict[str, dict[str, object]], pd.DataFrame]:
    """A checked frame in figure order, with the summary of each plotted point.

    Args:
        df: A checked copy (:func:`required_first`) with columns ``family``, ``method``,
            ``x``, ``seed`` and ``top1``; its ``family`` and ``method`` columns are replaced.
        x: The column of the x axis (``severity``, ``fraction``).

    Returns:
        ``(families, styles, data)``: the families in panel order, each method's style in
        legend order (:func:`~robustkd.report.figures.style.method_styles`), and the rows
        sorted by (family, method, x, seed) with the ``mean``, ``std`` and ``n`` of their
        (family, method, x) point.
    """
    families = families_in_order(df)
    styles = method_styles(list(dict.fromkeys(df["method"])))
    df["family"] = pd.Categorical(df["family"], families, ordered=True)
    df["method"] = pd.Categorical(df["method"], list(styles), ordered=True)
    df = df.sort_values(["family", "method", x, "seed"], kind="stable")
    data = with_summary(df, ["family", "method", x])
    data = data.astype({"family": str, "method": str}).reset_index(drop=True)
    return families, styles, data
