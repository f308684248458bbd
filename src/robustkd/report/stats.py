"""Paired comparisons across seeds: is method A better than method B, seed for seed?

Both papers report single runs. We run every configuration over the same seeds, and seed ``s``
of two methods shares what a seed fixes (data order, augmentation, distortion draws, label
subset), so differences are paired by seed: ``d_s = a_s - b_s``. For each comparison we report
the mean difference, a 95 % confidence interval of it (Student's t with n - 1 degrees of
freedom) and the two-sided paired t-test p-value (the same as :func:`scipy.stats.ttest_rel`).

With 3 seeds the interval is wide (t_{0.975, 2} = 4.30): that is the honest statement of what
3 seeds can tell, and it is why the tables show it. No correction for multiple comparisons is
applied; the tables say so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["PairedResult", "format_paired", "pair_by_seed", "paired_test"]


@dataclass(frozen=True)
class PairedResult:
    """The paired comparison of two sets of per-seed values (``a - b``).

    Attributes:
        n: Number of paired seeds.
        seeds: The seeds paired, in order.
        mean_diff: Mean of ``a_s - b_s``.
        std_diff: Sample standard deviation (ddof=1) of the differences; NaN when n < 2.
        ci_low: Lower end of the confidence interval of the mean difference.
        ci_high: Upper end.
        t: The paired t statistic (``mean / (std / sqrt(n))``).
        p: Two-sided p-value of the paired t-test (NaN when n < 2).
        confidence: The interval's confidence level.
    """

    n: int
    seeds: tuple[int, ...]
    mean_diff: float
    std_diff: float
    ci_low: float
    ci_high: float
    t: float
    p: float
    confidence: float = 0.95

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (NaN and infinities as None)."""
        out = asdict(self)
        out["seeds"] = list(self.seeds)
        for k, v in out.items():
            if isinstance(v, float) and not math.isfinite(v):
                out[k] = None
        return out


def pair_by_seed(
    a: Mapping[int, float], b: Mapping[int, float]
) -> tuple[tuple[int, ...], list[float], list[float]]:
    """Pair two ``seed -> value`` maps on the seeds they share, in ascending seed order.

    Returns:
        The shared seeds and the values of ``a`` and ``b`` at them.
    """
    seeds = tuple(sorted(set(a) & set(b)))
    return seeds, [float(a[s]) for s in seeds], [float(b[s]) for s in seeds]


def paired_test(
    a: Sequence[float],
    b: Sequence[float],
    *,
    seeds: Sequence[int] | None = None,
    confidence: float = 0.95,
) -> PairedResult:
    """Paired t-test and t confidence interval of the mean of ``a - b``.

    Args:
        a: Per-seed values of the method tested (e.g. ours).
        b: Per-seed values of the reference (e.g. a baseline), in the same seed order.
        seeds: The seeds, for the record (default ``0..n-1``).
        confidence: Confidence level of the interval.

    Returns:
        The comparison. With one pair, only the difference is defined (std, interval, t, p
        are NaN). When every seed differs by exactly the same amount the t-test is undefined
        (0/0 or +-inf): std is 0 and the interval, t and p are NaN.

    Raises:
        ValueError: ``a`` and ``b`` differ in length, or are empty.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired values need equal lengths, got {len(x)} and {len(y)}")
    n = len(x)
    if n == 0:
        raise ValueError("paired test of no values")
    seeds = tuple(int(s) for s in (seeds if seeds is not None else range(n)))
    d = x - y
    mean = float(d.mean())
    nan = math.nan
    if n < 2:
        return PairedResult(n, seeds, mean, nan, nan, nan, nan, nan, confidence)
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        # Every seed differs by the same amount (e.g. identical runs): the t statistic is 0/0
        # or +-inf and says nothing about the spread of a method; report the difference only.
        return PairedResult(n, seeds, mean, 0.0, nan, nan, nan, nan, confidence)
    # Imported here: the workflow imports the table layout (and this module) to build its DAG.
    from scipy import stats as _st

    se = sd / math.sqrt(n)
    t = mean / se
    p = float(2.0 * _st.t.sf(abs(t), df=n - 1))
    half = float(_st.t.ppf(0.5 + confidence / 2.0, df=n - 1)) * se
    return PairedResult(n, seeds, mean, sd, mean - half, mean + half, float(t), p, confidence)


def _p(p: float) -> str:
    if math.isnan(p):
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def format_paired(r: PairedResult) -> str:
    """``+2.48 [-3.10, 8.06], p = 0.21``: the mean difference, its interval and the p-value."""
    if r.n < 2:
        return f"{r.mean_diff:+.2f} (n = {r.n}, no test)"
    if math.isnan(r.p):
        return f"{r.mean_diff:+.2f} (same in all {r.n} seeds, no test)"
    return f"{r.mean_diff:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}], {_p(r.p)}"
