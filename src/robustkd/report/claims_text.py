"""The claims table as Markdown (``results/tables/claims.md``), verdict counts first."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from robustkd.report.verdicts import VERDICTS

__all__ = ["claims_markdown"]


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}" if p < 0.01 else f"{p:.2f}"


def _points(x: float) -> str:
    return f"{x:.1f}" if math.isfinite(x) else "n/a"


#: MDEs above this many points are shown as ``> 100``: two top-1 accuracies (%) differ by at
#: most 100 points, so the value only says that the run detects no such difference.
MDE_SHOWN_UP_TO = 100.0


def _mde(x: float) -> str:
    """The MDE cell: points to one decimal, ``> 100`` above :data:`MDE_SHOWN_UP_TO`."""
    return f"> {MDE_SHOWN_UP_TO:g}" if x > MDE_SHOWN_UP_TO else _points(x)


def claims_markdown(rows: Sequence[Mapping[str, Any]], rule: Mapping[str, Any]) -> str:
    """The claims table in Markdown: counts, one row per claim, and how verdicts are made.

    Args:
        rows: The rows of :func:`robustkd.report.claims.build_claims_table`.
        rule: The config's ``claims`` section (``alpha``, ``power``, ``equivalence_margin``;
            ``preliminary``, where another run decides: its ``command`` and ``table``).
    """
    counts = {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}
    ns = sorted({r["n"] for r in rows})
    margin = float(rule["equivalence_margin"])
    lines = ["**The main paper's claims, tested on this run**", ""]
    if later := rule.get("preliminary"):
        lines += [
            "*Preliminary verdicts: this run has too few seeds to decide most claims. The "
            f"decisive table is that of `{later['command']}`, written to `{later['table']}`.*",
            "",
        ]
    lines += [
        f"{len(rows)} claims: {counts['supported']} supported, {counts['contradicted']} "
        f"contradicted, {counts['equivalent']} equivalent (no difference of {margin:g} points "
        f"or more), {counts['undecided']} undecided at this size (n = "
        f"{', '.join(map(str, ns)) or 0} seeds; every verdict at family-wise error "
        f"{rule['alpha']:g}, Holm).",
        "",
        "| Source | Claim | Difference (points) [95 % CI], p | Holm p | MDE | Verdict |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['source']} | {r['statement']} | {r['text']} | {_p(r['p_adj'])} | "
        f"{_mde(r['mde'])} | {r['verdict']} |"
        for r in rows
    ]
    lines += [
        "",
        "- Difference: the per-seed combination the claim says is positive (ours minus the "
        "other method; for the Fig 3 gap claims, the gap at the lowest fraction minus the gap "
        "at the highest), mean over seeds, 95 % Student-t interval (unadjusted), two-sided "
        "paired t-test p.",
        "- Holm p: that p adjusted with Holm's method over every test of this table (each "
        "claim's difference test and its equivalence test); verdicts are decided on it: "
        f"equivalent if the adjusted equivalence (TOST, margin {margin:g} points) p is below "
        f"{rule['alpha']:g}, even where the difference is nonzero, else supported / "
        "contradicted if the difference's is (by its sign), otherwise undecided at this size.",
        f"- MDE: the minimal detectable effect, the smallest true difference (points) the test "
        f"detects with {rule['power']:.0%} power at this run's seeds and spread, at Holm's "
        "first-step level; an undecided claim rules out nothing smaller (> 100: above 100 "
        "points; the CSV keeps the value).",
    ]
    return "\n".join(lines) + "\n"
