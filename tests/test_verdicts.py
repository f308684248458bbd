"""Verdicts over a family of claims: Holm, minimal detectable effect, equivalence (by hand)."""

import math

import numpy as np
import pytest
from scipy import stats

from robustkd.report.verdicts import decide, holm, minimal_detectable_effect, tost_p


def test_holm_by_hand():
    # m = 3 finite p: sorted 0.01, 0.03, 0.04 -> 3 x 0.01, max(0.03, 2 x 0.03), max(., 1 x 0.04).
    adj = holm([0.01, 0.04, 0.03, math.nan])
    assert adj[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(adj[3])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_minimal_detectable_effect_matches_the_power_tables_and_the_normal_limit():
    # Cohen (1988), Table 2.4.1 (one-sample / paired t, two-sided alpha 0.05, power 0.80):
    # n = 10 needs d = 1.00.
    assert minimal_detectable_effect(1.0, 10, 0.05) == pytest.approx(1.0, abs=0.01)
    # It scales with the spread.
    assert minimal_detectable_effect(2.5, 10, 0.05) == pytest.approx(
        2.5 * minimal_detectable_effect(1.0, 10, 0.05)
    )
    # Large n: the normal approximation (z_0.975 + z_0.80) / sqrt(n) = 2.8016 / sqrt(n).
    assert minimal_detectable_effect(1.0, 400, 0.05) == pytest.approx(2.8016 / 20, rel=0.01)
    # A stricter level needs a larger effect; fewer seeds too.
    assert minimal_detectable_effect(1.0, 10, 0.05 / 64) > minimal_detectable_effect(1.0, 10, 0.05)
    assert minimal_detectable_effect(1.0, 5, 0.05) > minimal_detectable_effect(1.0, 10, 0.05)
    for sd, n in ((math.nan, 5), (0.0, 5), (1.0, 1)):
        assert math.isnan(minimal_detectable_effect(sd, n, 0.05))


def test_an_effect_of_the_mde_is_detected_four_times_in_five():
    """Simulated paired t-tests at the MDE reject in about 80 % of the runs."""
    n, sd, alpha = 5, 1.0, 0.01
    mde = minimal_detectable_effect(sd, n, alpha)
    rng = np.random.default_rng(0)
    x = rng.normal(mde, sd, size=(40_000, n))
    p = stats.ttest_1samp(x, 0.0, axis=1).pvalue
    assert (p < alpha).mean() == pytest.approx(0.80, abs=0.01)


def test_equivalence_p_is_the_larger_one_sided_p():
    values = [0.1, -0.1, 0.0, 0.2]  # mean 0.05, sd sqrt(0.05 / 3), n 4
    se = math.sqrt(0.05 / 3) / 2
    upper = stats.t.cdf((0.05 - 1.0) / se, 3)  # H0: mean >= +1
    lower = stats.t.sf((0.05 + 1.0) / se, 3)  # H0: mean <= -1
    assert tost_p(values, 1.0) == pytest.approx(max(upper, lower))
    assert tost_p(values, 0.0) != tost_p(values, 0.0)  # no margin: NaN
    assert math.isnan(tost_p([1.0, 1.0, 1.0], 1.0))  # no spread


def test_a_family_is_decided_on_holm_adjusted_p():
    per_seed = [
        [10.0, 11.0, 11.5],  # clearly positive
        [-9.0, -10.0, -10.5],  # clearly negative
        [0.1, -0.1, 0.0, 0.2],  # clearly within 2 points of zero
        [-2.0, 8.0, -4.0],  # noise
        [1.0, 2.0, 3.0],  # every seed gains, but raw p = 0.074
    ]
    p = [stats.ttest_1samp(v, 0.0).pvalue for v in per_seed]
    q = [tost_p(v, 2.0) for v in per_seed]
    decisions = decide(per_seed, p, margin=2.0, alpha=0.05)
    assert [d.verdict for d in decisions] == [
        "supported",
        "contradicted",
        "equivalent",
        "undecided",
        "undecided",
    ]
    # Holm by hand over the 10 tests (5 differences, 5 equivalences).
    family = np.array(p + q)
    order = np.argsort(family)
    adj = np.empty_like(family)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (len(family) - rank) * family[i])
        adj[i] = min(1.0, running)
    assert [d.p_adj for d in decisions] == pytest.approx(list(adj[:5]))
    assert [d.p_equiv_adj for d in decisions] == pytest.approx(list(adj[5:]))
    # The MDE of each claim at Holm's first-step level alpha / 10.
    sd = float(np.std(per_seed[3], ddof=1))
    assert decisions[3].mde == pytest.approx(minimal_detectable_effect(sd, 3, 0.005))


def test_a_nonzero_difference_within_the_margin_is_equivalent():
    """Surely nonzero and surely under the margin: equivalent, whichever sign it has."""
    small = [0.9, 1.0, 1.1, 1.0, 0.95, 1.05]  # mean 1.0, squares 0.025: sd sqrt(0.025 / 5)
    se = math.sqrt(0.025 / 5) / math.sqrt(6)  # 0.0289
    p_diff = 2 * stats.t.sf(1.0 / se, 5)  # t = 1.0 / 0.0289 = 34.6
    p_eq = stats.t.cdf((1.0 - 2.0) / se, 5)  # the binding side: H0 mean >= +2, t = -34.6
    assert tost_p(small, 2.0) == pytest.approx(max(p_eq, stats.t.sf(3.0 / se, 5)))
    large = [3.9, 4.0, 4.1, 4.0, 3.95, 4.05]  # the same spread around 4: beyond the margin
    negative = [-v for v in small]
    decisions = decide(
        [small, large, negative],
        [p_diff, 2 * stats.t.sf(4.0 / se, 5), p_diff],
        margin=2.0,
        alpha=0.05,
    )
    assert [d.verdict for d in decisions] == ["equivalent", "supported", "equivalent"]
    # The difference test rejected zero for the equivalent ones too: both p are reported.
    assert decisions[0].p_adj < 0.05 and decisions[0].p_equiv_adj < 0.05
    assert decisions[2].p_adj < 0.05 and decisions[2].p_equiv_adj < 0.05
    # Without a margin the same values are decided by the difference test alone.
    (d,) = decide([small], [p_diff], margin=0.0)
    assert d.verdict == "supported"


def test_no_equivalence_without_a_margin_and_unequal_inputs_are_refused():
    (d,) = decide([[0.1, -0.1, 0.0, 0.2]], [0.5], margin=0.0)
    assert d.verdict == "undecided" and math.isnan(d.p_equiv)
    with pytest.raises(ValueError, match="2 claims but 1 p-values"):
        decide([[1.0, 2.0], [3.0, 4.0]], [0.1], margin=1.0)
