"""Verdicts over a family of claims: Holm-adjusted tests, detectable effects, equivalence.

Each claim of :mod:`robustkd.report.claims` is a per-seed combination ``d_s`` the paper says
is positive. Over the ``n`` seeds of a run we test two hypotheses per claim:

- **difference**: the two-sided paired t-test of ``mean(d) = 0`` (:func:`paired_test`);
- **equivalence**: two one-sided t-tests (TOST) that ``|mean(d)| < margin``
  (:func:`statsmodels.stats.weightstats.ttost_paired`), the margin in points of top-1.

Every p-value of the table, both kinds, forms one family, adjusted with **Holm's step-down
method** (:func:`statsmodels.stats.multitest.multipletests`, ``method="holm"``): the
probability that *any* verdict of the table is wrong is at most ``alpha`` (family-wise error),
whatever the dependence between the claims (they share runs). We chose Holm over
Benjamini-Hochberg because each verdict is read, cited and compared across machines on its
own: a verdict is a finding only if it is unlikely to be a chance one, and a false-discovery
rate of 5 % among some 60 verdicts still allows several wrong ones. Verdicts, decided on the
adjusted p-values:

- *equivalent*: equivalence adjusted p < alpha: no difference as large as the margin, whether
  or not the difference test also rejects zero (a finding too: the paper's effect, if any, is
  smaller than the margin at this scale);
- *supported*: not equivalent, difference adjusted p < alpha and mean > 0;
- *contradicted*: not equivalent, difference adjusted p < alpha and mean < 0;
- *undecided*: none of these; the **minimal detectable effect** (MDE) says what the run could
  see.

Equivalence comes first because the margin is the smallest difference the table calls an
effect: a difference that is surely nonzero but surely smaller than the margin (e.g. +0.7
[+0.3, +1.1] points at a 2-point margin) is "no effect of that size", not support for the
paper's claim. With difference first, such an effect is supported in a replication whose test
rejects zero and equivalent in one whose test just misses, so the verdict moved with the seeds
and the CPU (Lakens, Scheel & Isager 2018, "Equivalence testing for psychological research",
call it a significant but trivial effect). The difference column still shows its sign and p.

The MDE is the smallest true mean difference the difference test detects with probability
``power`` (80 %) at the run's ``n`` and observed spread ``sd``, at the level ``alpha / m`` of
Holm's first step (``m`` tests in the family): a claim with a larger true effect is decided
with that probability whatever the other claims are. It solves
``P(|T| > t_{1 - a/2, n-1}) = power`` for the noncentral t distribution
``T ~ t_{n-1}(delta sqrt(n) / sd)`` (:mod:`scipy.stats`), i.e. the textbook power of the paired
t-test (Cohen 1988, ch. 2), exactly rather than with the normal approximation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "VERDICTS",
    "Decision",
    "decide",
    "holm",
    "minimal_detectable_effect",
    "tost_p",
]

VERDICTS = ("supported", "contradicted", "equivalent", "undecided")


def holm(pvalues: Sequence[float], alpha: float = 0.05) -> list[float]:
    """Holm-adjusted p-values; NaN (a test that could not be made) stays NaN.

    NaN entries are not part of the family: ``m`` counts the finite p-values only.

    Args:
        pvalues: Raw p-values, in any order.
        alpha: The family-wise error rate (only passed on; the adjusted values do not
            depend on it).

    Returns:
        The adjusted p-values, in the order given (each in [0, 1]).
    """
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, math.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], alpha=alpha, method="holm")[1]
    return [float(v) for v in out]


def minimal_detectable_effect(sd: float, n: int, alpha: float, power: float = 0.8) -> float:
    """Smallest true mean difference a two-sided paired t-test detects with ``power``.

    Args:
        sd: Standard deviation of the per-seed differences (points).
        n: Number of seeds.
        alpha: Two-sided level of the test.
        power: Probability of detection.

    Returns:
        The effect in the unit of ``sd``; NaN when ``n < 2`` or ``sd`` is not a positive
        finite number (the test is undefined).
    """
    if n < 2 or not math.isfinite(sd) or sd <= 0:
        return math.nan
    from scipy import optimize
    from scipy import stats as st

    df = n - 1
    crit = float(st.t.ppf(1.0 - alpha / 2.0, df))

    def shortfall(d: float) -> float:
        nc = d * math.sqrt(n)
        # The far lower tail of a strongly shifted noncentral t evaluates to NaN; it is 0.
        lower = float(np.nan_to_num(st.nct.cdf(-crit, df, nc)))
        return float(st.nct.sf(crit, df, nc)) + lower - power

    hi = 1.0
    while shortfall(hi) < 0:
        hi *= 2.0
    return float(optimize.brentq(shortfall, 0.0, hi, xtol=1e-10)) * sd


def tost_p(values: Sequence[float], margin: float) -> float:
    """P of the two one-sided tests (TOST) that the mean of ``values`` is within ``margin``.

    The equivalence interval is ``(-margin, margin)``
    (:func:`statsmodels.stats.weightstats.ttost_paired` against zero).

    Returns:
        The larger of the two one-sided p-values; NaN with fewer than 2 values, no spread,
        or no margin.
    """
    x = np.asarray(values, dtype=float)
    if len(x) < 2 or not margin > 0 or float(x.std(ddof=1)) == 0.0:
        return math.nan
    from statsmodels.stats.weightstats import ttost_paired

    return float(ttost_paired(x, np.zeros_like(x), -margin, margin)[0])


@dataclass(frozen=True)
class Decision:
    """The verdict of one claim and what it rests on.

    Attributes:
        p: Raw two-sided p of the difference test (NaN: no test).
        p_adj: Its Holm-adjusted value over the whole family.
        p_equiv: Raw TOST p of equivalence within the margin.
        p_equiv_adj: Its Holm-adjusted value.
        mde: Minimal detectable effect (points) at ``alpha / m`` and the given power.
        verdict: One of :data:`VERDICTS`.
    """

    p: float
    p_adj: float
    p_equiv: float
    p_equiv_adj: float
    mde: float
    verdict: str


def decide(
    per_seed: Sequence[Sequence[float]],
    pvalues: Sequence[float],
    *,
    margin: float,
    alpha: float = 0.05,
    power: float = 0.8,
) -> list[Decision]:
    """Decide a family of claims from their per-seed values and raw difference p-values.

    Args:
        per_seed: Each claim's per-seed combination (points).
        pvalues: Each claim's raw two-sided paired-t p-value (NaN when untestable).
        margin: Equivalence margin in points (0 or less: no equivalence verdicts).
        alpha: Family-wise error rate.
        power: Power at which the MDE is given.

    Returns:
        One :class:`Decision` per claim, in order.

    Raises:
        ValueError: ``per_seed`` and ``pvalues`` differ in length.
    """
    if len(per_seed) != len(pvalues):
        raise ValueError(f"{len(per_seed)} claims but {len(pvalues)} p-values")
    k = len(pvalues)
    p_eq = [tost_p(v, margin) for v in per_seed]
    adjusted = holm([*map(float, pvalues), *p_eq], alpha)
    m = sum(math.isfinite(v) for v in adjusted)
    out = []
    for i, values in enumerate(per_seed):
        x = np.asarray(values, dtype=float)
        sd = float(x.std(ddof=1)) if len(x) > 1 else math.nan
        mean = float(x.mean()) if len(x) else math.nan
        p_adj, q_adj = adjusted[i], adjusted[k + i]
        if q_adj < alpha:
            verdict = "equivalent"
        elif p_adj < alpha and mean != 0:
            verdict = "supported" if mean > 0 else "contradicted"
        else:
            verdict = "undecided"
        mde = minimal_detectable_effect(sd, len(x), alpha / max(m, 1), power)
        out.append(Decision(float(pvalues[i]), p_adj, p_eq[i], q_adj, mde, verdict))
    return out
