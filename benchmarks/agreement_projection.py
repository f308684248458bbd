"""How many seeds would two replications of the claims table need to agree? A seed bootstrap.

    python benchmarks/agreement_projection.py RUN_A/results/tables/claims.csv \\
        RUN_B/results/tables/claims.csv [--seeds 10 20 30] [--draws 1000] [--config CFG]

Pools the seeds of one or more claims tables of the same claims (e.g. the study on native and
on AVX2 kernels: their shifts lie within the seed noise, docs/claims.md), treats each seed's
row of per-seed values (the ``values`` column: every claim's combination for that seed, so a
seed's correlation across claims is kept) as one draw of a whole training chain, and, for each
seed count ``n``, draws two independent replications of ``n`` seeds with replacement and
decides both with the pipeline's own rule (:func:`robustkd.report.verdicts.decide`: paired t,
Holm over the family, TOST at the equivalence margin). It prints, per ``n``, the mean share of
equal verdicts, its 10th percentile, the chance of at least 90 % equal, and the mean number of
opposite verdicts (supported in one, contradicted in the other).

First it decides each table from its own values and prints how many verdicts match the file's,
so a rule that drifted from the pipeline's shows at once. A bootstrap from 20 seeds cannot
show tails rarer than those seeds held; treat the figures as a projection, not a guarantee.

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from robustkd.report.claims import DEFAULT_DECISION
from robustkd.report.stats import paired_test
from robustkd.report.verdicts import decide

OPPOSITE = {frozenset({"supported", "contradicted"})}


def _verdicts(per_seed: np.ndarray, rule: dict[str, float]) -> list[str]:
    """Verdicts of a family from a (seeds, claims) array of per-seed combinations (points)."""
    columns = [per_seed[:, j] for j in range(per_seed.shape[1])]
    pvalues = [paired_test(c, np.zeros_like(c)).p for c in columns]
    decisions = decide(
        columns,
        pvalues,
        margin=float(rule["equivalence_margin"]),
        alpha=float(rule["alpha"]),
        power=float(rule["power"]),
    )
    return [d.verdict for d in decisions]


def _load(paths: list[Path]) -> tuple[list[str], list[np.ndarray], list[list[str]]]:
    tables = [pd.read_csv(p).set_index("claim") for p in paths]
    claims = list(tables[0].index)
    for p, t in zip(paths, tables, strict=True):
        if list(t.index) != claims:
            raise SystemExit(f"{p}: its claims differ from those of {paths[0]}")
    arrays = [
        np.array([json.loads(v) for v in t["values"]], dtype=float).T for t in tables
    ]  # (seeds, claims)
    return claims, arrays, [list(t["verdict"]) for t in tables]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("tables", nargs="+", type=Path, help="claims.csv files to pool")
    parser.add_argument("--seeds", nargs="+", type=int, default=[10, 15, 20, 30])
    parser.add_argument("--draws", type=int, default=1000, help="pairs of replications")
    parser.add_argument("--config", type=Path, help="config with the claims rule (else paper's)")
    parser.add_argument("--rng", type=int, default=0, help="bootstrap seed")
    args = parser.parse_args()
    rule = dict(DEFAULT_DECISION)
    if args.config:
        rule.update((yaml.safe_load(args.config.read_text()) or {}).get("claims") or {})
    claims, arrays, filed = _load(args.tables)
    for path, arr, verdicts in zip(args.tables, arrays, filed, strict=True):
        mine = _verdicts(arr, rule)
        same = sum(a == b for a, b in zip(mine, verdicts, strict=True))
        print(f"{path}: {arr.shape[0]} seeds; verdicts as filed: {same} of {len(claims)}")
    pool = np.concatenate(arrays)
    print(
        f"pool: {pool.shape[0]} seeds x {len(claims)} claims; rule: Holm at alpha "
        f"{rule['alpha']}, equivalence margin {rule['equivalence_margin']} points; "
        f"{args.draws} pairs of replications per seed count"
    )
    rng = np.random.default_rng(args.rng)
    print("seeds  mean equal  10th pct  P(>= 90 % equal)  mean opposite")
    per_claim: dict[int, np.ndarray] = {}
    for n in args.seeds:
        equal, opposite = [], []
        for _ in range(args.draws):
            a = _verdicts(pool[rng.integers(0, len(pool), n)], rule)
            b = _verdicts(pool[rng.integers(0, len(pool), n)], rule)
            equal.append([x == y for x, y in zip(a, b, strict=True)])
            opposite.append(sum(frozenset({x, y}) in OPPOSITE for x, y in zip(a, b, strict=True)))
        per_claim[n] = np.mean(equal, axis=0)
        s = np.mean(equal, axis=1)
        print(
            f"{n:5d}  {100 * s.mean():9.1f} %  {100 * np.percentile(s, 10):6.1f} %  "
            f"{100 * np.mean(s >= 0.9):15.1f} %  {np.mean(opposite):13.2f}"
        )
    # The claims that stay coin flips: equal in fewer than 90 % of the pairs at some seed count.
    sizes = ", ".join(map(str, args.seeds))
    print(f"claims equal in under 90 % of the pairs (share at {sizes} seeds):")
    for j, claim in enumerate(claims):
        shares = [per_claim[n][j] for n in args.seeds]
        if min(shares) < 0.9:
            pooled = pool[:, j]
            print(
                f"  {claim}: "
                + " ".join(f"{100 * x:3.0f}" for x in shares)
                + f"  (pooled mean {pooled.mean():+.2f}, sd {pooled.std(ddof=1):.2f})"
            )


if __name__ == "__main__":
    main()
