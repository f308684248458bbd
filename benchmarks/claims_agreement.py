"""Do the claims' verdicts survive a change of machine? Two runs, two CPU kernel levels.

    # run the target twice from an empty work dir each: native kernels, then AVX2 kernels
    python benchmarks/claims_agreement.py run --out /tmp/agreement --cores 2 \\
        --configfile config/demo.yaml
    # or compare two claims tables that exist already
    python benchmarks/claims_agreement.py compare A/results/tables/claims.csv \\
        B/results/tables/claims.csv [--names native avx2]

``run`` executes ``snakemake <target>`` (default ``claims``) with this checkout's Snakefile in
``<out>/native`` and ``<out>/avx2`` (``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``: on an
AVX-512 machine, the kernels an AVX2-only CPU runs), one after the other, and prints each run's
wall time. ``compare`` (and ``run`` after its runs) prints the agreement of the two claims
tables:

- how many verdicts agree, and the share;
- how many are **opposite** (supported in one, contradicted in the other);
- the other disagreements (a decided verdict against undecided or equivalent);
- per claim, the difference of the two runs' mean differences relative to the seed-to-seed
  standard deviation (the mean of the two runs' per-seed std of the claim's combination); the
  largest such ratio, and the claims where it exceeds 1.

Prints figures; asserts nothing (reproducibility is measured here, not tested).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
OPPOSITE = {frozenset({"supported", "contradicted"})}


def compare(a: Path, b: Path, names: tuple[str, str] = ("A", "B")) -> None:
    """Print the agreement of two claims tables (CSV files of ``rule claims``)."""
    x, y = pd.read_csv(a).set_index("claim"), pd.read_csv(b).set_index("claim")
    shared = x.index.intersection(y.index)
    if len(shared) < max(len(x), len(y)):
        print(f"note: {len(x)} and {len(y)} claims, {len(shared)} in both")
    x, y = x.loc[shared], y.loc[shared]
    same = x["verdict"] == y["verdict"]
    opposite = [
        c for c in shared if frozenset({x.at[c, "verdict"], y.at[c, "verdict"]}) in OPPOSITE
    ]
    spread = (x["std"].astype(float) + y["std"].astype(float)) / 2
    shift = (x["mean"].astype(float) - y["mean"].astype(float)).abs()
    ratio = (shift / spread).where(spread > 0)
    n = len(shared)
    print(f"claims: {n}; {names[0]}: {a}; {names[1]}: {b}")
    for name, df in zip(names, (x, y), strict=True):
        counts = df["verdict"].value_counts().to_dict()
        print(f"  {name}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    print(f"same verdict: {int(same.sum())} of {n} ({100 * same.mean():.1f} %)")
    print(f"opposite verdicts (supported vs contradicted): {len(opposite)}")
    for c in opposite:
        print(f"  {c}: {x.at[c, 'verdict']} / {y.at[c, 'verdict']}")
    for c in shared[~same.to_numpy()]:
        if c not in opposite:
            print(
                f"  differs: {c}: {x.at[c, 'verdict']} ({x.at[c, 'mean']:+.2f}) / "
                f"{y.at[c, 'verdict']} ({y.at[c, 'mean']:+.2f})"
            )
    if ratio.notna().any():
        worst = ratio.idxmax()
        print(
            "largest |difference of the runs' means| / seed-to-seed std: "
            f"{ratio.max():.2f} ({worst}: {x.at[worst, 'mean']:+.2f} vs "
            f"{y.at[worst, 'mean']:+.2f}, std {spread[worst]:.2f})"
        )
        print(
            f"claims with a ratio above 1: {int((ratio > 1).sum())} of {int(ratio.notna().sum())}"
        )
    if "mde" in x:
        mde = pd.concat([x["mde"], y["mde"]], axis=1).max(axis=1)
        t1 = [c for c in shared if c.startswith("table1/") and c.endswith("ours-supervised")]
        if t1:
            worst_t1 = max(float(mde[c]) for c in t1)
            print(f"Table 1, ours minus supervised: largest MDE {worst_t1:.2f} points")


def _run(out: Path, env: dict[str, str], args: argparse.Namespace) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "snakemake", args.target, "--cores", str(args.cores)]
    cmd += ["--snakefile", str(ROOT / "Snakefile"), "--directory", str(out)]
    cmd += ["--scheduler", "greedy"]  # as make demo and make study run
    if args.configfile:
        cmd += ["--configfile", *[str(Path(c).resolve()) for c in args.configfile]]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, **env}, check=False)
    wall = time.perf_counter() - t0
    print(f"{out.name}: exit {proc.returncode}, {wall:.0f} s ({wall / 60:.1f} min)", flush=True)
    if proc.returncode != 0:
        sys.exit(proc.returncode)
    return out / "results" / "tables" / "claims.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the target at both kernel levels, then compare")
    r.add_argument("--out", type=Path, required=True, help="folder for the two work dirs")
    r.add_argument("--target", default="claims")
    r.add_argument("--cores", type=int, default=2)
    r.add_argument("--configfile", nargs="*", default=["config/demo.yaml"])
    c = sub.add_parser("compare", help="compare two claims.csv files")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    c.add_argument("--names", nargs=2, default=("A", "B"), help="what the two runs are")
    args = parser.parse_args()
    if args.command == "compare":
        compare(args.a, args.b, tuple(args.names))
        return
    native = _run(args.out / "native", {}, args)
    avx2 = _run(args.out / "avx2", AVX2, args)
    compare(native, avx2, ("native", "avx2"))


if __name__ == "__main__":
    main()
